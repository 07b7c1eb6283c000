//! Responses recorded from vcsim 0.24.2 (`testdata/`), read as the client reads them: the
//! service content, a VM's properties (values typed under vcsim's own xsi prefix), and a
//! task that failed.

use crate::client::ServiceContent;
use crate::property::ObjectContent;
use crate::task::task_error;
use crate::xml::{parse, Node};
use crate::{Error, MoRef};

/// The `returnval` of a recorded response.
fn returnval(doc: &str) -> Node {
    let env = parse(doc.as_bytes()).unwrap();
    let response = env.child("Body").unwrap().children[0].clone();
    response.child("returnval").unwrap().clone()
}

#[test]
fn the_service_content_names_the_managers_and_the_product() {
    let sc =
        ServiceContent::read(&returnval(include_str!("../testdata/service_content.xml"))).unwrap();
    assert_eq!(sc.root_folder, MoRef::new("Folder", "group-d1"));
    assert_eq!(
        sc.property_collector,
        MoRef::new("PropertyCollector", "propertyCollector")
    );
    assert_eq!(sc.search_index, MoRef::new("SearchIndex", "SearchIndex"));
    assert_eq!(
        sc.virtual_disk_manager,
        Some(MoRef::new("VirtualDiskManager", "virtualDiskManager"))
    );
    assert!(sc.is_vcenter());
    assert!(sc.is_simulator());
    assert_eq!(sc.api_version, "6.5");
}

#[test]
fn a_vms_properties_read_with_their_types() {
    let rv = returnval(include_str!("../testdata/vm_properties.xml"));
    let objects: Vec<ObjectContent> = rv
        .all("objects")
        .map(|o| ObjectContent::read(o).unwrap())
        .collect();
    assert_eq!(objects.len(), 1);
    let vm = &objects[0];
    assert_eq!(vm.obj, MoRef::new("VirtualMachine", "vm-57"));
    assert_eq!(vm.text("name"), Some("DC0_H0_VM0"));
    let state = vm.prop("runtime.powerState").unwrap();
    assert_eq!(state.text, "poweredOn");
    assert_eq!(state.value_type(), "VirtualMachinePowerState");
    let extra = vm.prop("config.extraConfig").unwrap();
    assert_eq!(extra.value_type(), "ArrayOfOptionValue");
    let opt = &extra.children[0];
    assert_eq!(opt.value_type(), "OptionValue");
    assert_eq!(opt.text_at(&["key"]), Some("govcsim"));
    assert_eq!(opt.child("value").unwrap().value_type(), "string");
    let devices: Vec<&str> = vm
        .prop("config.hardware.device")
        .unwrap()
        .children
        .iter()
        .map(Node::value_type)
        .collect();
    for d in ["VirtualDisk", "ParaVirtualSCSIController", "VirtualCdrom"] {
        assert!(devices.contains(&d), "{d} not in {devices:?}");
    }
}

#[test]
fn a_failed_tasks_fault_is_typed() {
    let rv = returnval(include_str!("../testdata/task_error.xml"));
    let task = ObjectContent::read(rv.child("objects").unwrap()).unwrap();
    let info = task.prop("info").unwrap();
    assert_eq!(info.text_at(&["state"]), Some("error"));
    match task_error(info.child("error").unwrap()) {
        Error::Fault { fault, .. } => assert_eq!(fault, "InvalidPowerState"),
        e => panic!("{e:?}"),
    }
}
