//! `vic-machine ls`: the VCHs under a state root, with their state and versions.

use std::fs;
use std::path::PathBuf;

use crate::appliance;
use crate::layout::{default_state_root, Layout};

pub fn list(state_root: Option<PathBuf>) -> anyhow::Result<()> {
    let root = state_root.unwrap_or_else(default_state_root);
    let installer = crate::parts::installer_version();
    println!(
        "{:<32} {:<28} {:<10} {:<10} {:<18} UPGRADE STATUS",
        "NAME", "DOCKER_HOST", "TLS", "STATE", "VERSION"
    );
    let Ok(entries) = fs::read_dir(root.join("vch")) else {
        return Ok(());
    };
    let mut names: Vec<_> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    for name in names {
        let layout = Layout::new(Some(root.clone()), &name)?;
        let Ok(cfg) = layout.load() else {
            continue;
        };
        let state = if appliance::alive(&layout) {
            "running"
        } else {
            "stopped"
        };
        println!(
            "{:<32} {:<28} {:<10} {:<10} {:<18} {}",
            cfg.name,
            cfg.docker_host,
            cfg.tls.mode.label(),
            state,
            cfg.version,
            if crate::progress::marker(&layout).is_some() {
                "Upgrade/configure in progress".to_string()
            } else {
                crate::parts::upgrade_status_short(&installer, &cfg.version)
            }
        );
    }
    Ok(())
}
