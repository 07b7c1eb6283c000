//! [`Containers`]: the container lifecycle on top of a backend.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use chrono::Utc;
use hypervisor::Backend;
use tokio::sync::oneshot;

use crate::container::{ContainerRecord, Status};
use crate::events::EventBus;
use crate::guest::session::{self, SessionExit, StartFailure};
use crate::guest::Launch;
use crate::limits::{Admission, Limits};
use crate::networks::{Cidr, Network, NetworkStore};
use crate::state::StateDir;

mod binds;
mod commit;
mod copy;
mod create;
mod dns;
mod error;
mod exec;
mod health;
mod images;
mod links;
mod live;
mod live_net;
mod networks;
mod pause;
mod publish;
mod reap;
mod recovery;
mod remove;
mod rename;
mod restart;
mod signal;
mod stats;
mod streams;
mod update;
mod volumes;

pub use commit::LayerStream;
pub use copy::CopyStream;
pub use streams::{AttachStreams, Output, WaitCondition};
pub use update::Resize;

use error::io_err;
pub use error::Error;
pub use exec::{ExecClaim, ExecInfo, ExecStdin, ExecStreams, MAX_EXECS};
use live::Live;

/// Where container root filesystems come from: the image store, seen from the port layer.
pub trait Images: Send + Sync + 'static {
    /// The unpacked root filesystem of an image, if the image exists.
    fn rootfs_of(&self, image_id: &str) -> Option<PathBuf>;
}

impl Images for imagec::store::ImageStore {
    fn rootfs_of(&self, image_id: &str) -> Option<PathBuf> {
        self.get(image_id).map(|img| self.rootfs(&img.id))
    }
}

/// Settings of the container manager.
#[derive(Debug, Clone, Default)]
pub struct ContainersConfig {
    /// Where container records and logs live.
    pub state_dir: PathBuf,
    /// What the VCH may use (container count, memory, vCPUs) and how its VMs are named.
    pub limits: Limits,
    /// The VCH's state database, shared with the image store (see `state::open_database`);
    /// `None` opens `state_dir/state.redb`.
    pub database: Option<Arc<redb::Database>>,
    /// The predefined networks (`bridge`); the backend makes each, and each stored user
    /// network, when the port layer opens.
    pub networks: Vec<Network>,
    /// The subnets user networks without one of their own take, in order (the /16s of the
    /// VCH's bridge range).
    pub network_pools: Vec<Cidr>,
    /// The VCH's name: what its volumes say made them.
    pub vch_name: String,
    /// Where volumes live (`--volume-store`).
    pub volume_stores: Vec<crate::VolumeStore>,
    /// What containers may bind-mount (`--bind-path`).
    pub bind_paths: Vec<crate::binds::BindPath>,
}

struct Inner {
    records: StdMutex<HashMap<String, ContainerRecord>>,
    live: StdMutex<HashMap<String, Arc<Live>>>,
    state: StateDir,
    backend: Arc<dyn Backend>,
    images: Arc<dyn Images>,
    events: Arc<EventBus>,
    /// The limits, and starts under way that count against them.
    admission: Admission,
    networks: StdMutex<Vec<Network>>,
    network_store: NetworkStore,
    network_pools: Vec<Cidr>,
    /// The DNS server of each network, by network ID: dropping one stops it.
    dns: StdMutex<HashMap<String, dns::Server>>,
    execs: exec::Execs,
    vch_name: String,
    volumes: crate::volumes::Volumes,
    /// Orders changes to which volumes exist against the records that name them.
    volume_lock: tokio::sync::Mutex<()>,
    bind_paths: Vec<crate::binds::BindPath>,
}

/// The containers of one VCH.
#[derive(Clone)]
pub struct Containers {
    inner: Arc<Inner>,
}

impl Containers {
    /// Loads stored containers. Containers recorded as running whose VM is gone are marked
    /// exited.
    pub async fn open(
        config: ContainersConfig,
        backend: Arc<dyn Backend>,
        images: Arc<dyn Images>,
        events: Arc<EventBus>,
    ) -> Result<Self, Error> {
        let state = StateDir::open_with(&config.state_dir, config.database.clone())
            .map_err(io_err("opening the container state"))?;
        let loaded = state
            .load_all()
            .map_err(io_err("loading container records"))?;
        let mut records = HashMap::new();
        let mut live = HashMap::new();
        for rec in loaded {
            live.insert(rec.id.clone(), Live::new(rec.state.exit_code));
            records.insert(rec.id.clone(), rec);
        }
        tracing::info!(containers = records.len(), "container state loaded");
        let network_store = NetworkStore::new(state.database());
        let state_db = state.database();
        let mut networks = config.networks;
        networks.extend(
            network_store
                .load_all()
                .map_err(io_err("loading the networks"))?,
        );
        let store_files = backend.store_files();
        let me = Containers {
            inner: Arc::new(Inner {
                records: StdMutex::new(records),
                live: StdMutex::new(live),
                state,
                backend,
                images,
                events,
                admission: Admission::new(config.limits),
                networks: StdMutex::new(networks),
                network_store,
                network_pools: config.network_pools,
                dns: StdMutex::default(),
                execs: exec::Execs::open(state_db.clone()).map_err(io_err("loading the execs"))?,
                volumes: crate::volumes::Volumes::open(
                    &config.vch_name,
                    config.volume_stores,
                    store_files,
                )
                .await,
                vch_name: config.vch_name,
                volume_lock: tokio::sync::Mutex::new(()),
                bind_paths: config.bind_paths,
            }),
        };
        me.sweep_volumes().await;
        for net in me.networks() {
            me.inner.backend.ensure_network(&net.spec()).await?;
            me.serve_dns(&net).await;
        }
        me.recover().await;
        me.follow_outside_starts();
        Ok(me)
    }

    /// The VCH's limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.admission.limits
    }

    /// Checks that `rec`'s VM fits in the memory and vCPU limits beside the running ones.
    fn admit_start(&self, rec: &ContainerRecord) -> Result<crate::limits::StartTicket<'_>, Error> {
        let running: Vec<_> = self
            .records()
            .values()
            .filter(|r| r.state.status == Status::Running)
            .map(|r| (r.id.clone(), u64::from(r.spec.memory_mib), r.spec.cpus))
            .collect();
        let need = (u64::from(rec.spec.memory_mib), rec.spec.cpus);
        self.inner
            .admission
            .admit_start(&rec.id, need, running)
            .map_err(|e| Error::Start(e.to_string()))
    }

    pub fn events(&self) -> &Arc<EventBus> {
        &self.inner.events
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerRecord>> {
        self.inner.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.inner
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// All containers, oldest first.
    pub fn list(&self) -> Vec<ContainerRecord> {
        let mut all: Vec<_> = self.records().values().cloned().collect();
        all.sort_by_key(|r| r.created);
        all
    }

    /// Container records this version cannot read, kept with their directories and VMs
    /// (see `state/quarantine.rs`).
    pub fn quarantined(&self) -> Vec<crate::Quarantined> {
        self.inner.state.quarantined().unwrap_or_else(|e| {
            tracing::warn!("reading the quarantined container records failed: {e}");
            Vec::new()
        })
    }

    /// Finds a container by full ID, name (with or without '/') or unique ID prefix.
    pub fn get(&self, key: &str) -> Result<ContainerRecord, Error> {
        let records = self.records();
        if let Some(r) = records.get(key) {
            return Ok(r.clone());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some(r) = records.values().find(|r| r.spec.name == name) {
            return Ok(r.clone());
        }
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_hexdigit()) {
            let mut matches = records.values().filter(|r| r.id.starts_with(key));
            if let Some(first) = matches.next() {
                if matches.next().is_some() {
                    return Err(Error::Ambiguous(key.to_string()));
                }
                return Ok(first.clone());
            }
        }
        Err(Error::NoSuchContainer(key.to_string()))
    }

    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, Error> {
        let rec = {
            let mut records = self.records();
            let rec = records
                .get_mut(id)
                .ok_or_else(|| Error::NoSuchContainer(id.to_string()))?;
            f(rec);
            rec.clone()
        };
        self.inner
            .state
            .save(&rec)
            .map_err(io_err("saving a container record"))?;
        Ok(rec)
    }

    fn publish(&self, action: &str, rec: &ContainerRecord, extra: &[(&str, String)]) {
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("name".to_string(), rec.spec.name.clone());
        attrs.insert("image".to_string(), rec.spec.image_ref.clone());
        for (k, v) in &rec.spec.labels {
            attrs.insert(k.clone(), v.clone());
        }
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.inner
            .events
            .publish("container", action, &rec.id, attrs);
    }

    /// Starts the container as its user does: the restart policy counts afresh from here.
    pub async fn start(&self, key: &str) -> Result<ContainerRecord, Error> {
        let rec = self.get(key)?;
        if rec.state.status != Status::Running {
            self.update(&rec.id, |r| {
                r.state.manually_stopped = false;
                r.state.restart_count = 0;
                r.state.restarting = false;
            })?;
        }
        self.start_vm(&rec.id).await
    }

    /// Powers the container's VM on and starts its process; returns once it runs.
    pub(super) async fn start_vm(&self, key: &str) -> Result<ContainerRecord, Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        let _op = live.op.lock().await;
        let rec = self.get(&rec.id)?;
        if rec.state.status == Status::Running {
            return Err(Error::AlreadyRunning(rec.id.clone()));
        }
        // Held until the start is over: by then the record says running and counts itself.
        let _admitted = self.admit_start(&rec)?;
        self.check_volumes_free(&rec)?;
        // Its links' variables, from the linked containers as they are now, before its own.
        let mut spec = rec.spec.clone();
        let mut env = links::link_env(&rec, |id| self.get(id).ok())?;
        env.append(&mut spec.process.env);
        spec.process.env = env;
        let launch = Launch::of(
            &spec,
            self.inner.backend.root_disk(),
            &self.limits().dns_servers,
            self.inner.backend.host_gateway(),
        )
        .map_err(Error::Start)?;
        live.wait_vm_off().await;
        self.wait_volumes_released(&rec).await?;
        // Bound first: a port that is taken fails the start before a VM is made.
        let bound = self.bind_ports(&rec, &rec.spec.ports).await?;
        let id = rec.id.clone();
        // The record is what the VM's interfaces follow (connect and disconnect change it).
        self.inner
            .backend
            .set_nics(&id, &self.nics_of(&rec))
            .await?;
        // So are its memory and vCPUs (`docker update` changes them while it is stopped).
        let (memory, cpus) = (rec.spec.memory_mib, rec.spec.cpus);
        self.inner.backend.set_size(&id, memory, cpus).await?;
        // And its CPU weight, as the record has it now (`docker update` changes it any time).
        let shares = self.get(&id)?.spec.cpu_shares;
        self.inner.backend.set_cpu_shares(&id, shares).await?;
        let powered = match self.inner.backend.power_on(&id).await {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                let _ = self.update(&id, |r| r.state.error = msg);
                return Err(e.into());
            }
        };
        let pid = powered.pid.unwrap_or(0);
        let (sink, log_base) = live
            .open_sink(&self.inner.state.log_path(&id), rec.spec.log, &id)
            .map_err(io_err("opening the container log"))?;
        let session = match session::start(powered, launch, sink, live.stdin_rx.clone()).await {
            Ok(s) => s,
            Err(failure) => {
                // A guest that broke the protocol is not trusted to power itself off.
                let violated = matches!(failure, StartFailure::Violation(_));
                let grace = if violated {
                    Duration::ZERO
                } else {
                    Duration::from_secs(5)
                };
                let _ = self.inner.backend.power_off(&id, grace).await;
                let (err, code) = match failure {
                    StartFailure::Spawn { message, code } => (Error::Spawn { message, code }, code),
                    StartFailure::Violation(m) | StartFailure::Other(m) => (Error::Start(m), 128),
                };
                let msg = err.to_string();
                let updated = self.update(&id, |r| {
                    r.state.error = msg;
                    r.state.exit_code = code;
                    if r.state.start_count > 0 {
                        r.state.status = Status::Exited;
                    }
                });
                // A guest that broke the protocol ran and was ended for it: `docker events`
                // shows it as it shows a violation after the start.
                if let (true, Ok(r)) = (violated, &updated) {
                    self.publish("die", r, &[("exitCode", code.to_string())]);
                }
                return Err(err);
            }
        };
        *live.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(session.control.clone());
        *live.vm_off.lock().await = Some(session.vm_off);
        let ports = bound.as_ref().map(|b| b.bindings()).unwrap_or_default();
        let rec = self.update(&id, |r| {
            r.state.status = Status::Running;
            r.state.ports = ports;
            // The VM's interfaces follow the endpoints' order, then its spares.
            for (i, e) in r.spec.endpoints.iter_mut().enumerate() {
                e.nic = Some(i as u8);
            }
            r.state.nics = match r.spec.endpoints.len() {
                0 => 0,
                n => (n + hypervisor::SPARE_NICS) as u8,
            };
            r.state.pid = pid;
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.started_at = Some(Utc::now());
            r.state.start_count += 1;
            r.state.log_base = log_base;
            r.state.restarting = false;
            r.state.health = r.spec.healthcheck.as_ref().map(|_| Default::default());
        })?;
        self.serve_ports(&live, &rec, bound);
        self.network_events("connect", &rec);
        self.publish("start", &rec, &[]);
        self.monitor_health(&rec);
        self.follow_shutdown_asks(&id, session.shutdown_asked);
        let me = self.clone();
        let exit = session.exit;
        tokio::spawn(async move { me.on_exit(id, exit).await });
        Ok(rec)
    }

    async fn on_exit(&self, id: String, exit: oneshot::Receiver<SessionExit>) {
        let (code, error) = match exit.await {
            Ok(SessionExit::Exited(code)) => (code, String::new()),
            Ok(SessionExit::Lost(why)) => {
                (137, format!("container VM stopped unexpectedly: {why}"))
            }
            Err(_) => (137, "the session ended without an exit status".to_string()),
        };
        if !error.is_empty() {
            tracing::warn!(%id, "{error}");
        }
        let grace = reap::grace_after(!error.is_empty());
        let Some(live) = self.live(&id) else { return };
        *live.control.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.unpublish(&live);
        let rec = self.update(&id, |r| {
            r.state.status = Status::Exited;
            r.state.paused = false;
            r.state.ports.clear();
            r.state.exit_code = code;
            r.state.error = error;
            r.state.pid = 0;
            r.state.finished_at = Some(Utc::now());
            // Restarting from the moment it is seen ended, so that no one who waited for
            // the exit can remove it before its policy starts it again.
            r.state.restarting = restart::wants_restart(r);
        });
        // Recorded as ended first: the reaper leaves a VM alone while its container runs.
        let (me, vm) = (self.clone(), id.clone());
        let run = rec
            .as_ref()
            .map(|r| r.state.start_count)
            .unwrap_or_default();
        tokio::spawn(async move { me.reap_vm(&vm, grace, run).await });
        let _ = live.output.send(Output::Eof);
        // `die` before the run counts as ended: a stop waiting for it says `stop` after.
        if let Ok(rec) = &rec {
            self.publish("die", rec, &[("exitCode", code.to_string())]);
        }
        live.exits.send_modify(|(n, c)| {
            *n += 1;
            *c = code;
        });
        let Ok(rec) = rec else { return };
        self.network_events("disconnect", &rec);
        self.after_exit(&rec);
        if rec.spec.auto_remove {
            if let Err(e) = self.remove(&id, true, true).await {
                tracing::warn!(%id, "auto-remove failed: {e}");
            }
        }
    }

    /// The state directory of a container (for diagnostics).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.inner.state.container_dir(id)
    }
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        assert!(valid_name("web"));
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-web"));
        assert!(!valid_name("we b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn ids_are_64_hex() {
        let id = new_id();
        assert_eq!(id.len(), 64);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
