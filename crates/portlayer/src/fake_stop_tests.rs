//! Stops the guest asks for, over the fake backend of `fake_tests.rs`.

use std::time::Duration;

use crate::fake_tests::{setup, spec};
use crate::*;

#[tokio::test]
async fn a_shutdown_asked_of_the_vm_stops_the_container_as_the_users_stop() {
    let (_d, c, _) = setup().await;
    let mut s = spec("down", &["shut-down"]);
    s.stop_signal = Some("SIGUSR1".into());
    s.restart = crate::container::RestartPolicy {
        kind: crate::container::RestartKind::Always,
        max_retries: 0,
    };
    c.create(s).await.unwrap();
    c.start("down").await.unwrap();
    let code = tokio::time::timeout(
        Duration::from_secs(10),
        c.wait("down", WaitCondition::NotRunning),
    )
    .await
    .expect("the container stopped")
    .unwrap();
    assert_eq!(code, 128 + 10, "its STOPSIGNAL ended it");
    let rec = c.get("down").unwrap();
    assert!(rec.state.manually_stopped, "a stop of the user's");
    // `always` leaves a container the user stopped alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rec = c.get("down").unwrap();
    assert_eq!(rec.state.status, Status::Exited);
    assert_eq!(rec.state.restart_count, 0);
}

#[tokio::test]
async fn a_container_its_policy_restarts_is_removed_only_by_force() {
    let (_d, c, _) = setup().await;
    let mut s = spec("again", &["exit", "1"]);
    s.restart = crate::container::RestartPolicy {
        kind: crate::container::RestartKind::Always,
        max_retries: 0,
    };
    c.create(s).await.unwrap();
    c.start("again").await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        c.wait("again", WaitCondition::NotRunning),
    )
    .await
    .expect("the container ended")
    .unwrap();
    // Whoever waited for the exit finds it restarting (or already running again), and
    // removing it without force is refused in dockerd's words.
    let rec = c.get("again").unwrap();
    assert!(rec.state.restarting || rec.state.status == Status::Running);
    let err = c
        .remove("again", false, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Stop the container before attempting removal or force remove"),
        "{err}"
    );
    c.remove("again", true, false).await.unwrap();
    assert!(c.get("again").is_err());
    // The restart it was due does not bring it back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(c.get("again").is_err());
}
