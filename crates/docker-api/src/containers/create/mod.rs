//! `POST /containers/create`: Docker's create body, parsed strictly, judged by one policy,
//! turned into the port layer's spec.
//!
//! ```text
//!   body ──parse──► ContainerConfig + HostConfig + NetworkingConfig   (400 naming a mistyped field;
//!                   keys matched to fields as Go matches them, casefold.rs)
//!        ──policy::apply──► Applied { memory, cpus, dns, guest, … , warnings } (400 naming each unsupported flag;
//!                   guest.rs checks the options applied inside the VM, tmpfs.rs parses --tmpfs)
//!        ──spec::build──► ContainerSpec, whose personality is what inspect shows
//! ```

mod casefold;
mod cpuset;
mod guest;
#[cfg(test)]
mod guest_tests;
mod health;
// Every field of Docker's types is parsed, so that a mistyped one is refused; the policy
// reads only those that matter (a field vic refuses need only be told from its default).
#[allow(dead_code)]
mod config;
#[allow(dead_code)]
mod host_config;
mod log_opts;
mod mounts;
mod networking;
mod parse;
mod policy;
mod ports;
#[cfg(test)]
mod readback_tests;
mod refusal;
mod spec;
#[cfg(test)]
mod tests;
mod tmpfs;
pub mod update;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imagec::store::ImageRecord;
use portlayer::ContainerSpec;
use serde::Deserialize;
use serde_json::json;

use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

pub(crate) use config::EndpointSettings;
pub(crate) use networking::connect_request;
pub use parse::CreateBody;
pub use spec::host_config_of;

/// A create that may go ahead: the spec and the warnings for the response.
#[derive(Debug)]
pub struct Plan {
    pub spec: ContainerSpec,
    pub warnings: Vec<String>,
}

/// Judges a parsed body against the image: what the container gets, or why it is refused.
pub fn plan(body: CreateBody, name: String, image: &ImageRecord) -> Result<Plan, ApiError> {
    let image_config = image.config.get("config").cloned().unwrap_or_default();
    health::validate(body.config.healthcheck.as_ref())?;
    let applied = policy::apply(
        &body.config,
        &body.host_config,
        &body.networking_config,
        &image_config,
    )?;
    let bindings = ports::bindings(
        &body.host_config,
        &body.config,
        &image_config,
        &applied.network_mode,
    )?;
    let volumes = serde_json::json!(body.config.volumes);
    let mut plan = spec::build(body.config, applied, name, image);
    // As dockerd keeps them: the bindings as given, for inspect's HostConfig.
    if let Some(hc) = plan.spec.personality.get_mut("HostConfig") {
        hc["PortBindings"] = ports::as_given(&body.host_config);
        hc["PublishAllPorts"] = serde_json::json!(body.host_config.publish_all_ports == Some(true));
        let h = &body.host_config;
        hc["Binds"] = serde_json::json!(h.binds);
        hc["VolumesFrom"] = serde_json::json!(h.volumes_from);
        hc["VolumeDriver"] = serde_json::json!(h.volume_driver.clone().unwrap_or_default());
        if h.mounts.as_ref().is_some_and(|m| !m.is_empty()) {
            hc["Mounts"] = serde_json::json!(h.mounts);
        }
    }
    if let Some(config) = plan.spec.personality.get_mut("Config") {
        config["Volumes"] = volumes;
    }
    plan.spec.ports = bindings;
    Ok(plan)
}

/// `os/arch[/variant]`, with the architecture names Go uses.
fn platform_parts(p: &str) -> (String, String, String) {
    let mut it = p.split('/').map(str::to_ascii_lowercase);
    let os = it.next().unwrap_or_default();
    let arch = match it.next().unwrap_or_default().as_str() {
        "x86_64" | "x86-64" => "amd64".to_string(),
        "aarch64" => "arm64".to_string(),
        other => other.to_string(),
    };
    (os, arch, it.next().unwrap_or_default())
}

/// `?platform=` (`docker run --platform`): the image must be for it. Like dockerd, a
/// mismatch is "not found", so that the CLI pulls the image for that platform and retries.
fn check_platform(wanted: &str, reference: &str, image: &ImageRecord) -> Result<(), ApiError> {
    let (os, arch, variant) = platform_parts(wanted);
    let have_variant = image
        .config
        .get("variant")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let actual = match have_variant {
        "" => format!("{}/{}", image.os, image.architecture),
        v => format!("{}/{}/{v}", image.os, image.architecture),
    };
    let (have_os, have_arch, have_variant) = platform_parts(&actual);
    let matches = (os.is_empty() || os == have_os)
        && (arch.is_empty() || arch == have_arch)
        && (variant.is_empty() || have_variant.is_empty() || variant == have_variant);
    if matches {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "image with reference {reference} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
    )))
}

/// What `POST /containers/create` reads besides the body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateQuery {
    /// The container's name (a random one when empty).
    name: String,
    /// `os/arch[/variant]` the image must be for.
    platform: Option<String>,
}

/// POST /containers/create?name=&platform=
pub async fn create(
    State(st): State<AppState>,
    DockerQuery(q): DockerQuery<CreateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let body = parse::body(&body)?;
    let image_name = body.config.image.clone().unwrap_or_default();
    if image_name.is_empty() {
        return Err(ApiError::bad_request(
            "config cannot be empty in order to create a container",
        ));
    }
    let image = match st.images.store().resolve(&image_name) {
        Some(img) => img,
        None => {
            let shown = imagec::reference::Reference::parse(&image_name)
                .map(|r| r.to_string())
                .unwrap_or(image_name);
            return Err(ApiError::not_found(format!("No such image: {shown}")));
        }
    };
    if let Some(wanted) = q.platform.as_deref().filter(|p| !p.is_empty()) {
        check_platform(wanted, &image_name, &image)?;
    }
    let from = body.host_config.volumes_from.clone().unwrap_or_default();
    let mut plan = plan(body, q.name, &image)?;
    let spec = &mut plan.spec;
    mounts::volumes_from(&mut spec.mounts, &mut spec.binds, &from, |name| {
        let rec = st.containers.get(name).map_err(|e| e.to_string())?;
        Ok((rec.spec.mounts, rec.spec.binds))
    })
    .map_err(ApiError::bad_request)?;
    // VIC refuses a create while the VCH's storage is over its quota.
    st.images.admit_container()?;
    let rec = st.containers.create(plan.spec).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": rec.id, "Warnings": plan.warnings })),
    )
        .into_response())
}
