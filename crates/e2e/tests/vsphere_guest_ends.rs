//! An appliance VM whose guest ends before its Docker API answers (vcsim, with real guests):
//! vic-machine says so as soon as the VM is off, rather than waiting out its `--timeout` and
//! then blaming the time. Here the VM's key image is lost from the datastore, so the
//! appliance cannot open its secrets at its next start: a `configure` restarts it, sees it
//! go off, puts the configuration from before back, sees that go off too, and says both.
//! `delete --force` still removes the VCH whole.

mod common;

use common::vsphere::{create_args, inventory, machine_at};
use common::{registry, stderr, stdout};
use vcsim::Vcsim;

const OFF: &str = "powered off before its Docker API answered";

#[test]
#[ignore = "needs vcsim, govc, the test registry and the VCH's media: make test runs it"]
fn an_appliance_whose_guest_ends_fails_the_wait_at_once() {
    let sim = Vcsim::start_with_guests(false);
    let before = inventory(&sim);
    let certs = tempfile::tempdir().unwrap();
    let cert_path = certs.path().join("off1");
    let machine = |command: &str, args: &[&str]| machine_at(&sim, "off1", "/DC0", command, args);
    let args = create_args(&registry(), &cert_path, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = machine("create", &args);
    assert!(o.status.success(), "{}", stderr(&o));
    // The appliance's secrets are sealed with the key on that image: without it, no start.
    sim.govc(&["datastore.rm", "-ds", "LocalDS_0", "off1/appliance-key.img"]);
    let o = machine(
        "configure",
        &["--endpoint-memory", "1024", "--timeout", "3m"],
    );
    assert!(!o.status.success(), "{}", stdout(&o));
    // The new configuration's start, in the log; then the one from before, in the error.
    let out = stdout(&o);
    let first = out
        .lines()
        .find(|l| l.contains("did not come up with the new configuration"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(first.contains(OFF), "{first}");
    let err = stderr(&o);
    assert!(
        err.contains("putting the configuration back also failed") && err.contains(OFF),
        "{err}"
    );
    let logs = sim.guest_logs(200);
    assert!(logs.contains("appliance-key.img"), "why it ended: {logs}");
    let o = machine("delete", &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(inventory(&sim), before, "delete left something");
}
