//! `vic-machine debug`: the appliance's log level (VIC: enable debug mode) and the VCH's log
//! bundle (`--bundle`), on either target.

use std::path::Path;
use std::time::Duration;

use super::{configure, layout, place, progress, vsphere, Common, Place};

/// Runs `debug`: `--bundle FILE` alone writes the bundle and changes nothing else; without
/// `--debug` or `--bundle` the level is 1.
pub(super) fn run(
    common: Common,
    debug: Option<u8>,
    bundle: Option<&Path>,
    reset_progress: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let debug = match (debug, bundle) {
        (None, None) => Some(1),
        (d, _) => d,
    };
    if let Place::Vsphere(target) = place(&common.target, &common.credentials)? {
        let thumbprint = common.credentials.thumbprint.as_deref();
        if let Some(file) = bundle {
            vsphere::bundle(&target, thumbprint, &common.name, file)?;
            if debug.is_none() {
                return Ok(());
            }
        }
        let debug = debug.unwrap_or(1);
        if reset_progress {
            return vsphere::reset_progress(&target, thumbprint, &common.name);
        }
        let change = vsphere::Change::Debug(debug);
        return vsphere::configure(&target, thumbprint, &common.name, change, timeout);
    }
    let layout = layout(common)?;
    if reset_progress {
        return progress::reset(&layout, "Debug");
    }
    if let Some(file) = bundle {
        configure::bundle(&layout, file)?;
    }
    match debug {
        Some(level) => configure::debug(&layout, level, timeout),
        None => Ok(()),
    }
}
