//! The appliance's configuration: the one place that turns a VCH's record into the
//! [`ApplianceConfig`] document its appliance reads, and into the command line that runs it.
//!
//! An appliance from before the document (one `upgrade --rollback` or a failed upgrade goes
//! back to) reads its settings as flags instead; [`command_line`] asks the binary which it
//! takes (`--help` names `--config` or not) and renders the same document either way, so
//! what the appliance gets never depends on which form carries it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use vch_config::{ApplianceConfig, BackendConfig, SCHEMA};

use crate::layout::{Layout, VchConfig};
use crate::tls;

/// How long an appliance binary may take to print its help.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The document for the VCH at `layout` as `config` records it.
pub fn appliance_config(layout: &Layout, config: &VchConfig) -> ApplianceConfig {
    let app_dir = layout.appliance_dir();
    ApplianceConfig {
        schema: SCHEMA,
        name: config.name.clone(),
        state_dir: layout.dir.clone(),
        listen: (std::net::Ipv4Addr::LOCALHOST, config.port).into(),
        image_store: config.image_store.clone(),
        backend: BackendConfig::Local {
            kernel: app_dir.join("vmlinux"),
            initrd: app_dir.join("initramfs.cpio"),
        },
        tls: tls::appliance_files(config.tls.mode, &layout.certs_dir()),
        settings: config.settings.clone(),
        networks: config.container_networks.clone(),
    }
}

/// The arguments that run the appliance binary `exe` on `config`: `--config FILE` after
/// writing the document to the VCH's appliance.json, or the flags of an older appliance.
pub fn command_line(
    exe: &Path,
    layout: &Layout,
    config: &VchConfig,
) -> anyhow::Result<Vec<OsString>> {
    let doc = appliance_config(layout, config);
    if !takes_config(exe, PROBE_TIMEOUT)? {
        // Flags carry no container networks: such an appliance would run without them.
        if let Some(n) = doc.networks.first() {
            anyhow::bail!(
                "the appliance {} predates container networks and would run without {} ({}): upgrade the VCH",
                exe.display(),
                n.name,
                n.source
            );
        }
        return Ok(legacy_args(&doc));
    }
    let path = layout.appliance_config();
    doc.save(&path)?;
    Ok(vec!["--config".into(), path.into()])
}

/// Whether the appliance binary `exe` reads the document (`--config`); it has `limit` to say.
fn takes_config(exe: &Path, limit: Duration) -> anyhow::Result<bool> {
    let mut child = Command::new(exe)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", exe.display()))?;
    let mut out = child.stdout.take().expect("piped");
    // Read on a thread so a binary that never ends cannot hold this one: the wait is bounded.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::Read::take(&mut out, 1 << 20), &mut text);
        text
    });
    let deadline = Instant::now() + limit;
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{} did not print its help within {} s",
                exe.display(),
                limit.as_secs_f32()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = reader.join().unwrap_or_default();
    Ok(String::from_utf8_lossy(&text).contains("--config"))
}

/// The flags an appliance from before the document takes for `doc`. Only flags with a
/// value are given: an appliance from before some of them still starts when they are unset.
fn legacy_args(doc: &ApplianceConfig) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, value: OsString| {
        a.push(name.into());
        a.push(value);
    };
    let s = &doc.settings;
    flag("--name", doc.name.clone().into());
    flag("--state-dir", doc.state_dir.clone().into());
    flag("--listen", doc.listen.to_string().into());
    flag("--image-store", doc.image_store.clone().into());
    // An appliance from before the document knows the local backend alone (and vic-machine
    // writes documents for local VCHs only).
    if let BackendConfig::Local { kernel, initrd } = &doc.backend {
        flag("--kernel", kernel.clone().into());
        flag("--initrd", initrd.clone().into());
    }
    let each = |v: &[String]| v.iter().map(OsString::from).collect::<Vec<_>>();
    let path = |p: &PathBuf| OsString::from(p);
    for r in each(&s.insecure_registries) {
        flag("--insecure-registry", r);
    }
    for r in each(&s.whitelist_registries) {
        flag("--whitelist-registry", r);
    }
    if let Some(ca) = &s.registry_ca {
        flag("--registry-ca", path(ca));
    }
    let numbers = [
        ("--max-containers", s.containers.map(u64::from)),
        ("--memory-limit", s.memory_mib),
        ("--cpu-limit", s.cpus.map(u64::from)),
        ("--storage-quota", s.storage_quota_gib),
    ];
    for (name, value) in numbers {
        if let Some(v) = value {
            flag(name, v.to_string().into());
        }
    }
    for d in each(&s.dns_servers) {
        flag("--dns-server", d);
    }
    for v in &s.volume_stores {
        flag(
            "--volume-store",
            format!("{}:{}", v.label, v.dir.display()).into(),
        );
    }
    if let Some(c) = &s.container_name_convention {
        flag("--container-name-convention", c.into());
    }
    if let Some(t) = &doc.tls {
        flag("--tls-cert", path(&t.cert));
        flag("--tls-key", path(&t.key));
        for ca in &t.client_cas {
            flag("--tls-ca", path(ca));
        }
    }
    a
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
