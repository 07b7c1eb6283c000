//! Volumes through the real docker CLI: each a disk of its own on a volume store, mounted by
//! the guest, outliving its containers and its VCH; anonymous volumes from `-v /path` and
//! `rm -v`; `--volumes-from`; one read-write user at a time; `--mount`; prune.

mod common;
mod machine;

use common::crash::inspect_with;
use common::*;

fn fails_with(client: &Client, args: &[&str], want: &str) {
    let o = client.run(args);
    assert!(
        !o.status.success(),
        "docker {args:?} succeeded: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains(want), "docker {args:?}: {}", stderr(&o));
}

fn volume_names(client: &Client) -> Vec<String> {
    let out = client.ok(&["volume", "ls", "-q"]);
    out.lines().map(str::to_string).collect()
}

#[test]
#[ignore = "needs QEMU, the test registry and the docker CLI: make test runs it"]
fn volumes_are_disks_that_outlive_their_containers_and_their_vch() {
    let stores = std::env::temp_dir().join(format!("vic-volume-stores-{}", std::process::id()));
    let default = format!("{}:default", stores.join("default").display());
    let fast = format!("{}:fast", stores.join("fast").display());
    let vch = OwnVch::create(
        "vols",
        &["--volume-store", &default, "--volume-store", &fast],
    );
    let (client, image) = (&vch.client, vch.image.as_str());
    let since = unix_now().to_string();

    // A named volume: its capacity, store and driver as asked; empty at first (no
    // lost+found), written by one container and read by the next, read-only when asked.
    client.ok(&[
        "volume",
        "create",
        "--opt",
        "Capacity=64M",
        "--label",
        "app=web",
        "data",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&client.ok(&["volume", "inspect", "data"])).unwrap();
    assert_eq!(v[0]["Driver"], "local");
    assert_eq!(v[0]["Status"]["VolumeStore"], "default");
    assert_eq!(v[0]["Status"]["Capacity"], "64 MiB");
    assert_eq!(v[0]["Labels"]["app"], "web");
    let disk = stores.join("default/volumes/data/disk.img");
    assert_eq!(v[0]["Mountpoint"], disk.display().to_string());
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 64 << 20);
    let script = "ls -A /data; echo kept > /data/f; df -k /data | tail -1";
    let out = client.ok(&["run", "--rm", "-v", "data:/data", image, "sh", "-c", script]);
    let size_kib: u64 = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!((40_000..66_000).contains(&size_kib), "a 64 MiB disk: {out}");
    assert!(!out.contains("lost+found"), "{out}");
    let ro = client.run(&[
        "run",
        "--rm",
        "-v",
        "data:/data:ro",
        image,
        "sh",
        "-c",
        "cat /data/f; touch /data/g",
    ]);
    assert_eq!(stdout(&ro).trim(), "kept");
    assert!(
        stderr(&ro).contains("Read-only file system"),
        "{}",
        stderr(&ro)
    );

    // A new volume takes what the image holds at its mount point, once.
    let seeded = client.ok(&[
        "run",
        "--rm",
        "-v",
        "etc:/etc",
        image,
        "sh",
        "-c",
        "echo mine > /etc/added; ls /etc",
    ]);
    assert!(seeded.contains("passwd"), "{seeded}");
    let again = client.ok(&["run", "--rm", "-v", "etc:/mnt", image, "ls", "/mnt"]);
    assert!(
        again.contains("passwd") && again.contains("added"),
        "{again}"
    );

    // `-v /path`: an anonymous volume, shown in inspect and found by `ps --filter volume`.
    let keep = client.ok(&[
        "run",
        "-d",
        "--name",
        "keep",
        "-v",
        "/anon",
        image,
        "sh",
        "-c",
        "echo x > /anon/x; sleep 600",
    ]);
    let keep = keep.trim();
    let mounts = inspect_with(client, keep)["Mounts"].clone();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/anon");
    assert_eq!(mounts[0]["RW"], true);
    let anon = mounts[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64);
    assert_eq!(
        client
            .ok(&["ps", "-q", "--no-trunc", "--filter", "volume=/anon"])
            .trim(),
        keep
    );
    // One read-write user at a time: a volume is a disk.
    fails_with(
        client,
        &["run", "--rm", "--volumes-from", "keep", image, "true"],
        "is in use by running container keep",
    );
    fails_with(
        client,
        &["volume", "rm", &anon],
        &format!("remove {anon}: volume is in use - [{keep}]"),
    );
    client.ok(&["stop", "-t", "0", "keep"]);
    let from = client.ok(&[
        "run",
        "--rm",
        "--volumes-from",
        "keep:ro",
        image,
        "cat",
        "/anon/x",
    ]);
    assert_eq!(from.trim(), "x");
    client.ok(&["rm", "-v", "keep"]);
    assert!(
        !volume_names(client).contains(&anon),
        "rm -v removed {anon}"
    );
    // --rm takes its anonymous volumes too, and leaves named ones.
    client.ok(&[
        "run",
        "--rm",
        "-v",
        "/scratch",
        "-v",
        "data:/data",
        image,
        "true",
    ]);
    let names = volume_names(client);
    assert_eq!(
        names.iter().filter(|n| n.len() == 64).count(),
        0,
        "{names:?}"
    );
    assert!(names.contains(&"data".to_string()));

    // --mount type=volume with options, on the second store; --mount type=tmpfs.
    let out = client.ok(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,src=quick,dst=/q,volume-opt=Capacity=32M,volume-opt=VolumeStore=fast",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1m",
        image,
        "sh",
        "-c",
        "df -k /q | tail -1; grep ' /t ' /proc/mounts",
    ]);
    assert!(
        out.contains("tmpfs /t tmpfs") && out.contains("size=1024k"),
        "{out}"
    );
    assert!(stores.join("fast/volumes/quick/disk.img").is_file());

    // Refused in words: no such store, an unknown option, a host path (this VCH has no
    // bind paths).
    fails_with(
        client,
        &["volume", "create", "--opt", "VolumeStore=nope", "x1"],
        "No volume store named (nope) exists",
    );
    fails_with(
        client,
        &["volume", "create", "--opt", "Size=1G", "x2"],
        "invalid volume option Size",
    );
    fails_with(
        client,
        &["run", "--rm", "-v", "/etc:/host-etc", image, "true"],
        "bind mounts of host paths are not enabled on this VCH",
    );
    fails_with(client, &["volume", "inspect", "nothing"], "no such volume");

    // prune: anonymous unused volumes by default, every unused one with --all.
    client.ok(&["create", "-v", "/left", image, "true"]);
    let left = client.ok(&["ps", "-aq", "--no-trunc"]);
    client.ok(&["rm", left.trim()]);
    let dangling = client.ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(
        dangling.lines().filter(|n| n.len() == 64).count(),
        1,
        "{dangling}"
    );
    client.ok(&["volume", "prune", "-f"]);
    let names = volume_names(client);
    assert!(
        names.iter().all(|n| n.len() != 64) && names.contains(&"quick".to_string()),
        "{names:?}"
    );
    client.ok(&["volume", "rm", "quick"]);
    assert!(!stores.join("fast/volumes/quick").exists());

    // Volume events, found by `--filter volume=`.
    let until = (unix_now() + 1).to_string();
    let events = client.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "volume=quick",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["volume create quick", "volume destroy quick"],
        "{events}"
    );

    // The VCH goes; its volumes stay on their store, and a new VCH finds them with their data.
    vch.delete();
    let vch = OwnVch::create("vols2", &["--volume-store", &default]);
    let (client, image) = (&vch.client, vch.image.as_str());
    assert_eq!(volume_names(client), ["data", "etc"]);
    let out = client.ok(&["run", "--rm", "-v", "data:/data", image, "cat", "/data/f"]);
    assert_eq!(out.trim(), "kept");
    client.ok(&["volume", "prune", "-af"]);
    assert!(volume_names(client).is_empty());
    vch.delete();
    let left: Vec<_> = std::fs::read_dir(stores.join("default/volumes"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing left on the store: {left:?}");
    let _ = std::fs::remove_dir_all(&stores);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
