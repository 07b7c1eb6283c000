//! `docker commit` through the real docker CLI: a running and a stopped container's changes
//! (added, changed and removed files) become an image at once usable, with `--change`,
//! `--message` and `--author`; the image pushes to a registry and runs on dockerd the same.

mod common;

use std::path::Path;
use std::time::Duration;

use bench::dockerd::{Dockerd, DEFAULT_DOCKERD};
use common::*;

fn docker_bin() -> String {
    std::env::var("VIC_DOCKER").expect("VIC_DOCKER is not set: run these tests with `make test`")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
#[ignore = "needs QEMU, dockerd, the test registry and the docker CLI: make test runs it"]
fn commit_makes_an_image_of_a_containers_changes() {
    let vch = OwnVch::create("commit", &[]);
    let (client, image) = (&vch.client, vch.image.as_str());
    let t0 = now().to_string();
    let script = "echo made > /made && rm /bin/true && mkdir -p /srv/site && \
                  echo page > /srv/site/index && echo more >> /etc/group && sleep 600";
    client.ok(&["run", "-d", "--name", "c", image, "sh", "-c", script]);
    eventually("the changes", Duration::from_secs(30), || {
        client
            .run(&["exec", "c", "ls", "/srv/site/index"])
            .status
            .success()
            .then_some(())
    });
    let tag = format!("{}/committed-{}:1", registry(), std::process::id());
    let id = client.ok(&[
        "commit",
        "-m",
        "a message",
        "-a",
        "an author",
        "-c",
        "CMD [\"cat\", \"/made\"]",
        "-c",
        "ENV X=1",
        "c",
        &tag,
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(client.ok(&["run", "--rm", &tag]), "made\n");
    let seen = client.ok(&[
        "run",
        "--rm",
        &tag,
        "sh",
        "-c",
        "test -e /bin/true || echo removed; echo $X; cat /srv/site/index; tail -1 /etc/group",
    ]);
    assert_eq!(seen, "removed\n1\npage\nmore\n");
    let meta = client.ok(&["inspect", "-f", "{{.Author}}|{{.Comment}}", &tag]);
    assert_eq!(meta.trim(), "an author|a message");
    // Where it came from, as dockerd keeps it: the container, and its configuration before
    // the changes (its image as given, not the committed CMD).
    let source = client.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Container}}|{{.ContainerConfig.Image}}|{{index .ContainerConfig.Cmd 0}}|{{.Parent}}",
        &tag,
    ]);
    let c_id = client.ok(&["inspect", "-f", "{{.Id}}", "c"]);
    let image_id = client.ok(&["image", "inspect", "-f", "{{.Id}}", image]);
    assert_eq!(
        source.trim(),
        format!("{}|{image}|sh|{}", c_id.trim(), image_id.trim())
    );
    // An image from a registry has no local parent, as dockerd shows it.
    let pulled = client.ok(&["image", "inspect", "-f", "{{.Parent}}", image]);
    assert_eq!(pulled.trim(), "");
    let history = client.ok(&["history", "-q", &tag]);
    let base = client.ok(&["history", "-q", image]);
    assert_eq!(
        history.lines().count(),
        base.lines().count() + 1,
        "one more layer"
    );
    let until = (now() + 1).to_string();
    let events = client.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &until,
        "--filter",
        "event=commit",
    ]);
    assert!(events.contains("container commit"), "{events}");
    fails(
        client,
        &["commit", "-c", "FROM busybox", "c"],
        "from is not a valid change command",
    );

    // Stopped, the same.
    client.ok(&["stop", "-t", "1", "c"]);
    client.ok(&["commit", "c", "from-stopped"]);
    let seen = client.ok(&["run", "--rm", "from-stopped", "cat", "/made"]);
    assert_eq!(seen, "made\n");

    // Pushed, it is the same image elsewhere.
    client.ok(&["push", &tag]);
    let d = Dockerd::start(Path::new(DEFAULT_DOCKERD), &[&registry()], &docker_bin())
        .expect("starting a private dockerd");
    let on_d = |args: &[&str]| {
        let mut c = d.docker(&docker_bin());
        c.args(args);
        c.output().unwrap()
    };
    assert!(on_d(&["pull", "-q", &tag]).status.success());
    let out = on_d(&[
        "run",
        "--rm",
        &tag,
        "sh",
        "-c",
        "cat /made; test -e /bin/true || echo removed",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "made\nremoved\n",
        "{}",
        stderr(&out)
    );
    drop(d);
    client.ok(&["rm", "-f", "c"]);
    vch.delete();
}

fn fails(client: &Client, args: &[&str], want: &str) {
    let o = client.run(args);
    assert!(!o.status.success(), "docker {args:?} succeeded");
    assert!(stderr(&o).contains(want), "docker {args:?}: {}", stderr(&o));
}
