//! An ESX host's standard networking (its HostNetworkSystem): the virtual switch and port
//! group a VCH gets on a host when it is not given a bridge network.

use crate::xml::Request;
use crate::{Client, Error, MoRef};

impl Client {
    /// The HostNetworkSystem of `host`.
    pub async fn network_system(&self, host: &MoRef) -> Result<MoRef, Error> {
        let p = self
            .properties(host, &["configManager.networkSystem"])
            .await?;
        p.prop("configManager.networkSystem")
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("the host has no network system".into()))
    }

    /// Adds the standard virtual switch `name` (`ports` ports, no uplink: its port groups
    /// join the VMs on this host only).
    pub async fn add_virtual_switch(
        &self,
        ns: &MoRef,
        name: &str,
        ports: u32,
    ) -> Result<(), Error> {
        let mut req = Request::new("AddVirtualSwitch", ns);
        req.text("vswitchName", name)
            .open("spec")
            .text("numPorts", &ports.to_string())
            .close();
        self.call(&req).await.map(|_| ())
    }

    pub async fn remove_virtual_switch(&self, ns: &MoRef, name: &str) -> Result<(), Error> {
        let mut req = Request::new("RemoveVirtualSwitch", ns);
        req.text("vswitchName", name);
        self.call(&req).await.map(|_| ())
    }

    /// Adds port group `name` (no VLAN) on virtual switch `vswitch`.
    pub async fn add_port_group(&self, ns: &MoRef, name: &str, vswitch: &str) -> Result<(), Error> {
        let mut req = Request::new("AddPortGroup", ns);
        req.open("portgrp")
            .text("name", name)
            .text("vlanId", "0")
            .text("vswitchName", vswitch)
            .open("policy")
            .close()
            .close();
        self.call(&req).await.map(|_| ())
    }

    pub async fn remove_port_group(&self, ns: &MoRef, name: &str) -> Result<(), Error> {
        let mut req = Request::new("RemovePortGroup", ns);
        req.text("pgName", name);
        self.call(&req).await.map(|_| ())
    }
}
