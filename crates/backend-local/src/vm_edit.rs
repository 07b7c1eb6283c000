//! Changes to a VM between its runs (its interfaces, memory and vCPUs, which take effect at
//! its next power-on) and to a running one as a whole (stopped and continued).

use hypervisor::BackendError;

use crate::vm::Vms;

fn failed(msg: String) -> BackendError {
    BackendError::Failed(msg)
}

/// A CPU weight asked of a VM without a cgroup.
pub(crate) fn unconfined() -> BackendError {
    failed(
        "CPU shares are a weight of the VM's cgroup, and this VCH's VMs have none: its appliance \
         does not run as root"
            .into(),
    )
}

impl Vms {
    /// Replaces the interfaces of VM `id`, which must be off (unchanged ones are not written).
    pub fn set_nics(&self, id: &str, nics: &[hypervisor::Nic]) -> Result<(), BackendError> {
        let mut spec = self.load(id)?;
        if spec.nics == nics {
            return Ok(());
        }
        if self.live_pid(id).is_some() {
            return Err(failed(format!(
                "VM {id} is running: its NICs change while off"
            )));
        }
        spec.nics = nics.to_vec();
        self.save(&spec)
    }

    /// Sets the memory and vCPUs of VM `id`, which is off, for its next power-on.
    pub fn set_size(&self, id: &str, memory_mib: u32, cpus: u32) -> Result<(), BackendError> {
        let mut spec = self.load(id)?;
        if (spec.memory_mib, spec.cpus) == (memory_mib, cpus) {
            return Ok(());
        }
        if self.live_pid(id).is_some() {
            return Err(failed(format!(
                "VM {id} is running: its memory and vCPUs change while off"
            )));
        }
        spec.memory_mib = memory_mib;
        spec.cpus = cpus;
        self.save(&spec)
    }

    /// Sets the CPU weight of VM `id`: kept for its next power-on, and given to its cgroup at
    /// once when it runs. Only a confined VM has a cgroup: an unconfined one refuses a weight.
    pub fn set_cpu_shares(&self, id: &str, shares: Option<u32>) -> Result<(), BackendError> {
        let mut spec = self.load(id)?;
        let Some(confine) = &self.confine else {
            return match shares {
                Some(_) => Err(unconfined()),
                None => Ok(()),
            };
        };
        if spec.cpu_shares != shares {
            spec.cpu_shares = shares;
            self.save(&spec)?;
        }
        if self.live_pid(id).is_some() {
            confine.set_cpu_shares(id, shares.map(u64::from))?;
        }
        Ok(())
    }

    /// Sends `signal` to the VM's QEMU: SIGSTOP stops the whole VM (every vCPU and device
    /// thread) and SIGCONT continues it.
    pub fn signal(&self, id: &str, signal: i32) -> Result<(), BackendError> {
        let pid = self
            .live_pid(id)
            .ok_or_else(|| failed(format!("VM {id} is not running")))?;
        // SAFETY: kill(2) on the PID of a QEMU this backend started (checked by live_pid).
        if unsafe { libc::kill(pid as i32, signal) } != 0 {
            return Err(failed(format!(
                "signalling QEMU (pid {pid}) of VM {id}: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(())
    }
}
