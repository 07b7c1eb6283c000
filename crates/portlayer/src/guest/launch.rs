//! What a fresh container VM is told: the port layer's container spec converted, here and
//! nowhere else, into the tether's `Setup` (the machine) and `Process` (the main process).

use chrono::Utc;
use hypervisor::{DataDisks, RootDisk};
use tether_proto::guest as wire;
use tether_proto::{Privileges, Process, Setup};

use super::options::{
    capability_mask, Confinement, Device, HostEntry, Rlimit, Tmpfs, UnknownCapability,
    DEFAULT_CAPABILITIES,
};
use crate::container::{ContainerSpec, PrivilegeSpec};

/// A container's first messages to its guest, in wire form.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub(crate) setup: Setup,
    pub(crate) process: Process,
}

impl Launch {
    /// The same launch on a VM with no network interfaces (booted to copy files).
    pub fn without_network(mut self) -> Launch {
        self.setup.interfaces.clear();
        self
    }

    /// The launch of `spec` on a VM whose root disk is `root`. A container on a network asks
    /// the VCH's DNS server on its first network's gateway, which forwards what is not a
    /// container name to the container's `--dns` servers or the VCH's; one without a network
    /// gets those servers themselves (`vch_dns` when it names none, as Docker does), and one
    /// whose first network is a container network its `--dns` servers, else that network's,
    /// else the VCH's. Fails when the spec's
    /// privileges do not convert (an unknown capability in an older record).
    /// `host_gateway` is what `--add-host NAME:host-gateway` resolves to.
    pub fn of(
        spec: &ContainerSpec,
        root: RootDisk,
        vch_dns: &[String],
        host_gateway: Option<std::net::Ipv4Addr>,
    ) -> Result<Launch, String> {
        let privileges = privileges(&spec.process.privileges).map_err(|e| e.to_string())?;
        let mut confinement = confinement(&spec.confinement, host_gateway)?;
        // The VM's data disks follow the mounts' order (see `manager/volumes.rs`).
        confinement.disks = (spec.mounts.iter().enumerate())
            .map(|(i, m)| wire::DiskMount {
                serial: hypervisor::disk_serial(i),
                scsi_unit: match root.data_disks {
                    DataDisks::BySerial => None,
                    DataDisks::ByScsiUnit => Some(hypervisor::scsi_unit(i)),
                },
                path: m.target.clone(),
                fstype: root.fstype.clone(),
                readonly: m.readonly,
            })
            .collect();
        confinement.shares = (spec.binds.iter().enumerate())
            .map(|(i, b)| wire::ShareMount {
                tag: hypervisor::share_tag(i),
                path: b.target.clone(),
                readonly: b.readonly,
            })
            .collect();
        let setup = Setup {
            hostname: spec.hostname.clone(),
            root_device: root.device,
            root_fstype: root.fstype,
            // Set when it is sent (see `Launch::setup_now`): the boot comes in between.
            clock_unix_nanos: 0,
            entropy: (0..32).map(|_| rand::random::<u8>()).collect(),
            dns_servers: match spec.endpoints.first() {
                Some(e) if !e.external => vec![e.gateway.to_string()],
                _ if !spec.dns_servers.is_empty() => spec.dns_servers.clone(),
                Some(e) if !e.dns.is_empty() => e.dns.iter().map(|d| d.to_string()).collect(),
                _ => vch_dns.to_vec(),
            },
            dns_search: spec.dns_search.clone(),
            dns_options: spec.dns_options.clone(),
            confinement,
            // The default route goes through the first network, the IPv6 one through the
            // first network with IPv6.
            interfaces: (spec.endpoints.iter().enumerate())
                .map(|(i, e)| {
                    let v6 = Some(i) == crate::networks::first_ipv6(&spec.endpoints);
                    e.interface(i == 0, v6)
                })
                .collect(),
            // Set when it is sent to a VM restored from a template (see `session.rs`).
            restored: None,
        };
        let p = &spec.process;
        let process = Process {
            argv: p.argv.clone(),
            env: p.env.clone(),
            cwd: p.working_dir.clone(),
            user: p.user.clone(),
            tty: p.tty,
            stdin: p.open_stdin,
            rows: p.console_size.0,
            cols: p.console_size.1,
            privileges,
        };
        Ok(Launch { setup, process })
    }

    /// The process of an exec in a container made from `spec`: its command, with the
    /// container's environment (the exec's variables win), user and working directory unless
    /// the exec names its own, and the container's privileges (all of them with
    /// `--privileged`).
    pub(crate) fn exec(
        spec: &ContainerSpec,
        exec: &super::exec::ExecConfig,
    ) -> Result<Process, String> {
        let p = &spec.process;
        let mut privileges = privileges(&p.privileges).map_err(|e| e.to_string())?;
        if exec.privileged {
            privileges.capabilities =
                Some(capability_mask(&super::options::CAPABILITIES).map_err(|e| e.to_string())?);
        }
        let key = |kv: &str| kv.split('=').next().unwrap_or_default().to_string();
        let mut env: Vec<String> = p
            .env
            .iter()
            .filter(|kv| !exec.env.iter().any(|e| key(e) == key(kv)))
            .cloned()
            .collect();
        env.extend(exec.env.iter().cloned());
        let or = |mine: &str, theirs: &str| if mine.is_empty() { theirs } else { mine }.to_string();
        Ok(Process {
            argv: exec.cmd.clone(),
            env,
            cwd: or(&exec.working_dir, &p.working_dir),
            user: or(&exec.user, &p.user),
            tty: exec.tty,
            stdin: exec.attach_stdin,
            rows: exec.console_size.0,
            cols: exec.console_size.1,
            privileges,
        })
    }

    /// The `Setup` to send now, with the host's clock as it is now.
    pub(crate) fn setup_now(setup: &Setup) -> Setup {
        Setup {
            clock_unix_nanos: Utc::now().timestamp_nanos_opt().unwrap_or(0).max(0) as u64,
            ..setup.clone()
        }
    }
}

/// The tether's form of a process's privileges: capabilities as a mask, the default set when
/// none were recorded.
fn privileges(p: &PrivilegeSpec) -> Result<Privileges, UnknownCapability> {
    let capabilities = match &p.capabilities {
        Some(names) => capability_mask(names)?,
        None => capability_mask(&DEFAULT_CAPABILITIES)?,
    };
    Ok(Privileges {
        capabilities: Some(capabilities),
        groups: p.groups.clone(),
        rlimits: p.rlimits.iter().map(rlimit).collect(),
        no_new_privileges: p.no_new_privileges,
    })
}

fn rlimit(r: &Rlimit) -> wire::Rlimit {
    wire::Rlimit {
        name: r.name.clone(),
        soft: r.soft,
        hard: r.hard,
    }
}

/// The confinement on the wire; `host-gateway` in an extra host is `host_gateway`, and
/// without one the start fails saying so.
fn confinement(
    c: &Confinement,
    host_gateway: Option<std::net::Ipv4Addr>,
) -> Result<wire::Confinement, String> {
    let tmpfs = |t: &Tmpfs| wire::Tmpfs {
        path: t.path.clone(),
        options: t.options.clone(),
    };
    let device = |d: &Device| wire::Device {
        guest_path: d.guest_path.clone(),
        container_path: d.container_path.clone(),
    };
    let host = |h: &HostEntry| {
        let ip = match (h.ip.as_str(), host_gateway) {
            ("host-gateway", Some(gw)) => gw.to_string(),
            ("host-gateway", None) => {
                return Err(format!(
                    "--add-host {}:host-gateway: the VCH has no way to the host (no uplink)",
                    h.name
                ))
            }
            (ip, _) => ip.to_string(),
        };
        Ok(wire::HostEntry {
            name: h.name.clone(),
            ip,
        })
    };
    Ok(wire::Confinement {
        privileged: c.privileged,
        readonly_rootfs: c.readonly_rootfs,
        tmpfs: c.tmpfs.iter().map(tmpfs).collect(),
        shm_size: c.shm_size,
        sysctls: c.sysctls.clone(),
        devices: c.devices.iter().map(device).collect(),
        extra_hosts: c.extra_hosts.iter().map(host).collect::<Result<_, _>>()?,
        domainname: c.domainname.clone(),
        pids_limit: c.pids_limit,
        masked_paths: c.masked_paths.clone(),
        readonly_paths: c.readonly_paths.clone(),
        disks: Vec::new(),
        shares: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Confinement {
        Confinement {
            privileged: true,
            readonly_rootfs: true,
            tmpfs: vec![Tmpfs {
                path: "/run".into(),
                options: vec!["noexec".into(), "size=1m".into()],
            }],
            shm_size: 1 << 20,
            sysctls: vec![("net.ipv4.ip_forward".into(), "1".into())],
            devices: vec![Device {
                guest_path: "/dev/vdb".into(),
                container_path: "/dev/xvdb".into(),
            }],
            extra_hosts: vec![HostEntry {
                name: "db".into(),
                ip: "10.0.0.5".into(),
            }],
            domainname: "example".into(),
            pids_limit: 64,
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
        }
    }

    /// The record's form and the wire's are two types; their JSON is the same, so records
    /// written when the record held the wire's type still load, and every field crosses.
    #[test]
    fn every_field_of_the_confinement_reaches_the_wire() {
        let c = full();
        let w = confinement(&c, None).unwrap();
        let as_record = serde_json::to_value(&c).unwrap();
        assert_eq!(serde_json::to_value(&w).unwrap(), as_record);
        let back: Confinement = serde_json::from_value(as_record).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn volumes_become_disks_found_by_serial_in_mount_order() {
        let spec = ContainerSpec {
            mounts: vec![
                crate::VolumeMount {
                    name: "a".into(),
                    target: "/a".into(),
                    ..Default::default()
                },
                crate::VolumeMount {
                    name: "b".into(),
                    target: "/b".into(),
                    readonly: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let root = RootDisk {
            device: "/dev/vda".into(),
            fstype: "ext4".into(),
            data_disks: hypervisor::DataDisks::BySerial,
        };
        let l = Launch::of(&spec, root.clone(), &[], None).unwrap();
        let disks = &l.setup.confinement.disks;
        assert_eq!(disks.len(), 2);
        assert_eq!(
            (disks[1].serial.as_str(), disks[1].path.as_str()),
            ("vic-vol1", "/b")
        );
        assert_eq!(disks[1].scsi_unit, None);
        let scsi = RootDisk {
            data_disks: DataDisks::ByScsiUnit,
            ..root
        };
        let l = Launch::of(&spec, scsi, &[], None).unwrap();
        let units: Vec<_> = (l.setup.confinement.disks.iter())
            .map(|d| d.scsi_unit)
            .collect();
        assert_eq!(units, [Some(1), Some(2)]);
        assert!(disks[1].readonly && !disks[0].readonly && disks[0].fstype == "ext4");
    }

    #[test]
    fn privileges_become_a_mask_and_an_unknown_capability_is_refused() {
        let p = PrivilegeSpec {
            capabilities: Some(vec!["CAP_CHOWN".into(), "CAP_KILL".into()]),
            groups: vec!["wheel".into()],
            rlimits: vec![Rlimit {
                name: "nofile".into(),
                soft: 10,
                hard: 20,
            }],
            no_new_privileges: true,
        };
        let w = privileges(&p).unwrap();
        assert_eq!(w.capabilities, Some((1 << 0) | (1 << 5)));
        assert_eq!(w.groups, vec!["wheel".to_string()]);
        assert_eq!(w.rlimits[0].hard, 20);
        assert!(w.no_new_privileges);
        let default = privileges(&PrivilegeSpec::default()).unwrap();
        assert_eq!(default.capabilities, Some(0xa804_25fb));
        let bad = PrivilegeSpec {
            capabilities: Some(vec!["CAP_NOPE".into()]),
            ..PrivilegeSpec::default()
        };
        assert!(privileges(&bad).is_err());
    }

    #[test]
    fn host_gateway_is_the_backends_address_or_the_start_fails() {
        let mut c = full();
        c.extra_hosts.push(HostEntry {
            name: "gw".into(),
            ip: "host-gateway".into(),
        });
        let gw = std::net::Ipv4Addr::new(169, 254, 7, 1);
        let w = confinement(&c, Some(gw)).unwrap();
        assert_eq!(w.extra_hosts[1].ip, "169.254.7.1");
        assert_eq!(w.extra_hosts[0].ip, "10.0.0.5", "other entries stay");
        let err = confinement(&c, None).unwrap_err();
        assert!(err.contains("--add-host gw:host-gateway"), "{err}");
    }
}
