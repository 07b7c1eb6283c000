//! A running container's published ports (see `ports.rs`): bound before its VM powers on,
//! served once it runs, closed when it stops, bound again when a restarted appliance takes
//! it over.

use super::live::Live;
use super::{Containers, Error};
use crate::container::ContainerRecord;
use crate::ports::{Bound, PortBinding};

impl Containers {
    /// Binds `bindings` of `rec` (nothing to bind: `None`). A container that publishes ports
    /// needs an endpoint to carry them to.
    pub(super) async fn bind_ports(
        &self,
        rec: &ContainerRecord,
        bindings: &[PortBinding],
    ) -> Result<Option<Bound>, Error> {
        if bindings.is_empty() {
            return Ok(None);
        }
        let Some(first) = rec.spec.endpoints.first() else {
            return Err(Error::Start(
                "published ports need a network: the container has none".into(),
            ));
        };
        if !rec.spec.endpoints.iter().any(|e| !e.external) {
            return Ok(Some(
                Bound::direct(first.ip, bindings).map_err(Error::Start)?,
            ));
        }
        Ok(Some(Bound::bind(&rec.spec.name, bindings).await?))
    }

    /// Serves `bound` for `rec`'s first endpoint on one of the VCH's own networks until the
    /// container stops (a container network's ports are its own address's).
    pub(super) fn serve_ports(&self, live: &Live, rec: &ContainerRecord, bound: Option<Bound>) {
        let ep = rec.spec.endpoints.iter().find(|e| !e.external);
        let (Some(bound), Some(ep)) = (bound, ep) else {
            return;
        };
        let published = bound.serve(self.inner.backend.clone(), ep.ip);
        *live.ports.lock().unwrap_or_else(|e| e.into_inner()) = Some(published);
    }

    /// Tells `/events` that `rec` joined (`connect`) or left (`disconnect`) each of its
    /// networks, as dockerd does when a container starts and stops.
    pub(super) fn network_events(&self, action: &str, rec: &ContainerRecord) {
        let nets = self.networks();
        for e in &rec.spec.endpoints {
            if let Some(net) = nets.iter().find(|n| n.name == e.network) {
                self.network_event(action, net, Some(&rec.id));
            }
        }
    }

    /// Closes the container's published ports.
    pub(super) fn unpublish(&self, live: &Live) {
        live.ports.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// After a restart of the appliance: publishes a running container's ports again, at the
    /// host ports its record holds. A port another program took meanwhile is logged.
    pub(super) async fn republish(&self, live: &Live, rec: &ContainerRecord) {
        match self.bind_ports(rec, &rec.state.ports).await {
            Ok(bound) => self.serve_ports(live, rec, bound),
            Err(e) => tracing::warn!(id = %rec.id, "published ports are not served again: {e}"),
        }
    }
}
