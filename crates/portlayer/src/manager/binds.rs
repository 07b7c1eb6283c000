//! Bind mounts at container create: each host path resolved under the VCH's bind paths and
//! named in the record as resolved, so a later symlink change cannot redirect it.

use hypervisor::Share;

use super::{Containers, Error};
use crate::container::ContainerRecord;

impl Containers {
    /// Resolves `rec`'s bind mounts; returns the VM's shares, in the same order.
    pub(super) fn attach_binds(&self, rec: &mut ContainerRecord) -> Result<Vec<Share>, Error> {
        let mut shares = Vec::new();
        for b in &mut rec.spec.binds {
            let (path, readonly) =
                crate::binds::resolve(&self.inner.bind_paths, &b.source, b.create)?;
            b.readonly |= readonly;
            b.source = path.display().to_string();
            shares.push(Share {
                source: path,
                readonly: b.readonly,
            });
        }
        if let Some(r) = self.records().get_mut(&rec.id) {
            r.spec.binds = rec.spec.binds.clone();
        }
        Ok(shares)
    }
}
