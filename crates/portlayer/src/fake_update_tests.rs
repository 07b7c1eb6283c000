//! `docker update` over the fake backend of `fake_tests.rs`: what a running VM takes at once,
//! what waits for its next start.

use crate::fake_tests::{setup, spec};
use crate::*;

#[tokio::test]
async fn cpu_shares_reach_the_vm_at_start_and_at_once_while_it_runs() {
    let (_d, c, backend) = setup().await;
    let mut s = spec("weighed", &["sleep"]);
    s.cpu_shares = Some(512);
    let rec = c.create(s).await.unwrap();
    let short = &rec.id[..12];
    c.start("weighed").await.unwrap();
    let calls = backend.calls();
    let at = |call: &str| calls.iter().position(|c| c == call);
    let weighed = at(&format!("set_cpu_shares {short} Some(512)"));
    assert!(
        weighed.is_some() && weighed < at(&format!("power_on {short}")),
        "the weight is set before the VM runs: {calls:?}"
    );

    let resize = Resize {
        cpu_shares: Some(3),
        ..Resize::default()
    };
    let rec = c.update_settings("weighed", resize, None).await.unwrap();
    assert_eq!(rec.spec.cpu_shares, Some(3));
    let call = format!("set_cpu_shares {short} Some(3)");
    assert!(backend.calls().contains(&call), "{:?}", backend.calls());

    // Memory waits for a stop: refused in words, and nothing of the update is kept.
    let resize = Resize {
        memory_mib: Some(128),
        cpu_shares: Some(7),
        ..Resize::default()
    };
    let e = c
        .update_settings("weighed", resize, None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("cannot change"), "{e}");
    let rec = c.get("weighed").unwrap();
    assert_eq!((rec.spec.memory_mib, rec.spec.cpu_shares), (64, Some(3)));
}

#[tokio::test]
async fn a_weight_the_vm_refuses_leaves_the_record_as_it_was() {
    let (_d, c, backend) = setup().await;
    c.create(spec("plain", &["sleep"])).await.unwrap();
    backend.fail_next("set_cpu_shares", "no cgroup");
    let resize = Resize {
        cpu_shares: Some(100),
        ..Resize::default()
    };
    let e = c.update_settings("plain", resize, None).await.unwrap_err();
    assert!(e.to_string().contains("no cgroup"), "{e}");
    assert_eq!(c.get("plain").unwrap().spec.cpu_shares, None);
}

#[tokio::test]
async fn an_update_waits_for_a_start_under_way() {
    let (_d, c, backend) = setup().await;
    let rec = c.create(spec("slow", &["sleep"])).await.unwrap();
    let short = rec.id[..12].to_string();
    let gate = backend.hold_power_on();
    let starting = tokio::spawn({
        let c = c.clone();
        async move { c.start("slow").await.map(|_| ()) }
    });
    let powering = format!("power_on {short}");
    while !backend.calls().contains(&powering) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let resize = Resize {
        cpu_shares: Some(9),
        ..Resize::default()
    };
    let updating = tokio::spawn({
        let c = c.clone();
        async move { c.update_settings("slow", resize, None).await.map(|_| ()) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !updating.is_finished(),
        "the update ran while the VM was starting"
    );
    gate.add_permits(1);
    starting.await.unwrap().unwrap();
    updating.await.unwrap().unwrap();
    let calls = backend.calls();
    let weights: Vec<&String> = calls
        .iter()
        .filter(|c| c.starts_with("set_cpu_shares"))
        .collect();
    assert_eq!(
        weights.last().map(|c| c.as_str()),
        Some(format!("set_cpu_shares {short} Some(9)").as_str()),
        "{calls:?}"
    );
}
