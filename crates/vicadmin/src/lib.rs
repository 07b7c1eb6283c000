//! vicadmin: the VCH's admin pages, what an operator opens to see whether a VCH is healthy
//! and to collect its logs for support, in the spirit of VIC's vicadmin. It runs in the
//! appliance, on a port of its own, over HTTPS only.
//!
//! ```text
//!   GET  /authentication   login form (password login, when the VCH has an operator)
//!   POST /authentication   user + password ─► session cookie, 303 to /
//!   POST /logout
//!   GET  /                 summary: version, uptime, Docker API, registries, storage,
//!                          container VMs, networks
//!   GET  /logs             the logs: appliance, vic-init, each container's output and
//!                          its VM's console
//!   GET  /logs/NAME        one log, followed live by the page's script
//!   GET  /logs/NAME/raw    text; ?follow=1 streams what is appended
//!   GET  /logs.tar.gz      the log bundle (`bundle.rs`), also `vic-machine debug --bundle`
//! ```
//!
//! Everything but the login form and the static files needs a session or a client
//! certificate (`auth.rs`); without one, a request is sent to `/authentication`. The pages
//! are rendered on the server (`pages.rs`); the one script follows logs.

pub mod auth;
pub mod bundle;
pub mod logs;
mod output;
pub mod pages;
mod routes;
pub mod server;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use portlayer::{Containers, ImageService};
use tokio::sync::Semaphore;

pub use auth::{hash_password, Operator};
pub use routes::router;
pub use server::{self_signed, serve, Peer};
pub use status::{ApiEndpoint, Registry};

/// Logs followed at once, over all sessions.
pub const MAX_FOLLOWERS: usize = 16;
/// Password checks run at once; a failed one answers after [`FAILED_LOGIN_DELAY`].
pub const MAX_LOGINS: usize = 2;
pub const FAILED_LOGIN_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// Log bundles made at once.
pub const MAX_BUNDLES: usize = 2;

/// What the admin pages are told of their VCH.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub vch: String,
    pub version: String,
    /// The VCH's directory: its logs and configuration documents.
    pub vch_dir: PathBuf,
    pub api: ApiEndpoint,
    pub registries: Vec<Registry>,
    /// Who may log in with a password (`--ops-user`); none: only client certificates.
    pub operator: Option<Operator>,
    /// Whether client certificates of the VCH's authority are checked (and so let in).
    pub client_certificates: bool,
}

/// The admin pages' state.
pub struct Admin {
    config: AdminConfig,
    containers: Containers,
    images: ImageService,
    started: (Instant, SystemTime),
    sessions: auth::Sessions,
    followers: Arc<Semaphore>,
    logins: Semaphore,
    bundles: Arc<Semaphore>,
}

impl Admin {
    pub fn new(config: AdminConfig, containers: Containers, images: ImageService) -> Arc<Self> {
        Arc::new(Admin {
            config,
            containers,
            images,
            started: (Instant::now(), SystemTime::now()),
            sessions: auth::Sessions::default(),
            followers: Arc::new(Semaphore::new(MAX_FOLLOWERS)),
            logins: Semaphore::new(MAX_LOGINS),
            bundles: Arc::new(Semaphore::new(MAX_BUNDLES)),
        })
    }

    /// The logs the pages offer: the appliance's and vic-init's (when there), then each
    /// container VM's console the backend keeps in a file.
    fn logs(&self) -> Vec<logs::Log> {
        let dir = &self.config.vch_dir;
        let mut out: Vec<logs::Log> = [
            ("appliance", "Appliance", "appliance.log"),
            ("vic-init", "vic-init", "init.log"),
        ]
        .into_iter()
        .filter(|(_, _, f)| dir.join(f).is_file())
        .map(|(name, title, f)| logs::Log {
            name: name.into(),
            title: title.into(),
            source: logs::Source::File(dir.join(f)),
        })
        .collect();
        for c in self.containers.list() {
            let what = format!("Container {} ({})", c.spec.name, c.short_id());
            out.push(logs::Log {
                name: format!("output-{}", c.id),
                title: format!("{what} output"),
                source: logs::Source::Output(c.id.clone()),
            });
            if let Some(path) = self.containers.console_log(&c.id) {
                out.push(logs::Log {
                    name: format!("console-{}", c.id),
                    title: format!("{what} VM console"),
                    source: logs::Source::File(path),
                });
            }
        }
        out
    }

    /// How log `log` is read.
    fn reader(&self, log: &logs::Log) -> logs::Reader {
        match &log.source {
            logs::Source::File(path) => logs::file_reader(path.clone()),
            logs::Source::Output(id) => {
                let (containers, id) = (self.containers.clone(), id.clone());
                Arc::new(move |from| output::read(&containers, &id, from))
            }
        }
    }

    /// What a log bundle of this VCH holds.
    fn bundle_sources(&self) -> bundle::Sources {
        bundle::Sources {
            vch_dir: self.config.vch_dir.clone(),
            consoles: (self.containers.list().iter())
                .filter_map(|c| Some((c.id.clone(), self.containers.console_log(&c.id)?)))
                .collect(),
        }
    }
}
