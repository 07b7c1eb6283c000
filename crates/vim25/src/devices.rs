//! The devices vic gives a VM beside vSphere's defaults: NICs on port groups, a serial port
//! that dials the appliance (the tether's channel), disks (a child delta of an image's disk,
//! or a volume's) on a paravirtual SCSI controller, and an ISO in the CD-ROM.

use crate::datastore::DatastorePath;
use crate::xml::Request;
use crate::{Client, Error, MoRef};

/// The key of IDE controller 0, which vSphere gives every new VM (with IDE 1, 201): a CD-ROM
/// goes on one of their two units each.
const IDE0: i32 = 200;

/// A device to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// A vmxnet3 NIC on a port group, with a MAC or one vSphere makes.
    Nic {
        network: NicBacking,
        mac: Option<String>,
    },
    /// A serial port backed by a network URI (`tcp://HOST:PORT`): the VM connects to it
    /// when `client`, else it listens.
    SerialUri { uri: String, client: bool },
    /// A CD-ROM holding an ISO file.
    Cdrom { iso: DatastorePath },
    /// A disk: made anew at `path` (`capacity_kib` large, thin) when `create`, else the file
    /// there; with a `parent`, a child delta over that disk (copy on write).
    Disk {
        path: DatastorePath,
        capacity_kib: u64,
        parent: Option<DatastorePath>,
        create: bool,
        mode: DiskMode,
    },
}

/// How a disk takes writes (vSphere's `diskMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskMode {
    /// Written through, and in the VM's snapshots (a root disk).
    Persistent,
    /// Written through, outside the VM's snapshots (a volume).
    IndependentPersistent,
    /// Writes are dropped at power-off: the file is never changed (a read-only volume).
    IndependentNonpersistent,
}

impl DiskMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskMode::Persistent => "persistent",
            DiskMode::IndependentPersistent => "independent_persistent",
            DiskMode::IndependentNonpersistent => "independent_nonpersistent",
        }
    }
}

/// What a NIC is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBacking {
    /// A standard port group (or any network named so on the host).
    Network(String),
    /// A distributed port group: its key on its switch, and the switch's UUID.
    Distributed {
        switch_uuid: String,
        portgroup_key: String,
    },
}

impl Client {
    /// The backing of a NIC on network `name` of datacenter `datacenter` (its inventory
    /// path): a distributed port group's switch and key, or a standard port group's name.
    pub async fn nic_backing(&self, datacenter: &str, name: &str) -> Result<NicBacking, Error> {
        let path = format!("{datacenter}/network/{name}");
        let Some(net) = self.find_by_inventory_path(&path).await? else {
            return Err(Error::Fault {
                fault: "NotFound".into(),
                message: format!("network '{name}' not found"),
            });
        };
        if net.kind != "DistributedVirtualPortgroup" {
            return Ok(NicBacking::Network(name.to_string()));
        }
        let pg = self
            .properties(&net, &["key", "config.distributedVirtualSwitch"])
            .await?;
        let missing = |what: &str| Error::Protocol(format!("the port group {name} has no {what}"));
        let key = pg.text("key").ok_or_else(|| missing("key"))?.to_string();
        let switch = (pg.prop("config.distributedVirtualSwitch"))
            .and_then(|n| n.moref())
            .ok_or_else(|| missing("switch"))?;
        let dvs = self.properties(&switch, &["uuid"]).await?;
        let uuid = dvs.text("uuid").ok_or_else(|| missing("switch UUID"))?;
        Ok(NicBacking::Distributed {
            switch_uuid: uuid.to_string(),
            portgroup_key: key,
        })
    }
}

impl Client {
    /// Puts ISO `to` in the CD-ROM of VM `vm` that holds `from` (the VM powered off or on,
    /// as vSphere allows); `NotFound` when no CD-ROM holds it.
    pub async fn change_cdrom(
        &self,
        vm: &MoRef,
        from: &DatastorePath,
        to: &DatastorePath,
        timeout: std::time::Duration,
    ) -> Result<(), Error> {
        let devices = self.devices(vm).await?;
        let held = from.to_string();
        let cdrom = (devices.iter())
            .filter(|d| d.value_type() == "VirtualCdrom")
            .find(|d| d.text_at(&["backing", "fileName"]) == Some(held.as_str()));
        let field_at = |path: &[&str]| cdrom.and_then(|d| d.text_at(path));
        let field = |name: &str| field_at(&[name]);
        let (Some(key), Some(controller), Some(unit)) =
            (field("key"), field("controllerKey"), field("unitNumber"))
        else {
            return Err(Error::Fault {
                fault: "NotFound".into(),
                message: format!("{vm} has no CD-ROM holding {from}"),
            });
        };
        let mut req = Request::new("ReconfigVM_Task", vm);
        req.open_typed("spec", "VirtualMachineConfigSpec")
            .open("deviceChange")
            .text("operation", "edit")
            .open_typed("device", "VirtualCdrom")
            .text("key", key)
            // The device as the server described it (vcsim needs one to edit a device).
            .open("deviceInfo")
            .text(
                "label",
                field_at(&["deviceInfo", "label"]).unwrap_or("CD/DVD drive"),
            )
            .text("summary", &format!("ISO {to}"))
            .close()
            .open_typed("backing", "VirtualCdromIsoBackingInfo")
            .text("fileName", &to.to_string())
            .close();
        connectable(&mut req);
        req.text("controllerKey", controller)
            .text("unitNumber", unit)
            .close()
            .close()
            .close();
        self.run_task(&req, timeout).await.map(|_| ())
    }
}

/// Writes the `deviceChange` entries adding `devices` (a SCSI controller first when there
/// is a disk).
pub fn add_devices(req: &mut Request, devices: &[Device]) {
    let mut key = -1;
    let mut next_key = || {
        key -= 1;
        key
    };
    let scsi = devices
        .iter()
        .any(|d| matches!(d, Device::Disk { .. }))
        .then(|| {
            let k = next_key();
            add_scsi_controller(req, k);
            k
        });
    let mut disk_unit = 0;
    let mut cdroms = 0;
    for d in devices {
        let k = next_key();
        match d {
            Device::Nic { network, mac } => add_nic(req, k, network, mac.as_deref()),
            Device::SerialUri { uri, client } => add_serial(req, k, uri, *client),
            Device::Cdrom { iso } => {
                add_cdrom(req, k, iso, cdroms);
                cdroms += 1;
            }
            Device::Disk {
                path,
                capacity_kib,
                parent,
                create,
                mode,
            } => {
                // Unit 7 is the controller's own.
                if disk_unit == 7 {
                    disk_unit += 1;
                }
                let disk = DiskAt {
                    key: k,
                    controller: scsi.unwrap_or(-1),
                    unit: disk_unit,
                };
                let file = DiskFile {
                    path,
                    parent: parent.as_ref(),
                    create: *create,
                    mode: *mode,
                };
                add_disk(req, disk, &file, *capacity_kib);
                disk_unit += 1;
            }
        }
    }
}

fn connectable(req: &mut Request) {
    req.open("connectable")
        .text("startConnected", "true")
        .text("allowGuestControl", "true")
        .text("connected", "true")
        .close();
}

fn add_scsi_controller(req: &mut Request, key: i32) {
    req.open("deviceChange")
        .text("operation", "add")
        .open_typed("device", "ParaVirtualSCSIController")
        .text("key", &key.to_string())
        .text("busNumber", "0")
        .text("sharedBus", "noSharing")
        .close()
        .close();
}

fn add_nic(req: &mut Request, key: i32, network: &NicBacking, mac: Option<&str>) {
    req.open("deviceChange")
        .text("operation", "add")
        .open_typed("device", "VirtualVmxnet3")
        .text("key", &key.to_string());
    match network {
        NicBacking::Network(name) => req
            .open_typed("backing", "VirtualEthernetCardNetworkBackingInfo")
            .text("deviceName", name)
            .close(),
        NicBacking::Distributed {
            switch_uuid,
            portgroup_key,
        } => req
            .open_typed(
                "backing",
                "VirtualEthernetCardDistributedVirtualPortBackingInfo",
            )
            .open("port")
            .text("switchUuid", switch_uuid)
            .text("portgroupKey", portgroup_key)
            .close()
            .close(),
    };
    connectable(req);
    match mac {
        Some(mac) => req.text("addressType", "manual").text("macAddress", mac),
        None => req.text("addressType", "generated"),
    };
    req.close().close();
}

fn add_serial(req: &mut Request, key: i32, uri: &str, client: bool) {
    req.open("deviceChange")
        .text("operation", "add")
        .open_typed("device", "VirtualSerialPort")
        .text("key", &key.to_string())
        .open_typed("backing", "VirtualSerialPortURIBackingInfo")
        .text("serviceURI", uri)
        .text("direction", if client { "client" } else { "server" })
        .close();
    connectable(req);
    req.text("yieldOnPoll", "true").close().close();
}

/// CD-ROM `n` of the VM: IDE 0 master, slave, then IDE 1's.
fn add_cdrom(req: &mut Request, key: i32, iso: &DatastorePath, n: i32) {
    req.open("deviceChange")
        .text("operation", "add")
        .open_typed("device", "VirtualCdrom")
        .text("key", &key.to_string())
        .open_typed("backing", "VirtualCdromIsoBackingInfo")
        .text("fileName", &iso.to_string())
        .close();
    connectable(req);
    req.text("controllerKey", &(IDE0 + n / 2).to_string())
        .text("unitNumber", &(n % 2).to_string())
        .close()
        .close();
}

/// Where a disk goes: its key, its controller's key and its unit on it.
#[derive(Clone, Copy)]
struct DiskAt {
    key: i32,
    controller: i32,
    unit: i32,
}

/// A disk's file and how it is used.
struct DiskFile<'a> {
    path: &'a DatastorePath,
    parent: Option<&'a DatastorePath>,
    create: bool,
    mode: DiskMode,
}

fn add_disk(req: &mut Request, at: DiskAt, file: &DiskFile, capacity_kib: u64) {
    req.open("deviceChange").text("operation", "add");
    if file.create {
        req.text("fileOperation", "create");
    }
    req.open_typed("device", "VirtualDisk")
        .text("key", &at.key.to_string())
        .open_typed("backing", "VirtualDiskFlatVer2BackingInfo")
        .text("fileName", &file.path.to_string())
        .text("diskMode", file.mode.as_str())
        .text("thinProvisioned", "true");
    if let Some(parent) = file.parent {
        req.open("parent")
            .text("fileName", &parent.to_string())
            .text("diskMode", "persistent")
            .close();
    }
    req.close()
        .text("controllerKey", &at.controller.to_string())
        .text("unitNumber", &at.unit.to_string())
        .text("capacityInKB", &capacity_kib.to_string())
        .close()
        .close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse;
    use crate::MoRef;

    #[test]
    fn cdroms_take_the_ide_controllers_units_in_turn() {
        let mut req = Request::new("CreateVM_Task", &MoRef::new("Folder", "group-v3"));
        req.open("spec");
        let isos: Vec<Device> = (0..3)
            .map(|n| Device::Cdrom {
                iso: DatastorePath::new("ds", &format!("m{n}.iso")),
            })
            .collect();
        add_devices(&mut req, &isos);
        let doc = parse(req.envelope().as_bytes()).unwrap();
        let spec = doc.at(&["Body", "CreateVM_Task", "spec"]).unwrap();
        let at: Vec<(&str, &str)> = (spec.all("deviceChange"))
            .map(|c| {
                let d = c.child("device").unwrap();
                (
                    d.text_at(&["controllerKey"]).unwrap(),
                    d.text_at(&["unitNumber"]).unwrap(),
                )
            })
            .collect();
        assert_eq!(at, [("200", "0"), ("200", "1"), ("201", "0")]);
    }

    #[test]
    fn disks_go_on_a_controller_added_first_and_skip_its_unit() {
        let mut req = Request::new("ReconfigVM_Task", &MoRef::new("VirtualMachine", "vm-1"));
        req.open("spec");
        let disk = |n: u32| Device::Disk {
            path: DatastorePath::new("ds", &format!("d{n}.vmdk")),
            capacity_kib: 1024,
            parent: None,
            create: true,
            mode: DiskMode::Persistent,
        };
        let disks: Vec<Device> = (0..9).map(disk).collect();
        add_devices(&mut req, &disks);
        let doc = parse(req.envelope().as_bytes()).unwrap();
        let spec = doc.at(&["Body", "ReconfigVM_Task", "spec"]).unwrap();
        let changes: Vec<_> = spec.all("deviceChange").collect();
        assert_eq!(changes.len(), 10);
        let controller = changes[0].child("device").unwrap();
        assert_eq!(
            controller.xsi_type.as_deref(),
            Some("ParaVirtualSCSIController")
        );
        let ckey = controller.text_at(&["key"]).unwrap();
        let units: Vec<&str> = changes[1..]
            .iter()
            .map(|c| {
                assert_eq!(c.text_at(&["device", "controllerKey"]), Some(ckey));
                c.text_at(&["device", "unitNumber"]).unwrap()
            })
            .collect();
        assert_eq!(units, ["0", "1", "2", "3", "4", "5", "6", "8", "9"]);
    }
}
