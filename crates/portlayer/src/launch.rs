//! What a fresh container VM is told: the port layer's container spec converted, here and
//! nowhere else, into the tether's `Setup` (the machine) and `Process` (the main process).

use chrono::Utc;
use hypervisor::RootDisk;
use tether_proto::{Process, Setup};

use crate::container::ContainerSpec;

/// A container's first messages to its guest, in wire form.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    pub(crate) setup: Setup,
    pub(crate) process: Process,
}

impl Launch {
    /// The launch of `spec` on a VM whose root disk is `root`; `vch_dns` are the VCH's DNS
    /// servers, used when the container names none (as Docker does). Fails when the spec's
    /// privileges do not convert (an unknown capability in an older record).
    pub fn of(spec: &ContainerSpec, root: RootDisk, vch_dns: &[String]) -> Result<Launch, String> {
        let privileges = spec
            .process
            .privileges
            .to_wire()
            .map_err(|e| e.to_string())?;
        let setup = Setup {
            hostname: spec.hostname.clone(),
            root_device: root.device,
            root_fstype: root.fstype,
            // Set when it is sent (see `Launch::setup_now`): the boot comes in between.
            clock_unix_nanos: 0,
            entropy: (0..32).map(|_| rand::random::<u8>()).collect(),
            dns_servers: if spec.dns_servers.is_empty() {
                vch_dns.to_vec()
            } else {
                spec.dns_servers.clone()
            },
            dns_search: spec.dns_search.clone(),
            dns_options: spec.dns_options.clone(),
            confinement: spec.confinement.clone(),
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

    /// The `Setup` to send now, with the host's clock as it is now.
    pub(crate) fn setup_now(setup: &Setup) -> Setup {
        Setup {
            clock_unix_nanos: Utc::now().timestamp_nanos_opt().unwrap_or(0).max(0) as u64,
            ..setup.clone()
        }
    }
}
