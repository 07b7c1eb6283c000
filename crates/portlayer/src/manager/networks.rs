//! The VCH's networks as containers see them: `docker network create`, `rm`, `prune`, and
//! connecting a container to a network or disconnecting it.
//!
//! Lock order: the records, then the network list. An address is handed out under the
//! records' lock from what the records hold (see `networks/`); a network is removed only
//! while no record holds an endpoint on it, checked under the same lock.
//!
//! Crash safety: a new network is stored before its bridge is made (the port layer makes
//! every stored network's bridge when it opens, so a crash in between heals itself), and a
//! removed one loses its bridge before its record (a crash in between leaves it listed, to
//! be removed again). A container's interfaces are set from its record at every start, so
//! connect and disconnect change only the record.

use std::collections::BTreeMap;

use super::{Containers, Error};
use crate::container::{ContainerRecord, ContainerSpec, Status};
use crate::networks::{
    self, Endpoint, EndpointRequest, Link, Network, NetworkError, NetworkRequest,
};

impl Containers {
    /// Every network, the predefined one first.
    pub fn networks(&self) -> Vec<Network> {
        self.inner
            .networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The network `key` names: its name, ID or a unique prefix of its ID.
    pub fn network(&self, key: &str) -> Result<Network, Error> {
        Ok(networks::find(&self.networks(), key)?.clone())
    }

    /// Creates a user network and makes it in the backend.
    pub async fn create_network(&self, req: NetworkRequest) -> Result<Network, Error> {
        let net = {
            let mut nets = self
                .inner
                .networks
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let net = networks::plan(req, &nets, &self.inner.network_pools)?;
            self.inner
                .network_store
                .save(&net)
                .map_err(super::io_err("saving a network"))?;
            nets.push(net.clone());
            net
        };
        if let Err(e) = self.inner.backend.ensure_network(&net.spec()).await {
            self.forget_network(&net);
            let _ = self.inner.backend.remove_network(&net.backend_name()).await;
            return Err(e.into());
        }
        self.serve_dns(&net).await;
        self.network_event("create", &net, None);
        Ok(net)
    }

    /// Removes user network `key`; refused for the predefined one and while any container
    /// (running or not) has an endpoint on it.
    pub async fn remove_network(&self, key: &str) -> Result<Network, Error> {
        let net = {
            let records = self.records();
            let net = self.network(key)?;
            check_removable(&net, records.values())?;
            net
        };
        self.stop_dns(&net);
        self.inner
            .backend
            .remove_network(&net.backend_name())
            .await?;
        self.forget_network(&net);
        self.network_event("destroy", &net, None);
        Ok(net)
    }

    /// Removes every user network no container is on that `chosen` admits; their names.
    pub async fn prune_networks(&self, chosen: impl Fn(&Network) -> bool) -> Vec<String> {
        let candidates: Vec<Network> = {
            let records = self.records();
            self.networks()
                .into_iter()
                .filter(|n| check_removable(n, records.values()).is_ok() && chosen(n))
                .collect()
        };
        let mut removed = Vec::new();
        for n in candidates {
            match self.remove_network(&n.id).await {
                Ok(n) => removed.push(n.name),
                Err(e) => tracing::info!(network = %n.name, "not pruned: {e}"),
            }
        }
        removed
    }

    /// Attaches container `ctr` to network `net` with what `req` asks (its links naming
    /// containers): a stopped one from its next start, a running one at once (`live_net.rs`).
    pub async fn connect(&self, net: &str, ctr: &str, req: EndpointRequest) -> Result<(), Error> {
        let rec = self.get(ctr)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(ctr.into()))?;
        let _op = live.op.lock().await;
        let net = self.network(net)?;
        let rec = self.get(&rec.id)?;
        if rec.state.status == Status::Running {
            return self.connect_running(&live, rec, &net, req).await;
        }
        self.connect_stopped(&rec.id, &net, req)
    }

    /// Records the endpoint of stopped container `id` on `net`.
    fn connect_stopped(&self, id: &str, net: &Network, req: EndpointRequest) -> Result<(), Error> {
        let mut records = self.records();
        let rec = records
            .get(id)
            .ok_or_else(|| Error::NoSuchContainer(id.into()))?
            .clone();
        if rec.spec.endpoints.iter().any(|e| e.network == net.name) {
            return Err(NetworkError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.spec.name, net.name
            ))
            .into());
        }
        let req = resolve_links(req, net, records.values())?;
        let taken: Vec<Endpoint> = records
            .values()
            .flat_map(|r| r.spec.endpoints.clone())
            .collect();
        let ep = networks::endpoint(net, &req, &taken)?;
        let mut updated = rec.clone();
        updated.spec.networks.push(net.name.clone());
        updated.spec.endpoint_requests.insert(net.name.clone(), req);
        updated.spec.endpoints.push(ep);
        self.inner
            .state
            .save(&updated)
            .map_err(super::io_err("saving a container record"))?;
        records.insert(updated.id.clone(), updated);
        Ok(())
    }

    /// Detaches container `ctr` from network `net` (a running one at once; with `force`
    /// even when its guest does not answer).
    pub async fn disconnect(&self, net: &str, ctr: &str, force: bool) -> Result<(), Error> {
        let rec = self.get(ctr)?;
        let live = self
            .live(&rec.id)
            .ok_or_else(|| Error::NoSuchContainer(ctr.into()))?;
        let _op = live.op.lock().await;
        let net = self.network(net)?;
        let rec = self.get(&rec.id)?;
        if !rec.spec.endpoints.iter().any(|e| e.network == net.name) {
            return Err(NetworkError::Forbidden(format!(
                "container {} is not connected to network {}",
                rec.spec.name, net.name
            ))
            .into());
        }
        if rec.state.status == Status::Running {
            return self.disconnect_running(&live, &rec, &net, force).await;
        }
        self.update(&rec.id, |r| {
            r.spec.networks.retain(|n| *n != net.name);
            r.spec.endpoint_requests.remove(&net.name);
            r.spec.endpoints.retain(|e| e.network != net.name);
        })?;
        Ok(())
    }

    /// The endpoints `spec` asks for, with addresses none of `records` holds and links
    /// naming containers among them (by ID from now on).
    pub(super) fn allocate_endpoints<'a>(
        &self,
        spec: &mut ContainerSpec,
        records: impl Iterator<Item = &'a ContainerRecord> + Clone,
    ) -> Result<(), Error> {
        let nets = self.networks();
        let mut taken: Vec<Endpoint> = records
            .clone()
            .flat_map(|r| r.spec.endpoints.iter().cloned())
            .collect();
        let mut out = Vec::new();
        let mut requests = BTreeMap::new();
        for name in &spec.networks {
            let net = networks::find(&nets, name)?;
            let req = spec
                .endpoint_requests
                .get(name)
                .cloned()
                .unwrap_or_default();
            let req = resolve_links(req, net, records.clone())?;
            let ep = networks::endpoint(net, &req, &taken)?;
            taken.push(ep.clone());
            out.push(ep);
            requests.insert(net.name.clone(), req);
        }
        if !out.is_empty() && out.iter().all(|e| e.external) {
            let remapped = spec
                .ports
                .iter()
                .find(|b| b.host_port != 0 && b.host_port != b.container_port);
            if let Some(b) = remapped {
                return Err(NetworkError::Invalid(crate::ports::remapped(b)).into());
            }
        }
        spec.networks = out.iter().map(|e| e.network.clone()).collect();
        spec.endpoints = out;
        spec.endpoint_requests = requests;
        Ok(())
    }

    /// The backend's interfaces for `rec`'s endpoints.
    pub(super) fn nics_of(&self, rec: &ContainerRecord) -> Vec<hypervisor::Nic> {
        let nets = self.networks();
        rec.spec
            .endpoints
            .iter()
            .map(|e| nic_of(&nets, rec, e))
            .collect()
    }

    fn forget_network(&self, net: &Network) {
        if let Err(e) = self.inner.network_store.remove(&net.id) {
            tracing::warn!(network = %net.name, "removing the network's record failed: {e}");
        }
        self.inner
            .networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|n| n.id != net.id);
    }

    /// Tells `/events` about `net`: created, destroyed, or `container` joining or leaving.
    pub(super) fn network_event(&self, action: &str, net: &Network, container: Option<&str>) {
        let mut attrs = BTreeMap::new();
        if let Some(c) = container {
            attrs.insert("container".to_string(), c.to_string());
        }
        attrs.insert("name".to_string(), net.name.clone());
        attrs.insert("type".to_string(), "bridge".to_string());
        self.inner.events.publish("network", action, &net.id, attrs);
    }
}

/// The backend's interface for `rec`'s endpoint `e`: on a container network it carries the
/// ports the container publishes, which that network's firewall lets in.
pub(super) fn nic_of(nets: &[Network], rec: &ContainerRecord, e: &Endpoint) -> hypervisor::Nic {
    let open_ports = if e.external {
        rec.spec
            .ports
            .iter()
            .map(|p| hypervisor::OpenPort {
                port: p.container_port,
                udp: p.proto == crate::ports::Proto::Udp,
            })
            .collect()
    } else {
        Vec::new()
    };
    hypervisor::Nic {
        network: nets
            .iter()
            .find(|n| n.name == e.network)
            .map_or_else(|| e.network.clone(), Network::backend_name),
        mac: e.mac.clone(),
        open_ports,
    }
}

/// Refused for the predefined network, a container network (the VCH's configuration holds
/// those), and while a container is on it.
fn check_removable<'a>(
    net: &Network,
    mut records: impl Iterator<Item = &'a ContainerRecord>,
) -> Result<(), NetworkError> {
    if net.builtin {
        return Err(NetworkError::Forbidden(format!(
            "{} is a pre-defined network and cannot be removed",
            net.name
        )));
    }
    if net.external.is_some() {
        return Err(NetworkError::Forbidden(format!(
            "{} is a container network of the VCH and cannot be removed: vic-machine configures it",
            net.name
        )));
    }
    if records.any(|r| r.spec.endpoints.iter().any(|e| e.network == net.name)) {
        return Err(NetworkError::Forbidden(format!(
            "error while removing network: network {} id {} has active endpoints",
            net.name, net.id
        )));
    }
    Ok(())
}

/// `req` for network `net` with each link's container (a name or ID as the user gave it)
/// as a container ID on the default bridge, where a link names a container that exists.
/// On a user network a link keeps the name, as Docker keeps it: the container may come
/// later, and the name finds whichever container has it when it is asked for.
pub(super) fn resolve_links<'a>(
    mut req: EndpointRequest,
    net: &Network,
    records: impl Iterator<Item = &'a ContainerRecord> + Clone,
) -> Result<EndpointRequest, Error> {
    for Link { container, .. } in &mut req.links {
        let key = container.trim_start_matches('/');
        if !net.builtin {
            *container = key.to_string();
            continue;
        }
        let found = records
            .clone()
            .find(|r| {
                r.id == key || r.spec.name == key || (key.len() >= 12 && r.id.starts_with(key))
            })
            .ok_or_else(|| {
                NetworkError::Invalid(format!(
                    "could not get container for {key}: No such container: {key}"
                ))
            })?;
        *container = found.id.clone();
    }
    Ok(req)
}
