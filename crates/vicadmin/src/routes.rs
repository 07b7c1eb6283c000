//! The admin pages' routes: the gate every request passes (a session or a client
//! certificate, else `/authentication`), the handlers, and the headers every answer has.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::pages::{self, LoginWays, Row};
use crate::{auth, bundle, logs, status, Admin, Peer, FAILED_LOGIN_DELAY};

/// The admin pages of `admin`.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/", get(summary))
        .route("/authentication", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/logs", get(logs_index))
        .route("/logs.tar.gz", get(log_bundle))
        .route("/logs/{name}", get(log_page))
        .route("/logs/{name}/raw", get(log_raw))
        .route("/static/vicadmin.js", get(script))
        .route("/static/vicadmin.css", get(style))
        .layer(middleware::from_fn_with_state(admin.clone(), gate))
        .layer(middleware::from_fn(headers))
        .layer(DefaultBodyLimit::max(4096))
        .with_state(admin)
}

/// Whether `req` comes from a logged-in session or a certified client.
fn is_in(admin: &Admin, req: &Request) -> bool {
    if req.extensions().get::<Peer>().is_some_and(|p| p.certified) {
        return true;
    }
    session_token(req).is_some_and(|t| admin.sessions.user(t).is_some())
}

fn session_token(req: &Request) -> Option<&str> {
    let cookie = req.headers().get(header::COOKIE)?.to_str().ok()?;
    auth::token_in(cookie)
}

async fn gate(State(admin): State<Arc<Admin>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/authentication" || path.starts_with("/static/") || is_in(&admin, &req) {
        return next.run(req).await;
    }
    Redirect::to("/authentication").into_response()
}

/// What every answer carries: no caching, no framing, no sniffing, scripts only from here.
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
        (
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}

fn html(status: StatusCode, page: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn ways(admin: &Admin) -> LoginWays {
    LoginWays {
        password: admin.config.operator.is_some(),
        certificate: admin.config.client_certificates,
    }
}

async fn login_form(State(admin): State<Arc<Admin>>, req: Request) -> Response {
    if is_in(&admin, &req) {
        return Redirect::to("/").into_response();
    }
    html(
        StatusCode::OK,
        pages::login(&admin.config.vch, ways(&admin), None),
    )
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

async fn login(State(admin): State<Arc<Admin>>, Form(c): Form<Credentials>) -> Response {
    let vch = &admin.config.vch;
    let Some(op) = admin.config.operator.clone() else {
        let page = pages::login(
            vch,
            ways(&admin),
            Some("Password login is off for this VCH."),
        );
        return html(StatusCode::UNAUTHORIZED, page);
    };
    let Ok(_permit) = admin.logins.try_acquire() else {
        let page = pages::login(
            vch,
            ways(&admin),
            Some("Too many logins at once: try again."),
        );
        return html(StatusCode::SERVICE_UNAVAILABLE, page);
    };
    let user = c.username.clone();
    let admitted = tokio::task::spawn_blocking(move || op.admits(&c.username, &c.password))
        .await
        .unwrap_or(false);
    if !admitted {
        tracing::warn!(user = %user.escape_debug(), "VCH Admin: a login failed");
        tokio::time::sleep(FAILED_LOGIN_DELAY).await;
        let page = pages::login(vch, ways(&admin), Some("Wrong user name or password."));
        return html(StatusCode::UNAUTHORIZED, page);
    }
    tracing::info!(%user, "VCH Admin: logged in");
    let token = admin.sessions.open(&user);
    let mut resp = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&token)) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn logout(State(admin): State<Arc<Admin>>, req: Request) -> Response {
    if let Some(t) = session_token(&req) {
        admin.sessions.close(t);
    }
    let mut resp = Redirect::to("/authentication").into_response();
    if let Ok(v) = HeaderValue::from_str(&auth::clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn summary(State(admin): State<Arc<Admin>>) -> Response {
    let c = &admin.config;
    let up = admin.started.0.elapsed();
    let since = chrono::DateTime::<chrono::Utc>::from(admin.started.1).to_rfc3339();
    let api = status::docker_api(&c.api).await;
    let probes = c.registries.iter().map(status::registry);
    let registries = futures_util::future::join_all(probes).await;
    let images = admin.images.clone();
    let usage = tokio::task::spawn_blocking(move || images.usage())
        .await
        .unwrap_or_default();
    let list = admin.containers.list();
    let running = (list.iter())
        .filter(|r| r.state.status == portlayer::Status::Running)
        .count();
    let mut vch = vec![
        Row::info("Name", c.vch.clone()),
        Row::info("Version", c.version.clone()),
        Row::info("Uptime", format!("{} (since {since})", status::uptime(up))),
        Row::info("Backend", admin.containers.backend_description()),
        Row::info("Container start", admin.containers.start_path()),
    ];
    vch.push(Row::check("Docker API", api));
    let mut regs: Vec<Row> = (c.registries.iter().zip(registries))
        .map(|(r, check)| Row::check(&r.name, check))
        .collect();
    if regs.is_empty() {
        regs.push(Row::info(
            "Registries",
            "none given (--insecure-registry, --whitelist-registry); Docker Hub is not probed from here",
        ));
    }
    let quota = admin.images.storage().quota();
    let storage = vec![
        Row::info("Images", status::bytes(usage.images)),
        Row::info("Containers", status::bytes(usage.containers)),
        Row::info("Volumes", status::bytes(usage.volumes)),
        match quota {
            Some(q) => Row::check(
                "Quota",
                status::Check {
                    ok: usage.total() <= q,
                    detail: format!(
                        "{} of {} used",
                        status::bytes(usage.total()),
                        status::bytes(q)
                    ),
                },
            ),
            None => Row::info(
                "Quota",
                format!("none ({} used)", status::bytes(usage.total())),
            ),
        },
    ];
    let vms = vec![
        Row::info("Container VMs", list.len().to_string()),
        Row::info("Running", running.to_string()),
    ];
    let nets = (admin.containers.networks().into_iter())
        .map(|n| Row::info(&n.name, n.subnet.to_string()))
        .collect();
    let sections = [
        ("VCH", vch),
        ("Registries", regs),
        ("Storage", storage),
        ("Container VMs", vms),
        ("Networks", nets),
    ];
    html(StatusCode::OK, pages::summary(&c.vch, &sections))
}

async fn logs_index(State(admin): State<Arc<Admin>>) -> Response {
    html(
        StatusCode::OK,
        pages::logs_index(&admin.config.vch, &admin.logs()),
    )
}

/// Log `name` if the pages offer it.
fn find_log(admin: &Admin, name: &str) -> Option<logs::Log> {
    logs::valid_name(name)
        .then(|| admin.logs().into_iter().find(|l| l.name == name))
        .flatten()
}

fn no_such_log(admin: &Admin, name: &str) -> Response {
    let page = pages::message(
        &admin.config.vch,
        "No such log",
        &format!("There is no log {name}."),
    );
    html(StatusCode::NOT_FOUND, page)
}

async fn log_page(State(admin): State<Arc<Admin>>, Path(name): Path<String>) -> Response {
    let Some(log) = find_log(&admin, &name) else {
        return no_such_log(&admin, &name);
    };
    let reader = admin.reader(&log);
    let tail = tokio::task::spawn_blocking(move || reader(None))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    let text = match tail {
        Ok((bytes, _)) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => format!("(reading the log failed: {e})"),
    };
    html(
        StatusCode::OK,
        pages::log_view(&admin.config.vch, &log, &text),
    )
}

#[derive(Deserialize)]
struct RawQuery {
    #[serde(default)]
    follow: Option<String>,
}

async fn log_raw(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    Query(q): Query<RawQuery>,
) -> Response {
    let Some(log) = find_log(&admin, &name) else {
        return no_such_log(&admin, &name);
    };
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if matches!(q.follow.as_deref(), Some("1" | "true")) {
        let Ok(permit) = admin.followers.clone().try_acquire_owned() else {
            let busy = format!(
                "{} logs are followed already: try again later\n",
                crate::MAX_FOLLOWERS
            );
            return (StatusCode::SERVICE_UNAVAILABLE, text, busy).into_response();
        };
        let stream = logs::follow(admin.reader(&log), permit);
        return (StatusCode::OK, text, Body::from_stream(stream)).into_response();
    }
    let reader = admin.reader(&log);
    match tokio::task::spawn_blocking(move || reader(None)).await {
        Ok(Ok((bytes, _))) => (StatusCode::OK, text, bytes).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            format!("reading the log: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, text, format!("{e}\n")).into_response(),
    }
}

async fn log_bundle(State(admin): State<Arc<Admin>>) -> Response {
    let Ok(permit) = admin.bundles.clone().try_acquire_owned() else {
        let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
        let busy = "log bundles are being made already: try again later\n";
        return (StatusCode::SERVICE_UNAVAILABLE, text, busy).into_response();
    };
    let sources = admin.bundle_sources();
    // Written by a blocking task into a small channel: memory stays bounded however large
    // the logs, and a client that stops reading stops the writer.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut w = ChannelWriter(tx.clone());
        if let Err(e) = bundle::write(&sources, &mut w) {
            tracing::warn!("writing a log bundle: {e}");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let name = format!(
        "attachment; filename=\"vch-{}-logs-{}.tar.gz\"",
        admin.config.vch,
        chrono::Utc::now().format("%Y%m%d-%H%M%S")
    );
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/gzip")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// A `Write` that hands what is written to a stream's channel (a closed channel, a client
/// gone, is an error that ends the writer).
struct ChannelWriter(tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn script() -> Response {
    let js = include_str!("../static/vicadmin.js");
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        js,
    )
        .into_response()
}

async fn style() -> Response {
    let css = include_str!("../static/vicadmin.css");
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], css).into_response()
}
