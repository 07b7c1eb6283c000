//! A bad-input campaign against the layer applier: random sequences of tar entries (files,
//! directories, symlinks to the host and above the root, hard links, whiteouts, opaque
//! markers, FIFOs, paths with `..`) applied in up to three layers onto a root that has a
//! canary directory beside it. Whatever the layers do, and whether they are refused or not,
//! the canary and everything else outside the root stay byte-identical.
//!
//! `PROPTEST_CASES` sets the number of cases (`make fuzz` runs many more than `make test`).

use super::tests::{canary, layer, rootdir, snapshot, E};
use super::*;
use proptest::prelude::*;

/// A raw entry: kind, path, and a target for links.
#[derive(Debug, Clone)]
enum Raw {
    File(String, Vec<u8>),
    Dir(String),
    Symlink(String, String),
    Hardlink(String, String),
    Whiteout(String),
    Opaque(String),
    Fifo(String),
}

fn component() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "c", "..", ".", "canary", "sub", "precious"])
}

fn path() -> impl Strategy<Value = String> {
    (any::<bool>(), prop::collection::vec(component(), 1..4)).prop_map(|(abs, cs)| {
        let p = cs.join("/");
        if abs {
            format!("/{p}")
        } else {
            p
        }
    })
}

/// Stands for the canary's host path, which a strategy cannot know in advance.
const HOST: &str = "@HOST";

/// Link targets: the canary by its host path and by climbing, the host's root, and paths.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(HOST.to_string()),
        Just(format!("{HOST}/sub")),
        Just("../canary".to_string()),
        Just("../../canary/sub".to_string()),
        Just("../../..".to_string()),
        Just("/".to_string()),
        path(),
    ]
}

fn entry() -> impl Strategy<Value = Raw> {
    prop_oneof![
        (path(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(p, d)| Raw::File(p, d)),
        path().prop_map(Raw::Dir),
        (path(), target()).prop_map(|(p, t)| Raw::Symlink(p, t)),
        (path(), target()).prop_map(|(p, t)| Raw::Hardlink(p, t)),
        path().prop_map(Raw::Whiteout),
        path().prop_map(Raw::Opaque),
        path().prop_map(Raw::Fifo),
    ]
}

/// The tar-level names of a raw entry (whiteouts and markers are files of special names).
fn named(r: &Raw) -> (String, Option<String>) {
    let with_name = |p: &str, n: &str| match p.rsplit_once('/') {
        Some((dir, last)) => format!("{dir}/{n}{last}"),
        None => format!("{n}{p}"),
    };
    match r {
        Raw::Whiteout(p) => (with_name(p, ".wh."), None),
        Raw::Opaque(p) => (format!("{p}/.wh..wh..opq"), None),
        Raw::File(p, _) | Raw::Dir(p) | Raw::Fifo(p) => (p.clone(), None),
        Raw::Symlink(p, t) | Raw::Hardlink(p, t) => (p.clone(), Some(t.clone())),
    }
}

fn run_case(t: &Path, root: &Path, layers: &[Vec<Raw>]) {
    for (i, entries) in layers.iter().enumerate() {
        let names: Vec<(String, Option<String>)> = entries.iter().map(named).collect();
        let es: Vec<E<'_>> = entries
            .iter()
            .zip(&names)
            .map(|(r, (n, tgt))| match r {
                Raw::File(_, d) => E::File(n, d),
                Raw::Whiteout(_) | Raw::Opaque(_) => E::File(n, b""),
                Raw::Dir(_) => E::Dir(n),
                Raw::Fifo(_) => E::Fifo(n),
                Raw::Symlink(..) => E::Symlink(n, tgt.as_deref().unwrap_or("")),
                Raw::Hardlink(..) => E::Hardlink(n, tgt.as_deref().unwrap_or("")),
            })
            .collect();
        let (blob, diff) = layer(t, &format!("layer{i}"), &es);
        // Refusals are fine; reaching outside the root is not.
        let _ = apply_layer(&blob, root, &diff);
    }
}

proptest! {
    #[test]
    fn no_layer_sequence_touches_anything_outside_the_root(
        seed in prop::collection::vec(
            prop::collection::vec(entry(), 1..12), 1..4)
    ) {
        let (t, root) = rootdir();
        let (host, before) = canary(t.path());
        let host_str = host.to_str().unwrap().to_string();
        let layers: Vec<Vec<Raw>> = seed
            .into_iter()
            .map(|l| {
                l.into_iter()
                    .map(|r| match r {
                        Raw::Symlink(p, t) => Raw::Symlink(p, t.replace(HOST, &host_str)),
                        Raw::Hardlink(p, t) => Raw::Hardlink(p, t.replace(HOST, &host_str)),
                        other => other,
                    })
                    .collect()
            })
            .collect();
        let top_before = top_level(t.path());
        run_case(t.path(), &root, &layers);
        prop_assert_eq!(snapshot(&host), before);
        let mut top_after = top_level(t.path());
        top_after.retain(|n| !n.starts_with("layer"));
        prop_assert_eq!(top_after, top_before);
    }
}

/// The names directly in the test's directory.
fn top_level(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
