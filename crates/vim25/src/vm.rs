//! Virtual machines: created in a folder and a resource pool, reconfigured, powered, destroyed.

use std::time::Duration;

use crate::devices::{add_devices, Device};
use crate::xml::{Node, Request};
use crate::{Client, Error, MoRef};

/// What a new VM is (the fields vic sets of a `VirtualMachineConfigSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub name: String,
    /// The guest OS identifier, e.g. `otherLinux64Guest`.
    pub guest_id: String,
    /// The datastore its files go on: `[DATASTORE]` or `[DATASTORE] folder`.
    pub files: String,
    pub memory_mib: u32,
    pub cpus: u32,
    /// Its CPU shares (`cpuAllocation`, level `custom`); none: vSphere's `normal`.
    pub cpu_shares: Option<u32>,
    pub annotation: Option<String>,
    /// `extraConfig` keys and values (guestinfo and the like).
    pub extra_config: Vec<(String, String)>,
    /// Devices beside vSphere's defaults.
    pub devices: Vec<Device>,
}

/// A VM's power state, as vSphere reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    PoweredOn,
    PoweredOff,
    Suspended,
}

impl PowerState {
    pub fn parse(s: &str) -> Option<PowerState> {
        match s {
            "poweredOn" => Some(PowerState::PoweredOn),
            "poweredOff" => Some(PowerState::PoweredOff),
            "suspended" => Some(PowerState::Suspended),
            _ => None,
        }
    }
}

/// Writes the `cpuAllocation` of a config spec: `shares` custom shares, or the `normal` level.
fn cpu_allocation(req: &mut Request, shares: Option<u32>) {
    let (count, level) = match shares {
        Some(n) => (n, "custom"),
        None => (0, "normal"),
    };
    req.open("cpuAllocation")
        .open("shares")
        .text("shares", &count.to_string())
        .text("level", level)
        .close()
        .close();
}

/// Writes the `extraConfig` entries of a config spec.
fn extra_config(req: &mut Request, entries: &[(String, String)]) {
    for (k, v) in entries {
        req.open("extraConfig")
            .text("key", k)
            .typed_text("value", "xsd:string", v)
            .close();
    }
}

impl Client {
    /// Creates a VM in `folder`, its resources from `pool` (on `host` when given: ESX or a
    /// standalone host; a cluster's DRS places it otherwise); returns its reference.
    pub async fn create_vm(
        &self,
        folder: &MoRef,
        pool: &MoRef,
        host: Option<&MoRef>,
        spec: &VmSpec,
        timeout: Duration,
    ) -> Result<MoRef, Error> {
        let mut req = Request::new("CreateVM_Task", folder);
        req.open("config")
            .text("name", &spec.name)
            .text("guestId", &spec.guest_id);
        if let Some(a) = &spec.annotation {
            req.text("annotation", a);
        }
        req.open("files").text("vmPathName", &spec.files).close();
        req.text("numCPUs", &spec.cpus.to_string())
            .text("memoryMB", &spec.memory_mib.to_string());
        add_devices(&mut req, &spec.devices);
        if spec.cpu_shares.is_some() {
            cpu_allocation(&mut req, spec.cpu_shares);
        }
        extra_config(&mut req, &spec.extra_config);
        req.close();
        req.moref("pool", pool);
        if let Some(h) = host {
            req.moref("host", h);
        }
        let result = self.run_task(&req, timeout).await?;
        result
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("CreateVM_Task returned no VM".into()))
    }

    /// Sets `extraConfig` entries of `vm` (a key set again replaces its value).
    pub async fn set_extra_config(
        &self,
        vm: &MoRef,
        entries: &[(String, String)],
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("ReconfigVM_Task", vm);
        req.open("spec");
        extra_config(&mut req, entries);
        req.close();
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// The VM's memory (MiB) and vCPUs, as configured.
    pub async fn size(&self, vm: &MoRef) -> Result<(u32, u32), Error> {
        let props =
            (self.properties(vm, &["config.hardware.memoryMB", "config.hardware.numCPU"])).await?;
        let read = |path: &str| {
            props
                .text(path)
                .and_then(|t| t.parse::<u32>().ok())
                .ok_or_else(|| Error::Protocol(format!("the VM has no {path}")))
        };
        Ok((
            read("config.hardware.memoryMB")?,
            read("config.hardware.numCPU")?,
        ))
    }

    /// Sets the VM's memory (MiB) and vCPUs (the VM is off, or its guest hot-adds them).
    pub async fn set_size(
        &self,
        vm: &MoRef,
        memory_mib: u32,
        cpus: u32,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("ReconfigVM_Task", vm);
        req.open("spec")
            .text("numCPUs", &cpus.to_string())
            .text("memoryMB", &memory_mib.to_string())
            .close();
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// The VM's vCPUs and its custom CPU shares (`None` when its level is another, `normal`
    /// and the like), in one read: what a change of its weight is measured against.
    pub async fn cpus_and_shares(&self, vm: &MoRef) -> Result<(u32, Option<u32>), Error> {
        let (cpus, level) = (
            "config.hardware.numCPU",
            "config.cpuAllocation.shares.level",
        );
        let count = "config.cpuAllocation.shares.shares";
        let props = self.properties(vm, &[cpus, level, count]).await?;
        let number = |path: &str| {
            (props.text(path).and_then(|t| t.parse::<u32>().ok()))
                .ok_or_else(|| Error::Protocol(format!("the VM has no {path}")))
        };
        let shares = match props.text(level) {
            Some("custom") => Some(number(count)?),
            _ => None,
        };
        Ok((number(cpus)?, shares))
    }

    /// Sets the VM's CPU shares (custom), or gives it the `normal` level; a running VM takes
    /// them at once.
    pub async fn set_cpu_shares(
        &self,
        vm: &MoRef,
        shares: Option<u32>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("ReconfigVM_Task", vm);
        req.open("spec");
        cpu_allocation(&mut req, shares);
        req.close();
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// The VM's `extraConfig`, the last value of each key (a simulator may keep earlier ones).
    pub async fn extra_config(&self, vm: &MoRef) -> Result<Vec<(String, String)>, Error> {
        let props = self.properties(vm, &["config.extraConfig"]).await?;
        let mut out: Vec<(String, String)> = Vec::new();
        let Some(list) = props.prop("config.extraConfig") else {
            return Ok(out);
        };
        for opt in &list.children {
            let key = opt.text_at(&["key"]).unwrap_or("").to_string();
            let value = opt.text_at(&["value"]).unwrap_or("").to_string();
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(entry) => entry.1 = value,
                None => out.push((key, value)),
            }
        }
        Ok(out)
    }

    /// The VM's devices (`config.hardware.device`), each its type and node.
    pub async fn devices(&self, vm: &MoRef) -> Result<Vec<Node>, Error> {
        let props = self.properties(vm, &["config.hardware.device"]).await?;
        Ok(props
            .prop("config.hardware.device")
            .map(|l| l.children.clone())
            .unwrap_or_default())
    }

    pub async fn power_on(&self, vm: &MoRef, timeout: Duration) -> Result<(), Error> {
        let req = Request::new("PowerOnVM_Task", vm);
        self.run_task(&req, timeout).await.map(|_| ())
    }

    pub async fn power_off(&self, vm: &MoRef, timeout: Duration) -> Result<(), Error> {
        let req = Request::new("PowerOffVM_Task", vm);
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// Asks the guest to shut down (through its tools); returns once asked.
    pub async fn shutdown_guest(&self, vm: &MoRef) -> Result<(), Error> {
        self.call(&Request::new("ShutdownGuest", vm))
            .await
            .map(|_| ())
    }

    /// Takes the disks at SCSI units other than 0 (the root disk) off VM `vm`, their files
    /// kept: what a VM had attached that is not its own (volumes), before the VM is destroyed
    /// with its files.
    pub async fn detach_data_disks(&self, vm: &MoRef, timeout: Duration) -> Result<usize, Error> {
        let keys: Vec<String> = (self.devices(vm).await?.iter())
            .filter(|d| d.value_type() == "VirtualDisk")
            .filter(|d| d.text_at(&["unitNumber"]).is_some_and(|u| u != "0"))
            .filter_map(|d| d.text_at(&["key"]).map(str::to_string))
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let mut req = Request::new("ReconfigVM_Task", vm);
        req.open_typed("spec", "VirtualMachineConfigSpec");
        for key in &keys {
            req.open("deviceChange")
                .text("operation", "remove")
                .open_typed("device", "VirtualDisk")
                .text("key", key)
                .text("capacityInKB", "0")
                .close()
                .close();
        }
        req.close();
        self.run_task(&req, timeout).await?;
        Ok(keys.len())
    }

    /// Deletes the VM and its files; it must be powered off.
    pub async fn destroy(&self, obj: &MoRef, timeout: Duration) -> Result<(), Error> {
        let req = Request::new("Destroy_Task", obj);
        self.run_task(&req, timeout).await.map(|_| ())
    }

    pub async fn power_state(&self, vm: &MoRef) -> Result<PowerState, Error> {
        let props = self.properties(vm, &["runtime.powerState"]).await?;
        let s = props.text("runtime.powerState").unwrap_or("");
        PowerState::parse(s).ok_or_else(|| Error::Protocol(format!("{vm}: power state {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;

    #[test]
    fn a_create_request_lists_the_spec_in_schema_order() {
        let mut req = Request::new("CreateVM_Task", &MoRef::new("Folder", "group-v3"));
        req.open("config")
            .text("name", "c1")
            .text("guestId", "otherLinux64Guest");
        extra_config(&mut req, &[("guestinfo.a".into(), "x & y".into())]);
        req.close();
        let doc = parse(req.envelope().as_bytes()).unwrap();
        let config = doc.at(&["Body", "CreateVM_Task", "config"]).unwrap();
        let names: Vec<&str> = config.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["name", "guestId", "extraConfig"]);
        let value = config.at(&["extraConfig", "value"]).unwrap();
        assert_eq!(value.text, "x & y");
        assert_eq!(value.xsi_type.as_deref(), Some("string"));
    }
}
