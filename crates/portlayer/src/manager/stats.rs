//! `docker stats`: a running container's counters, as its guest reads them.

use super::{Containers, Error};
use crate::container::{ContainerRecord, Status};
use crate::guest::stats::ContainerStats;

impl Containers {
    /// Container `key`'s record, and its VM's counters while it runs (`None` when it does
    /// not, or is paused: a stopped VM counts nothing).
    pub async fn stats(
        &self,
        key: &str,
    ) -> Result<(ContainerRecord, Option<ContainerStats>), Error> {
        let rec = self.get(key)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(key.to_string()))?;
        if rec.state.status != Status::Running || rec.state.paused {
            return Ok((rec, None));
        }
        let Ok(control) = live.control() else {
            return Ok((rec, None));
        };
        let stats = control.stats().await.map_err(Error::Guest)?;
        Ok((rec, Some(stats)))
    }
}
