//! `docker exec`: further processes in a running container's VM, each a session of its
//! guest's tether beside the main one (see `guest/exec.rs`).
//!
//! An exec is created (its configuration kept), started once (the guest spawns it; its
//! output goes to whoever started it, or nowhere with `-d`), and inspected until its
//! container is removed. Its exit code is Docker's: the process's, 126 when it could not be
//! run (not found or not executable: dockerd says 126 for any exec it could not start, where
//! a container's own command not found is 127), 137 when its container's VM went first. Once an exec has ended, its guest is told
//! to drop what it kept of it. At most [`MAX_EXECS`] execs are remembered per VCH: creating
//! one more forgets the oldest that has ended.
//!
//! Execs are kept in the state database (table `execs`), so a restarted appliance knows them:
//! when it takes a container over, it adopts the execs that ran in it (their processes ran
//! on) and records how they end; one whose container did not survive ended with it (137).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Containers, Error};
use crate::container::Status;
use crate::guest::exec::{Adopted, ExecConfig, ExecOutput};
use crate::guest::session::{GuestControl, Undelivered};
use crate::guest::Launch;
use crate::state::JsonTable;

/// Execs remembered at once.
pub const MAX_EXECS: usize = 1024;
/// How long a guest may take to say an exec started.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The exit code of an exec that did not start, from the guest's (126 cannot be run, 127
/// not found): dockerd's 126 for both; the container stopping first stays `LOST_EXIT`.
fn not_started_code(guest: i32) -> i32 {
    match guest {
        127 => 126,
        other => other,
    }
}

/// The exit code of an exec whose VM went before it ended (killed with the container).
const LOST_EXIT: i32 = 137;

/// An exec as `GET /exec/{id}/json` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecInfo {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    /// Set once it has ended.
    pub exit_code: Option<i32>,
    pub pid: u32,
    /// Whether it has been started (an exec runs once).
    pub started: bool,
}

/// An exec as it is kept.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct ExecEntry {
    info: ExecInfo,
    /// Its guest session, once started.
    session: Option<u32>,
    /// Order of creation, for forgetting the oldest.
    serial: u64,
    /// The guest's control while it runs under this appliance.
    #[serde(skip)]
    control: Option<GuestControl>,
}

/// The execs of a VCH.
pub(super) struct Execs {
    map: std::sync::Mutex<HashMap<String, ExecEntry>>,
    serial: std::sync::atomic::AtomicU64,
    table: JsonTable<ExecEntry>,
}

impl Execs {
    /// The execs kept in `db`.
    pub(super) fn open(db: std::sync::Arc<redb::Database>) -> std::io::Result<Execs> {
        let table = JsonTable::new(db, "execs");
        let map: HashMap<String, ExecEntry> = table
            .load_all()?
            .into_iter()
            .map(|e: ExecEntry| (e.info.id.clone(), e))
            .collect();
        let serial = map.values().map(|e| e.serial + 1).max().unwrap_or(0);
        Ok(Execs {
            map: std::sync::Mutex::new(map),
            serial: serial.into(),
            table,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecEntry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `e` as it now is (a failure to is logged: the exec goes on in memory).
    fn save(&self, e: &ExecEntry) {
        if let Err(err) = self.table.save(&e.info.id, e) {
            tracing::warn!(exec = %e.info.id, "saving an exec failed: {err}");
        }
    }

    fn remove(&self, id: &str) {
        if let Err(err) = self.table.remove(id) {
            tracing::warn!(exec = %id, "removing an exec failed: {err}");
        }
    }

    /// Changes exec `id` with `f` and keeps the result.
    fn update(&self, id: &str, f: impl FnOnce(&mut ExecEntry)) {
        let saved = {
            let mut map = self.lock();
            map.get_mut(id).map(|e| {
                f(e);
                e.clone()
            })
        };
        if let Some(e) = saved {
            self.save(&e);
        }
    }
}

/// What the starter of an exec gets.
pub struct ExecStreams {
    /// The exec's output; ends when it exits.
    pub output: mpsc::Receiver<ExecOutput>,
    /// Its standard input, when it was asked for.
    pub stdin: Option<ExecStdin>,
    pub tty: bool,
    /// Why the process did not run (its exit code is then 126).
    pub failed: Option<String>,
}

/// An exec that may start, not running yet ([`Containers::claim_exec`]).
pub struct ExecClaim {
    id: String,
    rec: crate::container::ContainerRecord,
    control: GuestControl,
    config: ExecConfig,
    process: tether_proto::Process,
}

/// An exec's standard input.
pub struct ExecStdin {
    control: GuestControl,
    session: u32,
}

impl ExecStdin {
    /// Sends `data`; false once the exec or its container has ended.
    pub async fn send(&self, data: Bytes) -> bool {
        self.control.stdin(self.session, data).await.is_ok()
    }

    /// Closes the exec's standard input.
    pub async fn close(&self) {
        let _ = self.control.close_stdin(self.session).await;
    }
}

impl Containers {
    /// Creates an exec in running container `key`; its ID.
    pub fn create_exec(&self, key: &str, config: ExecConfig) -> Result<String, Error> {
        let rec = self.get(key)?;
        if rec.state.status != Status::Running {
            return Err(Error::NotRunning(rec.id));
        }
        self.refuse_paused(&rec, "exec")?;
        if config.cmd.is_empty() {
            return Err(Error::NoExecCommand);
        }
        let id = hex::encode(rand::random::<[u8; 32]>());
        let execs = &self.inner.execs;
        let mut map = execs.lock();
        if map.len() >= MAX_EXECS {
            let oldest = map
                .iter()
                .filter(|(_, e)| !e.info.running)
                .min_by_key(|(_, e)| e.serial)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    map.remove(&k);
                    execs.remove(&k);
                }
                None => {
                    return Err(Error::Start(format!(
                        "{MAX_EXECS} execs are under way in this VCH"
                    )))
                }
            }
        }
        let cmd = config.cmd.join(" ");
        let entry = ExecEntry {
            info: ExecInfo {
                id: id.clone(),
                container_id: rec.id.clone(),
                config,
                running: false,
                exit_code: None,
                pid: 0,
                started: false,
            },
            session: None,
            serial: execs
                .serial
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
            control: None,
        };
        map.insert(id.clone(), entry.clone());
        drop(map);
        execs.save(&entry);
        self.publish(
            &format!("exec_create: {cmd}"),
            &rec,
            &[("execID", id.clone())],
        );
        Ok(id)
    }

    /// An exec's state.
    pub fn exec_info(&self, id: &str) -> Result<ExecInfo, Error> {
        let map = self.inner.execs.lock();
        map.get(id)
            .map(|e| e.info.clone())
            .ok_or_else(|| Error::NoSuchExec(id.to_string()))
    }

    /// The IDs of container `id`'s execs, oldest first.
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let map = self.inner.execs.lock();
        let mut ids: Vec<(&u64, &String)> = map
            .iter()
            .filter(|(_, e)| e.info.container_id == container_id)
            .map(|(k, e)| (&e.serial, k))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// Forgets the execs of a removed container.
    pub(super) fn forget_execs(&self, container_id: &str) {
        let execs = &self.inner.execs;
        let gone: Vec<String> = {
            let mut map = execs.lock();
            let gone = map
                .values()
                .filter(|e| e.info.container_id == container_id)
                .map(|e| e.info.id.clone())
                .collect();
            map.retain(|_, e| e.info.container_id != container_id);
            gone
        };
        for id in gone {
            execs.remove(&id);
        }
    }

    /// Resizes a running exec's terminal.
    pub fn resize_exec(&self, id: &str, rows: u16, cols: u16) -> Result<(), Error> {
        let (session, container) = {
            let map = self.inner.execs.lock();
            let e = map
                .get(id)
                .ok_or_else(|| Error::NoSuchExec(id.to_string()))?;
            (
                e.session.zip(e.control.clone()),
                e.info.container_id.clone(),
            )
        };
        let Some((session, control)) = session else {
            return Err(Error::Start(format!("Exec {id} is not running")));
        };
        match control.resize_session(session, rows, cols) {
            Ok(()) => Ok(()),
            Err(Undelivered::NotRunning) => Err(Error::NotRunning(container)),
            Err(Undelivered::NotReading) => Err(Error::NotReading(container)),
        }
    }

    /// Starts exec `id`: the guest runs its process, whose output and exit come through the
    /// returned streams (`detach`: its output is dropped).
    pub async fn start_exec(&self, id: &str, detach: bool) -> Result<ExecStreams, Error> {
        let claim = self.claim_exec(id)?;
        self.run_exec(claim, detach).await
    }

    /// The first half of [`Containers::start_exec`]: exec `id` may start (it exists, has
    /// not started, its container runs) and is marked started; nothing runs yet. An API
    /// that streams the output answers with this, then runs it, as dockerd starts an exec
    /// once its stream is switched: a client that reads the switch's answer through a
    /// buffer (docker-py's `socket=True`) would otherwise find the first output inside it.
    pub fn claim_exec(&self, id: &str) -> Result<ExecClaim, Error> {
        let unclaimed = |map: &HashMap<String, ExecEntry>| {
            let e = map
                .get(id)
                .ok_or_else(|| Error::NoSuchExec(id.to_string()))?;
            match e.info.started {
                true => Err(Error::ExecRan(id.to_string())),
                false => Ok((e.info.container_id.clone(), e.info.config.clone())),
            }
        };
        let (container_id, config) = unclaimed(&self.inner.execs.lock())?;
        // What can refuse the start is asked first: a refused exec is not marked started.
        let rec = self.get(&container_id)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(container_id.clone()))?;
        let control = live
            .control()
            .map_err(|_| Error::NotRunning(rec.id.clone()))?;
        let process = Launch::exec(&rec.spec, &config).map_err(Error::Start)?;
        {
            let mut map = self.inner.execs.lock();
            unclaimed(&map)?;
            if let Some(e) = map.get_mut(id) {
                e.info.started = true;
            }
        }
        Ok(ExecClaim {
            id: id.to_string(),
            rec,
            control,
            config,
            process,
        })
    }

    /// The second half of [`Containers::start_exec`]: runs the claimed exec.
    pub async fn run_exec(&self, claim: ExecClaim, detach: bool) -> Result<ExecStreams, Error> {
        let ExecClaim {
            id,
            rec,
            control,
            config,
            process,
        } = claim;
        let id = id.as_str();
        let handle = control.spawn(process).map_err(Error::Start)?;
        let session = handle.session;
        let started = match tokio::time::timeout(START_TIMEOUT, handle.started).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => Err((
                "the container stopped before the exec started".into(),
                LOST_EXIT,
            )),
            Err(_) => Err((
                format!(
                    "the guest did not start the exec within {} s",
                    START_TIMEOUT.as_secs()
                ),
                126,
            )),
        };
        let cmd = config.cmd.join(" ");
        let pid = match started {
            Ok(pid) => pid,
            Err((message, code)) => {
                self.exec_ended(id, Some(not_started_code(code)));
                let _ = control.forget(session);
                return Ok(ExecStreams {
                    output: mpsc::channel(1).1,
                    stdin: None,
                    tty: config.tty,
                    failed: Some(message),
                });
            }
        };
        self.inner.execs.update(id, |e| {
            e.info.running = true;
            e.info.pid = pid;
            e.session = Some(session);
            e.control = Some(control.clone());
        });
        self.publish(
            &format!("exec_start: {cmd}"),
            &rec,
            &[("execID", id.to_string())],
        );
        self.watch_exec(id, &rec.id, session, handle.exit, control.clone());
        let mut output = handle.output;
        if detach {
            output.close();
        }
        Ok(ExecStreams {
            output,
            stdin: config
                .attach_stdin
                .then_some(ExecStdin { control, session }),
            tty: config.tty,
            failed: None,
        })
    }

    /// Records how exec `id` (session `session` of container `container`) ends, then has the
    /// guest forget it.
    fn watch_exec(
        &self,
        id: &str,
        container: &str,
        session: u32,
        exit: tokio::sync::oneshot::Receiver<i32>,
        control: GuestControl,
    ) {
        let me = self.clone();
        let (exec_id, container) = (id.to_string(), container.to_string());
        tokio::spawn(async move {
            let code = exit.await.unwrap_or(LOST_EXIT);
            me.exec_ended(&exec_id, Some(code));
            let _ = control.forget(session);
            if let Ok(rec) = me.get(&container) {
                me.publish(
                    "exec_die",
                    &rec,
                    &[("execID", exec_id.clone()), ("exitCode", code.to_string())],
                );
            }
        });
    }

    fn exec_ended(&self, id: &str, code: Option<i32>) {
        self.inner.execs.update(id, |e| {
            e.info.running = false;
            e.info.exit_code = code;
            e.control = None;
        });
    }

    /// After a take-over of container `id` through `control`: its execs that were running
    /// are adopted (their ends recorded as they come); those its guest no longer knows ended
    /// unseen, their exit codes unknown.
    pub(super) fn adopt_execs(&self, container: &str, control: &GuestControl) {
        let running: Vec<(String, Option<u32>)> = {
            let map = self.inner.execs.lock();
            map.values()
                .filter(|e| e.info.container_id == container && e.info.running)
                .map(|e| (e.info.id.clone(), e.session))
                .collect()
        };
        for (id, session) in running {
            match session.map(|s| (s, control.adopt(s))) {
                Some((s, Adopted::Running(exit))) => {
                    self.inner
                        .execs
                        .update(&id, |e| e.control = Some(control.clone()));
                    self.watch_exec(&id, container, s, exit, control.clone());
                }
                Some((_, Adopted::Ended(code))) => self.exec_ended(&id, Some(code)),
                _ => self.exec_ended(&id, None),
            }
        }
    }

    /// After the take-overs: execs still marked running whose container was not taken over
    /// ended with it.
    pub(super) fn end_orphaned_execs(&self) {
        let orphaned: Vec<String> = {
            let map = self.inner.execs.lock();
            map.values()
                .filter(|e| e.info.running && e.control.is_none())
                .map(|e| e.info.id.clone())
                .collect()
        };
        for id in orphaned {
            self.exec_ended(&id, Some(LOST_EXIT));
        }
    }
}
