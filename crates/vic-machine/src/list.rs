//! `vic-machine ls`: the VCHs under a state root, with their state and versions.

use std::fs;
use std::path::PathBuf;

use crate::layout::{default_state_root, Layout};
use crate::report::{self, Output, Summary};

pub fn list(state_root: Option<PathBuf>, output: Output) -> anyhow::Result<()> {
    let root = state_root.unwrap_or_else(default_state_root);
    let installer = crate::parts::installer_version();
    let mut names: Vec<_> = fs::read_dir(root.join("vch"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut vchs: Vec<Summary> = Vec::new();
    for name in names {
        let layout = Layout::new(Some(root.clone()), &name)?;
        if let Ok(cfg) = layout.load() {
            vchs.push(report::summary(&layout, &cfg, &installer));
        }
    }
    if output == Output::Json {
        return report::print(&vchs);
    }
    println!(
        "{:<32} {:<28} {:<10} {:<10} {:<18} UPGRADE STATUS",
        "NAME", "DOCKER_HOST", "TLS", "STATE", "VERSION"
    );
    for v in vchs {
        println!(
            "{:<32} {:<28} {:<10} {:<10} {:<18} {}",
            v.name, v.docker_host, v.tls, v.state, v.version, v.upgrade_status
        );
    }
    Ok(())
}
