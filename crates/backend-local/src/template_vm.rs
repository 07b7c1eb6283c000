//! Making a template (boot a VM to its tether's Hello, save it) and restoring a clone from
//! one; what templates are and when they are used is `templates.rs`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypervisor::{BackendError, PoweredOn, Restored, TetherChannel, VmConfig};
use serde_json::json;
use tether_proto::{FrameDecoder, FrameKind, GuestMsg};
use tokio::io::AsyncReadExt;

use crate::disk::Root;
use crate::qemu::{self, Launch, Role};
use crate::qmp::Qmp;
use crate::template_store::Store;
use crate::templates::{memfd, seal, Shape, Template, Templates, MAX_STATE, ROOT_GIB};
use crate::vm::{failed, io_err, Spawn, VmSpec, Vms};
use crate::vm_channel::bind;

/// Where a template's QEMU sends its state.
const STATE_SOCK: &str = "state.sock";

/// Makes templates and restores clones from them.
pub struct Maker {
    pub templates: Arc<Templates>,
    /// The templates kept in the VCH's state for the next appliance.
    store: Arc<Store>,
    /// The template VMs, while they are made.
    vms: Vms,
    /// A VM's launch without its own parts (accelerator, kernel, initramfs).
    machine: Launch,
    qemu: PathBuf,
    qemu_img: PathBuf,
    limit: Duration,
}

impl Maker {
    pub fn new(
        templates: Templates,
        vms: Vms,
        machine: Launch,
        qemu: PathBuf,
        qemu_img: PathBuf,
        limit: Duration,
    ) -> Self {
        // What an earlier appliance was making went with its memfds; what it made and saved
        // is loaded (in the background: the shapes wait for it, they do not boot meanwhile).
        vms.forget_all();
        let templates = Arc::new(templates);
        let fingerprint = format!("{} tsc_khz={:?}", machine.accel, machine.tsc_khz);
        let store = Arc::new(Store::new(vms.dir(".saved"), fingerprint));
        load_saved(&templates, &store);
        Self {
            store,
            templates,
            vms,
            machine,
            qemu,
            qemu_img,
            limit,
        }
    }

    /// The launch of a VM of `shape` in `role`.
    pub fn launch(&self, name: &str, shape: Shape, macs: Vec<String>, role: Role) -> Launch {
        Launch {
            name: name.to_string(),
            memory_mib: shape.memory_mib,
            cpus: shape.cpus,
            macs,
            disks: Vec::new(),
            shares: 0,
            role: Some(role),
            ..self.machine.clone()
        }
    }

    /// Makes the template of `shape` and records it, or why it could not be made.
    pub async fn make(self: Arc<Self>, shape: Shape) {
        for dropped in self.templates.take_evicted() {
            self.store.remove(dropped);
        }
        let started = Instant::now();
        let made = self.build(shape).await;
        match &made {
            Ok(_) => tracing::info!(
                template = shape.name(),
                elapsed = ?started.elapsed(),
                "template made: VMs of its shape are restored from it"
            ),
            Err(e) => tracing::warn!(
                template = shape.name(),
                "making the template failed ({e}): VMs of its shape boot cold"
            ),
        }
        if let Err(e) = self.vms.destroy(&shape.name()).await {
            tracing::warn!(template = shape.name(), "removing the template VM: {e}");
        }
        let made = made.map(Arc::new);
        if let Ok(t) = &made {
            let (store, t) = (self.store.clone(), t.clone());
            let saved = tokio::task::spawn_blocking(move || store.save(shape, &t)).await;
            if let Ok(Err(e)) | Err(e) = saved.map_err(std::io::Error::other) {
                tracing::warn!(
                    template = shape.name(),
                    "keeping the template in the VCH's state failed: {e}"
                );
            }
        }
        self.templates.made(shape, made);
    }

    async fn build(&self, shape: Shape) -> Result<Template, BackendError> {
        let id = shape.name();
        let _ = self.vms.destroy(&id).await;
        let made_from = self.templates.inputs();
        let vm = VmConfig {
            id: id.clone(),
            display_name: format!("vic-template-{id}"),
            image_id: "template".into(),
            memory_mib: shape.memory_mib,
            cpus: shape.cpus,
            nics: Vec::new(),
            disks: Vec::new(),
            shares: Vec::new(),
            host_cpus: Vec::new(),
            cpu_shares: None,
        };
        self.vms
            .create(&vm, Root::Blank { gib: ROOT_GIB }, &self.qemu_img)
            .await?;
        let ram = memfd(
            c"vic-template-ram",
            u64::from(shape.memory_mib.max(64)) << 20,
        )?;
        let launch = self.launch(&vm.display_name, shape, shape.macs(), Role::Template);
        let spawn = Spawn {
            base: None,
            qemu: &self.qemu,
            args: qemu::args(&launch),
            fds: vec![ram
                .try_clone()
                .map_err(io_err("passing a template's RAM".into()))?],
            boot_timeout: self.limit,
            qmp: true,
        };
        let (powered, monitor) = self.vms.power_on(self.vms.load(&id)?, spawn).await?;
        let monitor = monitor.ok_or_else(|| failed("the template has no monitor".into()))?;
        let mut channel = powered.channel;
        hello(&mut channel, self.limit).await?;
        // Saved while its tether's channel is connected: a clone's guest finds it so.
        let state = self.save(&id, monitor).await?;
        // Sealed once no QEMU maps it writable (QEMU was told to quit).
        self.vms.power_off(&id, self.limit).await?;
        drop(channel);
        seal(&ram)?;
        seal(&state)?;
        Ok(Template::new(ram, state, shape.macs(), made_from))
    }

    /// Saves the paused template's device state (not its RAM, which is in its memfd) and
    /// ends its QEMU.
    async fn save(
        &self,
        id: &str,
        monitor: tokio::net::UnixStream,
    ) -> Result<OwnedFd, BackendError> {
        let mut q = Qmp::open(monitor, self.limit).await?;
        q.execute("migrate-set-capabilities", ignore_shared())
            .await?;
        let dir = self.vms.dir(id);
        let sock = dir.join(STATE_SOCK);
        let listener = bind(&dir, &sock)?;
        self.vms.give(id, &sock)?;
        q.execute("migrate", json!({ "uri": format!("unix:{STATE_SOCK}") }))
            .await?;
        let (stream, _) = tokio::time::timeout(self.limit, listener.accept())
            .await
            .map_err(|_| failed("the template's QEMU did not send its state".into()))?
            .map_err(io_err("accepting the template's state".into()))?;
        let mut bytes = Vec::new();
        let mut stream = stream.take(MAX_STATE + 1);
        let read = stream.read_to_end(&mut bytes);
        tokio::time::timeout(self.limit, read)
            .await
            .map_err(|_| failed("the template's state did not end in time".into()))?
            .map_err(io_err("reading the template's state".into()))?;
        if bytes.len() as u64 > MAX_STATE {
            return Err(failed(format!(
                "the template's state is over {MAX_STATE} bytes"
            )));
        }
        self.migrated(&mut q).await?;
        let _ = q.execute("quit", json!({})).await;
        let state = memfd(c"vic-template-state", 0)?;
        let mut file = std::fs::File::from(state);
        std::io::Write::write_all(&mut file, &bytes)
            .map_err(io_err("keeping the template's state".into()))?;
        Ok(OwnedFd::from(file))
    }

    /// Waits for QEMU to say its migration completed.
    async fn migrated(&self, q: &mut Qmp) -> Result<(), BackendError> {
        let deadline = Instant::now() + self.limit;
        loop {
            let r = q.execute("query-migrate", json!({})).await?;
            match r.get("status").and_then(|s| s.as_str()) {
                Some("completed") => return Ok(()),
                Some(s @ ("failed" | "cancelled")) => {
                    let why = r.get("error-desc").and_then(|e| e.as_str()).unwrap_or(s);
                    return Err(failed(format!("saving the template failed: {why}")));
                }
                _ if Instant::now() >= deadline => {
                    return Err(failed(
                        "saving the template did not complete in time".into(),
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    /// Drops a template a clone could not be restored from, and its saved copy.
    pub fn discard(&self, shape: Shape, why: &BackendError) {
        self.templates.discard(shape, why);
        self.store.remove(shape);
    }

    /// Starts VM `spec` restored from `t`: `fds` are its taps, `macs` its interfaces' MACs.
    pub async fn restore(
        &self,
        vms: &Vms,
        spec: VmSpec,
        t: &Template,
        mut fds: Vec<OwnedFd>,
        macs: &[String],
        base: &Path,
    ) -> Result<PoweredOn, BackendError> {
        let id = spec.id.clone();
        let shape = Shape {
            memory_mib: spec.memory_mib,
            cpus: spec.cpus,
            nics: macs.len(),
        };
        let launch = self.launch(&spec.display_name, shape, macs.to_vec(), Role::Clone);
        let state_fd = qemu::ram_fd(&launch) + 1;
        fds.push(t.ram()?);
        fds.push(t.state()?);
        let spawn = Spawn {
            base: Some(base),
            qemu: &self.qemu,
            args: qemu::args(&launch),
            fds,
            boot_timeout: self.limit,
            qmp: true,
        };
        let started = Instant::now();
        let (mut powered, monitor) = vms.power_on(spec, spawn).await?;
        let connected = started.elapsed();
        let restored = async {
            let monitor = monitor.ok_or_else(|| failed("the clone has no monitor".into()))?;
            let mut q = Qmp::open(monitor, self.limit).await?;
            q.execute("migrate-set-capabilities", ignore_shared())
                .await?;
            let uri = format!("fd:{state_fd}");
            q.execute("migrate-incoming", json!({ "uri": uri })).await?;
            q.event("RESUME").await
        }
        .await;
        if let Err(e) = restored {
            let _ = vms.power_off(&id, Duration::ZERO).await;
            let log = crate::vm::tail(&vms.dir(&id).join(crate::vm::QEMU_LOG), 3);
            return Err(failed(format!("{e}; QEMU said: {log}")));
        }
        tracing::debug!(
            vm = %id,
            ?connected,
            restored = ?started.elapsed(),
            "restored from its template (QEMU connected its channels, then loaded its state)"
        );
        powered.restored = Some(Restored {
            macs: t.macs.iter().cloned().zip(macs.iter().cloned()).collect(),
        });
        Ok(powered)
    }
}

impl Drop for Maker {
    /// A template being made when its backend goes (the appliance stops, a build task is
    /// cancelled) is not left running: its QEMU is killed and its directory removed.
    fn drop(&mut self) {
        self.vms.forget_all();
    }
}

/// RAM in a shared memory backend (the template's memfd) stays out of the stream.
fn ignore_shared() -> serde_json::Value {
    json!({ "capabilities": [{ "capability": "x-ignore-shared", "state": true }] })
}

/// Reads the template's tether channel until its Hello.
async fn hello(channel: &mut Box<dyn TetherChannel>, limit: Duration) -> Result<(), BackendError> {
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let read = async {
        loop {
            while let Some(f) = dec
                .next_frame()
                .map_err(|e| failed(format!("the template's tether: {e}")))?
            {
                if f.kind == FrameKind::Control
                    && matches!(f.parse_control::<GuestMsg>(), Ok(GuestMsg::Hello { .. }))
                {
                    return Ok(());
                }
            }
            let n = channel
                .read(&mut buf)
                .await
                .map_err(io_err("reading the template's tether".into()))?;
            if n == 0 {
                return Err(failed("the template's tether channel closed".into()));
            }
            dec.push(&buf[..n]);
        }
    };
    tokio::time::timeout(limit, read).await.map_err(|_| {
        failed(format!(
            "the template's tether did not say Hello within {limit:?}"
        ))
    })?
}

/// Loads the templates an earlier appliance saved, in a thread of its own; their shapes are
/// marked as being made until then.
fn load_saved(templates: &Arc<Templates>, store: &Arc<Store>) {
    let mut shapes = store.usable(&templates.inputs());
    if shapes.is_empty() {
        return;
    }
    // No more than are held at once.
    for extra in shapes.split_off(shapes.len().min(crate::templates::MAX_TEMPLATES)) {
        store.remove(extra);
    }
    for s in &shapes {
        templates.loading(*s);
    }
    let (templates, store) = (templates.clone(), store.clone());
    std::thread::spawn(move || {
        for shape in shapes {
            match store.load(shape) {
                Ok(t) => {
                    tracing::info!(
                        template = shape.name(),
                        "template loaded from the VCH's state"
                    );
                    templates.made(shape, Ok(Arc::new(t)));
                }
                Err(e) => {
                    tracing::warn!(
                        template = shape.name(),
                        "loading a saved template failed ({e}): it is made again"
                    );
                    templates.forget(shape);
                }
            }
        }
    });
}
