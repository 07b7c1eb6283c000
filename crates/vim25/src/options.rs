//! Settings (OptionManager) and virtual disks (VirtualDiskManager).

use std::time::Duration;

use crate::datastore::DatastorePath;
use crate::xml::Request;
use crate::{Client, Error, MoRef};

impl Client {
    fn setting(&self) -> Result<MoRef, Error> {
        self.content()
            .setting
            .clone()
            .ok_or_else(|| Error::Protocol("the server has no OptionManager".into()))
    }

    /// The server's settings whose keys start with `prefix` (all with `""`), as text.
    pub async fn query_options(&self, prefix: &str) -> Result<Vec<(String, String)>, Error> {
        let mut req = Request::new("QueryOptions", &self.setting()?);
        if !prefix.is_empty() {
            req.text("name", prefix);
        }
        let resp = self.call(&req).await?;
        Ok(resp
            .all("returnval")
            .map(|o| {
                let key = o.text_at(&["key"]).unwrap_or("").to_string();
                (key, o.text_at(&["value"]).unwrap_or("").to_string())
            })
            .collect())
    }

    /// Sets server settings (string values).
    pub async fn update_options(&self, values: &[(String, String)]) -> Result<(), Error> {
        let mut req = Request::new("UpdateOptions", &self.setting()?);
        for (k, v) in values {
            req.open("changedValue")
                .text("key", k)
                .typed_text("value", "xsd:string", v)
                .close();
        }
        self.call(&req).await.map(|_| ())
    }

    fn disk_manager(&self) -> Result<MoRef, Error> {
        self.content()
            .virtual_disk_manager
            .clone()
            .ok_or_else(|| Error::Protocol("the server has no VirtualDiskManager".into()))
    }

    /// Makes a thin virtual disk of `capacity_kib` at `path` (a `.vmdk`), in `datacenter`.
    pub async fn create_virtual_disk(
        &self,
        datacenter: &MoRef,
        path: &DatastorePath,
        capacity_kib: u64,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("CreateVirtualDisk_Task", &self.disk_manager()?);
        req.text("name", &path.to_string())
            .moref("datacenter", datacenter)
            .open_typed("spec", "FileBackedVirtualDiskSpec")
            .text("diskType", "thin")
            .text("adapterType", "lsiLogic")
            .text("capacityKb", &capacity_kib.to_string())
            .close();
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// Moves the virtual disk at `from` (its descriptor and extents) to `to`, replacing the
    /// disk there.
    pub async fn replace_virtual_disk(
        &self,
        datacenter: &MoRef,
        from: &DatastorePath,
        to: &DatastorePath,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("MoveVirtualDisk_Task", &self.disk_manager()?);
        req.text("sourceName", &from.to_string())
            .moref("sourceDatacenter", datacenter)
            .text("destName", &to.to_string())
            .moref("destDatacenter", datacenter)
            .text("force", "true");
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// Deletes the virtual disk at `path`.
    pub async fn delete_virtual_disk(
        &self,
        datacenter: &MoRef,
        path: &DatastorePath,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("DeleteVirtualDisk_Task", &self.disk_manager()?);
        req.text("name", &path.to_string())
            .moref("datacenter", datacenter);
        self.run_task(&req, timeout).await.map(|_| ())
    }
}
