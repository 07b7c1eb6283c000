//! Hostile API clients against a VCH made by vic-machine: silent and half-sent connections,
//! more connections than the cap, huge URIs and bodies, deeply nested JSON, a reference
//! filter of stars, and a web page's requests on a `--no-tls` endpoint. The appliance must
//! refuse each in Docker's way and go on serving the real docker CLI, without a restart.
//! Also `docker container prune`. All traffic goes to 127.0.0.1.

mod common;
mod machine;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// Longest a single exchange may take before it counts as a hang.
const BOUND: Duration = Duration::from_secs(60);

fn addr_of(docker_host: &str) -> String {
    docker_host.trim_start_matches("tcp://").to_string()
}

fn connect(addr: &str) -> TcpStream {
    let conn = TcpStream::connect(addr).expect("connecting to the VCH");
    conn.set_read_timeout(Some(BOUND)).expect("read timeout");
    conn
}

/// Reads until the server closes the connection (EOF or reset); panics after [`BOUND`].
fn read_until_closed(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "the VCH kept the connection open for {BOUND:?}; got: {:.300}",
                String::from_utf8_lossy(&out)
            ),
            Err(_) => break, // reset: closed too
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Reads a response head (through the blank line).
fn read_head(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while !out.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => out.push(byte[0]),
            other => panic!(
                "no response head ({other:?}): {}",
                String::from_utf8_lossy(&out)
            ),
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// One request on its own connection (`Connection: close` is added): the status and the
/// JSON body (Null when the body is not JSON).
fn exchange(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut conn = connect(addr);
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    // The server may answer and close before it has read everything (a refused body).
    let _ = conn
        .write_all(head.as_bytes())
        .and_then(|_| conn.write_all(body));
    let resp = read_until_closed(&mut conn);
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {resp:.300}"));
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let body = if resp
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        // One chunk: "len\r\ndata\r\n0\r\n\r\n".
        body.split("\r\n").nth(1).unwrap_or("")
    } else {
        body
    };
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

fn message(v: &serde_json::Value) -> String {
    v["message"].as_str().unwrap_or_default().to_string()
}

fn appliance_pid(name: &str) -> String {
    std::fs::read_to_string(machine::vch_dir(name).join("appliance.pid")).expect("appliance.pid")
}

/// A VCH whose API limits are lowered (8 connections, 2 s for a request head or idle), so
/// that reaching them costs a handful of connections and seconds. The limits come from the
/// environment the appliance inherits from vic-machine.
fn capped_vch() -> OwnVch {
    OwnVch::create_with_env(
        "e2e-capped",
        &[],
        &[
            ("VIC_API_MAX_CONNECTIONS", "8"),
            ("VIC_API_HEADER_TIMEOUT", "2"),
        ],
    )
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn silent_half_sent_and_surplus_connections_are_closed_and_streams_go_on() {
    let vch = capped_vch();
    let addr = addr_of(&vch.client.host);
    let pid = appliance_pid(&vch.name);

    // A connection that sends nothing, and one that stalls in its headers, are closed.
    let mut silent = connect(&addr);
    assert_eq!(read_until_closed(&mut silent), "");
    let mut half = connect(&addr);
    half.write_all(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Ag")
        .unwrap();
    let got = read_until_closed(&mut half);
    assert!(
        !got.contains(" 200 "),
        "a half-sent request was answered: {got}"
    );

    // Eight `events` streams take every slot.
    let mut streams: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut c = connect(&addr);
            c.write_all(format!("GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
                .unwrap();
            let head = read_head(&mut c);
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            c
        })
        .collect();
    // Past the cap: closed at once (with a 503 when the socket takes it), never served.
    for _ in 0..4 {
        let mut c = connect(&addr);
        let _ = c.write_all(b"GET /_ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let got = read_until_closed(&mut c);
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 503"),
            "a connection past the cap was served: {got}"
        );
        if !got.is_empty() {
            assert!(got.contains(r#""message":"too many connections"#), "{got}");
        }
    }

    // Two streams end: their slots serve again, and the real CLI works.
    streams.truncate(6);
    eventually("a freed slot serves a request", BOUND, || {
        let (status, _) = exchange(&addr, "GET", "/_ping", &[], b"");
        (status == 200).then_some(())
    });
    // The streams have now outlived the 2 s head timeout (a precondition, not a measure):
    // they still carry events.
    std::thread::sleep(Duration::from_secs(3));
    vch.client
        .ok(&["tag", &vch.image, &format!("{}:abuse", vch.image)]);
    for s in &mut streams {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        let start = Instant::now();
        while !String::from_utf8_lossy(&seen).contains(r#""Action":"tag""#) {
            assert!(start.elapsed() < BOUND, "no tag event on a held stream");
            let n = s.read(&mut buf).expect("the events stream is still open");
            assert!(n > 0, "the events stream was closed");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    drop(streams);

    // Attach (a hijacked connection), wait and `logs -f` outlast the 2 s head timeout too.
    let out = vch
        .client
        .ok(&["run", "--rm", &vch.image, "sh", "-c", "sleep 4; echo late"]);
    assert_eq!(out.trim(), "late");
    let id = vch
        .client
        .ok(&["run", "-d", &vch.image, "sh", "-c", "sleep 4; echo later"]);
    let out = vch.client.ok(&["logs", "-f", id.trim()]);
    assert_eq!(out.trim(), "later");
    vch.client.ok(&["rm", id.trim()]);
    let mut piped = std::process::Command::new("sh");
    piped
        .env("DOCKER_HOST", &vch.client.host)
        .env("DOCKER_CONFIG", &vch.client.config)
        .env("VIC_IMAGE", &vch.image)
        .args([
            "-c",
            r#"(sleep 4; echo hello) | "$VIC_DOCKER" run -i --rm "$VIC_IMAGE" sh -c 'read x; echo got $x'"#,
        ]);
    let o = run_limited(piped, None, Duration::from_secs(180), "docker run -i");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "got hello");

    assert!(vch.client.ok(&["version"]).contains("Server:"));
    assert_eq!(
        appliance_pid(&vch.name),
        pid,
        "the appliance was not restarted"
    );
    vch.delete();
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn hostile_uris_bodies_and_filters_are_refused_and_the_appliance_lives() {
    let image = busybox();
    let addr = addr_of(&vch().docker_host);
    let pid = appliance_pid(&vch().name);

    // A URI over 64 KiB: refused before any handler.
    let long = format!("/containers/json?x={}", "a".repeat(100_000));
    let (status, _) = exchange(&addr, "GET", &long, &[], b"");
    assert_eq!(status, 414);

    // A reference filter of stars: 100k do not fit in a URI; 60k are refused as a pattern.
    let filter = |n: usize| {
        format!(
            "/images/json?filters=%7B%22reference%22%3A%5B%22{}%22%5D%7D",
            "*".repeat(n)
        )
    };
    let (status, _) = exchange(&addr, "GET", &filter(100_000), &[], b"");
    assert_eq!(status, 414);
    let (status, body) = exchange(&addr, "GET", &filter(60_000), &[], b"");
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        message(&body),
        "invalid reference filter: pattern is longer than 1024 characters"
    );
    let listed = ok(&[
        "images",
        "--filter",
        "reference=*/busy*",
        "--format",
        "{{.Repository}}",
    ]);
    assert!(listed.lines().any(|l| l == image), "{listed}");

    // Deeply nested JSON, bad JSON, a body over 10 MiB: Docker's JSON 4xx.
    let json = ["Content-Type: application/json"];
    let deep = format!(
        r#"{{"Image":"{image}","HostConfig":{{"x":{}"#,
        "[".repeat(100_000)
    );
    let (status, body) = exchange(&addr, "POST", "/containers/create", &json, deep.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("recursion limit"), "{body}");
    let (status, body) = exchange(
        &addr,
        "POST",
        "/containers/create",
        &json,
        "[".repeat(100_000).as_bytes(),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = exchange(&addr, "POST", "/containers/create", &json, br#"{"Image":"#);
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).starts_with("invalid JSON"), "{body}");
    let big = vec![b' '; 11 << 20];
    let (status, body) = exchange(&addr, "POST", "/containers/create", &json, &big);
    assert_eq!(status, 413, "{body}");
    assert!(message(&body).contains("larger than the limit"), "{body}");

    // A known path with the wrong method: dockerd's JSON 404.
    let (status, body) = exchange(&addr, "PUT", "/v1.50/containers/json", &[], b"");
    assert_eq!(status, 404, "{body}");
    assert!(message(&body).starts_with("page not found"), "{body}");

    assert!(ok(&["version"]).contains("Server:"));
    assert_eq!(
        appliance_pid(&vch().name),
        pid,
        "the appliance was not restarted"
    );
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn a_web_page_cannot_drive_a_plain_http_vch_but_the_docker_cli_can() {
    let image = busybox();
    let addr = addr_of(&vch().docker_host);
    let port = addr.rsplit_once(':').map(|(_, p)| p.to_string()).unwrap();

    // A cross-origin POST with a "simple" content type, as a page's form or fetch sends it.
    let create = format!(r#"{{"Image":"{image}","Cmd":["true"]}}"#);
    let (status, body) = exchange(
        &addr,
        "POST",
        "/containers/create",
        &["Origin: http://evil.example", "Content-Type: text/plain"],
        create.as_bytes(),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        message(&body).contains("Origin header (http://evil.example)"),
        "{body}"
    );
    assert!(body.get("Id").is_none());

    // DNS rebinding: the page's own name in Host.
    let evil = format!("Host: evil.example:{port}");
    let (status, body) = exchange(&addr, "GET", "/version", &[&evil], b"");
    assert_eq!(status, 403, "{body}");
    assert!(message(&body).contains("evil.example"), "{body}");

    // What clients send: the address, or localhost.
    let local = format!("Host: localhost:{port}");
    let (status, body) = exchange(&addr, "GET", "/version", &[&local], b"");
    assert_eq!(status, 200, "{body}");
    assert!(ok(&["version"]).contains("Server:"));
    let via_localhost = docker_at(&format!("tcp://localhost:{port}"))
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .expect("docker -H tcp://localhost");
    assert!(via_localhost.status.success(), "{}", stderr(&via_localhost));
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn container_prune_removes_stopped_containers_and_keeps_running_ones() {
    let image = busybox();
    let start = unix_now().to_string();
    let id = |out: String| out.trim().to_string();
    let exited = id(ok(&["run", "-d", &image, "true"]));
    let created = id(ok(&["create", &image, "true"]));
    let kept = id(ok(&["create", "--label", "keep=yes", &image, "true"]));
    let running = id(ok(&["run", "-d", &image, "sleep", "600"]));
    eventually("the first container exits", BOUND, || {
        (inspect(&exited)["State"]["Status"] == "exited").then_some(())
    });

    let o = docker(&["container", "prune", "-f", "--filter", "foo=bar"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid filter 'foo'"),
        "{}",
        stderr(&o)
    );

    let out = ok(&["container", "prune", "-f", "--filter", "label!=keep"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    assert!(out.contains(&exited) && out.contains(&created), "{out}");
    assert!(!out.contains(&kept) && !out.contains(&running), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");

    let out = ok(&["container", "prune", "-f"]);
    assert!(out.contains(&kept) && !out.contains(&running), "{out}");
    let left = ok(&["ps", "-a", "--no-trunc", "--format", "{{.ID}}"]);
    for gone in [&exited, &created, &kept] {
        assert!(
            !left.contains(gone.as_str()),
            "{gone} is still listed: {left}"
        );
    }
    assert!(
        left.contains(&running),
        "the running container was removed: {left}"
    );

    // Each removal is a destroy event, as `docker rm` makes it.
    let events = ok(&[
        "events",
        "--since",
        &start,
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        "event=destroy",
        "--format",
        "{{.ID}}",
    ]);
    for gone in [&exited, &created, &kept] {
        assert!(
            events.contains(gone.as_str()),
            "no destroy event for {gone}: {events}"
        );
    }
    ok(&["rm", "-f", &running]);
}

/// Now in Unix seconds, as `docker events --since/--until` take it (the VCH runs on this
/// machine's clock). An `--until` of the current second would leave out its later events.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn an_import_larger_than_the_body_limit_is_streamed_through() {
    let dir = std::env::temp_dir().join(format!("e2e-big-import-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rootfs")).expect("work dir");
    // Incompressible, and past the 10 MiB limit on buffered bodies.
    let mut data = vec![0u8; 12 << 20];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut data))
        .expect("random bytes");
    std::fs::write(dir.join("rootfs/big"), &data).expect("the big file");
    let tar = dir.join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(dir.join("rootfs"))
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let name = format!("big-import-{}", std::process::id());
    let tar_path = tar.display().to_string();
    let out = ok(&["import", &tar_path, &name]);
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let size = ok(&["image", "inspect", "--format", "{{.Size}}", &name]);
    assert!(
        size.trim().parse::<u64>().unwrap_or(0) >= 12 << 20,
        "the imported image holds the whole upload: {size}"
    );
    ok(&["rmi", &name]);
    let _ = std::fs::remove_dir_all(&dir);
}
