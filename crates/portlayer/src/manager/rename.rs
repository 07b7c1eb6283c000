//! `docker rename`: a container's name changes, running or not; names it is known by on its
//! networks follow (they are read from the records), its hostname and VM name stay, as with
//! Docker.

use super::{valid_name, Containers, Error};
use crate::container::ContainerRecord;

impl Containers {
    /// Renames container `key` to `new` (Docker's leading `/` allowed).
    pub fn rename(&self, key: &str, new: &str) -> Result<ContainerRecord, Error> {
        let new = new.trim_start_matches('/');
        if !valid_name(new) {
            return Err(Error::InvalidName(new.to_string()));
        }
        let id = self.get(key)?.id;
        let (old, rec) = {
            let mut records = self.records();
            if let Some(other) = records.values().find(|r| r.spec.name == new) {
                if other.id == id {
                    return Err(Error::SameName);
                }
                return Err(Error::NameConflict {
                    name: new.to_string(),
                    id: other.id.clone(),
                });
            }
            let rec = records
                .get_mut(&id)
                .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
            let old = std::mem::replace(&mut rec.spec.name, new.to_string());
            (old, rec.clone())
        };
        self.inner
            .state
            .save(&rec)
            .map_err(super::io_err("saving a container record"))?;
        self.publish("rename", &rec, &[("oldName", format!("/{old}"))]);
        Ok(rec)
    }
}
