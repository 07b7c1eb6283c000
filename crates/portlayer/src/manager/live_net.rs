//! Connecting a running container to a network, and disconnecting it, without a restart.
//!
//! microvm has no hotplug, so a VM with networks is powered on with spare interfaces
//! ([`hypervisor::SPARE_NICS`]) on no network. Connecting takes the lowest free interface:
//! the record first holds the new endpoint (its address is reserved before anything can
//! use it), then the backend attaches the interface to the network's bridge and the guest
//! gives it the endpoint's MAC and address; if either fails, both are undone and the
//! endpoint leaves the record. Disconnecting is the reverse, and the freed interface, down
//! and back to its spare MAC, can be taken again. A free interface `i` always has the MAC
//! [`hypervisor::spare_mac`]`(id, i)`.

use super::live::Live;
use super::networks::resolve_links;
use super::{Containers, Error};
use crate::container::ContainerRecord;
use crate::networks::{self, Endpoint, EndpointRequest, Network, NetworkError};

fn refused(msg: String) -> Error {
    Error::Network(NetworkError::Forbidden(msg))
}

impl Containers {
    /// Connects running container `rec` to `net`.
    pub(super) async fn connect_running(
        &self,
        live: &Live,
        rec: ContainerRecord,
        net: &Network,
        req: EndpointRequest,
    ) -> Result<(), Error> {
        let control = live
            .control()
            .map_err(|_| refused(format!("container {} is not running", rec.spec.name)))?;
        let ep = {
            let mut records = self.records();
            let cur = records
                .get(&rec.id)
                .ok_or_else(|| Error::NoSuchContainer(rec.id.clone()))?;
            if cur.spec.endpoints.iter().any(|e| e.network == net.name) {
                return Err(refused(format!(
                    "endpoint with name {} already exists in network {}",
                    cur.spec.name, net.name
                )));
            }
            let used: Vec<u8> = cur.spec.endpoints.iter().filter_map(|e| e.nic).collect();
            let nic = (0..cur.state.nics).find(|i| !used.contains(i)).ok_or_else(|| {
                refused(format!(
                    "container {} has no free interface for another network while it runs ({} in all): stop it, connect, start it",
                    cur.spec.name, cur.state.nics
                ))
            })?;
            let req = resolve_links(req, net, records.values())?;
            let taken: Vec<Endpoint> = records
                .values()
                .flat_map(|r| r.spec.endpoints.clone())
                .collect();
            let mut ep = networks::endpoint(net, &req, &taken)?;
            ep.nic = Some(nic);
            let mut updated = records[&rec.id].clone();
            updated.spec.networks.push(net.name.clone());
            updated.spec.endpoint_requests.insert(net.name.clone(), req);
            updated.spec.endpoints.push(ep.clone());
            self.inner
                .state
                .save(&updated)
                .map_err(super::io_err("saving a container record"))?;
            records.insert(updated.id.clone(), updated);
            ep
        };
        let nic = usize::from(ep.nic.unwrap_or_default());
        // On no other network: this one carries its default route now (and on no other
        // with IPv6, its IPv6 default route).
        let v4_route = rec.spec.endpoints.is_empty();
        let v6_route = networks::first_ipv6(&rec.spec.endpoints).is_none();
        let iface = ep.interface(v4_route, v6_route);
        let attached = async {
            self.inner
                .backend
                .attach_nic(
                    &rec.id,
                    nic,
                    &super::networks::nic_of(std::slice::from_ref(net), &rec, &ep),
                )
                .await
                .map_err(|e| e.to_string())?;
            let spare = hypervisor::spare_mac(&rec.id, nic);
            control.set_interface(&spare, &ep.mac, Some(&iface)).await
        }
        .await;
        if let Err(why) = attached {
            let _ = self.inner.backend.detach_nic(&rec.id, nic).await;
            self.forget_endpoint(&rec.id, &net.name)?;
            return Err(Error::Start(format!(
                "connecting container {} to network {}: {why}",
                rec.spec.name, net.name
            )));
        }
        self.network_event("connect", net, Some(&rec.id));
        Ok(())
    }

    /// Disconnects running container `rec` from `net` (with `force`, even when its guest
    /// does not answer). When `net` carried its default route (its first network), the
    /// route moves to the next network it is on, as Docker moves its gateway; on none, it
    /// has no route out until it is connected again. Its DNS server stays the one it
    /// started with (the VCH's, which answers on every network's gateway).
    pub(super) async fn disconnect_running(
        &self,
        live: &Live,
        rec: &ContainerRecord,
        net: &Network,
        force: bool,
    ) -> Result<(), Error> {
        let (pos, ep) = rec
            .spec
            .endpoints
            .iter()
            .enumerate()
            .find(|(_, e)| e.network == net.name)
            .ok_or_else(|| Error::NoSuchContainer(rec.id.clone()))?;
        let nic = usize::from(ep.nic.unwrap_or(pos as u8));
        let spare = hypervisor::spare_mac(&rec.id, nic);
        let told = match live.control() {
            Ok(control) => control.set_interface(&ep.mac, &spare, None).await,
            Err(_) => Err("the container's guest cannot be reached".to_string()),
        };
        match told {
            Ok(()) => {}
            Err(why) if force => {
                tracing::warn!(id = %rec.id, network = %net.name, "disconnected by force: {why}")
            }
            Err(why) => {
                return Err(Error::Start(format!(
                    "disconnecting container {} from network {}: {why} (--force takes it off the network anyway)",
                    rec.spec.name, net.name
                )))
            }
        }
        self.inner.backend.detach_nic(&rec.id, nic).await?;
        self.forget_endpoint(&rec.id, &net.name)?;
        self.network_event("disconnect", net, Some(&rec.id));
        let v4 = pos == 0;
        let v6 = networks::first_ipv6(&rec.spec.endpoints) == Some(pos);
        if v4 || v6 {
            self.move_default_route(live, &rec.id, v4, v6).await;
        }
        Ok(())
    }

    /// Gives the default route of running container `id` to its first network (`v4`), and
    /// its IPv6 one to its first network with IPv6 (`v6`), after the network that carried
    /// them was disconnected (each interface is set again, with its gateway).
    async fn move_default_route(&self, live: &Live, id: &str, v4: bool, v6: bool) {
        let Ok(rec) = self.get(id) else { return };
        let eps = &rec.spec.endpoints;
        let first_v6 = networks::first_ipv6(eps);
        let mut moved_to: Vec<usize> = Vec::new();
        moved_to.extend(v4.then_some(0).filter(|_| !eps.is_empty()));
        moved_to.extend(first_v6.filter(|i| v6 && !moved_to.contains(i)));
        for i in moved_to {
            let ep = &eps[i];
            let moved = match live.control() {
                Ok(control) => {
                    let iface = ep.interface(i == 0, Some(i) == first_v6);
                    (control.set_interface(&ep.mac, &ep.mac, Some(&iface))).await
                }
                Err(_) => Err("the container's guest cannot be reached".to_string()),
            };
            match moved {
                Ok(()) => tracing::info!(%id, network = %ep.network, "the default route moved"),
                Err(why) => {
                    tracing::warn!(%id, network = %ep.network, "moving the default route: {why}")
                }
            }
        }
    }

    /// After a take-over: an endpoint of running container `rec` whose interface a crash
    /// left unconfigured (a connect cut short) is attached and configured now; one the
    /// guest already has is left alone (its interface no longer has the spare MAC).
    pub(super) async fn heal_endpoints(&self, live: &Live, rec: &ContainerRecord) {
        let Ok(control) = live.control() else {
            return;
        };
        let nets = self.networks();
        let first_v6 = networks::first_ipv6(&rec.spec.endpoints);
        for (pos, ep) in rec.spec.endpoints.iter().enumerate().skip(1) {
            let Some(net) = nets.iter().find(|n| n.name == ep.network) else {
                continue;
            };
            let nic = usize::from(ep.nic.unwrap_or(pos as u8));
            if let Err(e) = self
                .inner
                .backend
                .attach_nic(
                    &rec.id,
                    nic,
                    &super::networks::nic_of(std::slice::from_ref(net), rec, ep),
                )
                .await
            {
                tracing::warn!(id = %rec.id, network = %net.name, "re-attaching an interface: {e}");
                continue;
            }
            let spare = hypervisor::spare_mac(&rec.id, nic);
            let healed = control
                .set_interface(
                    &spare,
                    &ep.mac,
                    Some(&ep.interface(false, Some(pos) == first_v6)),
                )
                .await;
            if healed.is_ok() {
                tracing::info!(id = %rec.id, network = %net.name, "an interface a crash left unconfigured is configured");
            }
        }
    }

    /// Takes container `id`'s endpoint on network `name` out of its record.
    fn forget_endpoint(&self, id: &str, name: &str) -> Result<(), Error> {
        self.update(id, |r| {
            r.spec.networks.retain(|n| n != name);
            r.spec.endpoint_requests.remove(name);
            r.spec.endpoints.retain(|e| e.network != name);
        })
        .map(|_| ())
    }
}
