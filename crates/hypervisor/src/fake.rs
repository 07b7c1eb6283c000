//! A recording fake backend (feature `fake`), for the tests of the layers above: every call is
//! recorded as a line (`"power_on <12-char id>"`), any call can be made to fail once, the
//! inventory and the power state it reports are set by the test, and a powered-on "VM" is an
//! in-process guest (the test's own, speaking whatever it likes) on the far end of a pipe.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::io::DuplexStream;
use tokio::sync::oneshot;

use crate::{Backend, BackendError, PowerState, PoweredOn, RootDisk, VmConfig, VmExit};

/// The guest of a fake VM: runs on the pipe's far end and sends on `off` when it powers off.
pub type FakeGuest =
    Arc<dyn Fn(DuplexStream, oneshot::Sender<()>) -> BoxFuture<'static, ()> + Send + Sync>;

/// The fake's root disk, which its guests are told of.
pub const FAKE_ROOT_DEVICE: &str = "/dev/fake0";
/// The fake root disk's filesystem.
pub const FAKE_ROOT_FSTYPE: &str = "fakefs";

/// A backend that records its calls and runs `guest` for every VM powered on.
pub struct FakeBackend {
    guest: FakeGuest,
    calls: Mutex<Vec<String>>,
    inventory: Mutex<Vec<String>>,
    report_on: AtomicBool,
    /// Call name (`"power_on"`) → the message its next call fails with.
    failures: Mutex<HashMap<&'static str, String>>,
    /// Where `dial_udp` connects instead of the address asked (a stand-in for a container).
    udp_peer: Mutex<Option<std::net::SocketAddr>>,
    /// While set, each `power_on` waits for a permit of it (a test's slow start).
    power_gate: Mutex<Option<std::sync::Arc<tokio::sync::Semaphore>>>,
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

impl FakeBackend {
    pub fn new(guest: FakeGuest) -> FakeBackend {
        FakeBackend {
            guest,
            calls: Mutex::default(),
            inventory: Mutex::default(),
            report_on: AtomicBool::new(false),
            failures: Mutex::default(),
            udp_peer: Mutex::default(),
            power_gate: Mutex::default(),
        }
    }

    /// Makes each `power_on` from now on wait (after it is recorded) for a permit that the
    /// test adds to the returned semaphore.
    pub fn hold_power_on(&self) -> std::sync::Arc<tokio::sync::Semaphore> {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        *self.power_gate.lock().unwrap_or_else(|e| e.into_inner()) = Some(gate.clone());
        gate
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What `list_vms` reports from now on.
    pub fn set_inventory(&self, vms: Vec<String>) {
        *self.inventory.lock().unwrap_or_else(|e| e.into_inner()) = vms;
    }

    /// Whether `power_state` reports VMs on (else off).
    pub fn report_on(&self, on: bool) {
        self.report_on.store(on, Ordering::SeqCst);
    }

    /// Makes `dial_udp` connect to `peer` (on this host) whatever address it is asked for.
    pub fn dial_udp_to(&self, peer: std::net::SocketAddr) {
        *self.udp_peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
    }

    /// Makes the next call named `call` (`"create_vm"`, `"power_on"`, …) fail with `message`.
    pub fn fail_next(&self, call: &'static str, message: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(call, message.to_string());
    }

    /// Records `call` (with its argument) and fails it if the test asked for that.
    fn call(&self, call: &'static str, arg: &str) -> Result<(), BackendError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{call} {arg}"));
        match self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(call)
        {
            Some(message) => Err(BackendError::Failed(message)),
            None => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn describe(&self) -> String {
        "fake backend".into()
    }
    fn root_disk(&self) -> RootDisk {
        RootDisk {
            device: FAKE_ROOT_DEVICE.into(),
            fstype: FAKE_ROOT_FSTYPE.into(),
            data_disks: crate::DataDisks::BySerial,
        }
    }
    async fn prepare_image(&self, image_id: &str, _rootfs: &Path) -> Result<(), BackendError> {
        self.call("prepare_image", image_id)
    }
    async fn remove_image(&self, image_id: &str) -> Result<(), BackendError> {
        self.call("remove_image", image_id)
    }
    async fn ensure_network(&self, net: &crate::NetworkSpec) -> Result<(), BackendError> {
        self.call("ensure_network", &net.name)
    }
    /// The fake's host is 192.0.2.1 (TEST-NET-1), never reached.
    fn host_gateway(&self) -> Option<std::net::Ipv4Addr> {
        Some(std::net::Ipv4Addr::new(192, 0, 2, 1))
    }
    async fn remove_network(&self, name: &str) -> Result<(), BackendError> {
        self.call("remove_network", name)
    }
    /// Real sockets on 127.0.0.1 (any port): tests can talk to what listens there.
    async fn listen(
        &self,
        at: std::net::SocketAddrV4,
    ) -> Result<(std::net::UdpSocket, std::net::TcpListener), BackendError> {
        self.call("listen", &at.to_string())?;
        let io = |e: std::io::Error| BackendError::Failed(e.to_string());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").map_err(io)?;
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
        Ok((udp, tcp))
    }
    async fn attach_nic(
        &self,
        id: &str,
        index: usize,
        nic: &crate::Nic,
    ) -> Result<(), BackendError> {
        self.call(
            "attach_nic",
            &format!("{} {index} {}", short(id), nic.network),
        )
    }
    async fn detach_nic(&self, id: &str, index: usize) -> Result<(), BackendError> {
        self.call("detach_nic", &format!("{} {index}", short(id)))
    }
    async fn set_nics(&self, id: &str, nics: &[crate::Nic]) -> Result<(), BackendError> {
        let nets: Vec<&str> = nics.iter().map(|n| n.network.as_str()).collect();
        self.call("set_nics", &format!("{} {}", short(id), nets.join(",")))
    }
    async fn set_size(&self, id: &str, memory_mib: u32, cpus: u32) -> Result<(), BackendError> {
        self.call("set_size", &format!("{} {memory_mib} {cpus}", short(id)))
    }
    async fn set_cpu_shares(&self, id: &str, shares: Option<u32>) -> Result<(), BackendError> {
        self.call("set_cpu_shares", &format!("{} {shares:?}", short(id)))
    }
    async fn dial(
        &self,
        to: std::net::SocketAddrV4,
    ) -> Result<tokio::net::TcpStream, BackendError> {
        self.call("dial", &to.to_string())?;
        Err(BackendError::Failed(
            "the fake backend has no network".into(),
        ))
    }
    async fn dial_udp(
        &self,
        to: std::net::SocketAddrV4,
    ) -> Result<tokio::net::UdpSocket, BackendError> {
        self.call("dial_udp", &to.to_string())?;
        let peer = *self.udp_peer.lock().unwrap_or_else(|e| e.into_inner());
        let Some(peer) = peer else {
            return Err(BackendError::Failed(
                "the fake backend has no network".into(),
            ));
        };
        let failed = |e: std::io::Error| BackendError::Failed(format!("a fake UDP socket: {e}"));
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(failed)?;
        s.connect(peer).await.map_err(failed)?;
        Ok(s)
    }
    async fn create_vm(&self, vm: &VmConfig) -> Result<(), BackendError> {
        self.call("create_vm", short(&vm.id))
    }
    fn store_files(&self) -> std::sync::Arc<dyn crate::StoreFiles> {
        std::sync::Arc::new(crate::LocalFiles)
    }

    async fn create_disk(
        &self,
        path: &Path,
        capacity_mib: u64,
        _seed: Option<&Path>,
    ) -> Result<(), BackendError> {
        self.call("create_disk", &path.display().to_string())?;
        let f = std::fs::File::create(path).map_err(|source| BackendError::Io {
            context: format!("creating {}", path.display()),
            source,
        })?;
        f.set_len(capacity_mib << 20)
            .map_err(|source| BackendError::Io {
                context: format!("sizing {}", path.display()),
                source,
            })
    }
    async fn power_on(&self, id: &str) -> Result<PoweredOn, BackendError> {
        self.call("power_on", short(id))?;
        let gate = self
            .power_gate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(gate) = gate {
            gate.acquire()
                .await
                .map_err(|_| BackendError::Failed("the test's power gate closed".into()))?
                .forget();
        }
        let (host, guest) = tokio::io::duplex(1 << 16);
        let (off_tx, off_rx) = oneshot::channel();
        tokio::spawn((self.guest)(guest, off_tx));
        Ok(PoweredOn {
            channel: Box::new(host),
            pid: Some(4242),
            restored: None,
            exited: off_rx
                .map(|_| VmExit {
                    detail: "fake VM off".into(),
                })
                .boxed(),
        })
    }
    async fn reattach(&self, id: &str) -> Result<PoweredOn, BackendError> {
        self.call("reattach", short(id))?;
        Err(BackendError::Failed(format!(
            "the fake backend's VM {id} has no tether to re-attach to"
        )))
    }
    async fn pause(&self, id: &str) -> Result<(), BackendError> {
        self.call("pause", short(id))
    }
    async fn resume(&self, id: &str) -> Result<(), BackendError> {
        self.call("resume", short(id))
    }
    async fn power_off(&self, id: &str, _grace: Duration) -> Result<(), BackendError> {
        self.call("power_off", short(id))
    }
    async fn destroy_vm(&self, id: &str) -> Result<(), BackendError> {
        self.call("destroy_vm", short(id))
    }
    async fn power_state(&self, _id: &str) -> PowerState {
        if self.report_on.load(Ordering::SeqCst) {
            PowerState::On
        } else {
            PowerState::Off
        }
    }
    async fn list_vms(&self) -> Result<Vec<String>, BackendError> {
        self.call("list_vms", "")?;
        Ok(self
            .inventory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone())
    }
}
