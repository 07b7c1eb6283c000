//! A VCH made for one benchmark run, in a state directory of its own, deleted when dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::run_ok;

pub struct Vch {
    bin_dir: PathBuf,
    state: tempfile::TempDir,
    pub name: String,
    /// `tcp://127.0.0.1:PORT` (plain HTTP).
    pub host: String,
}

impl Vch {
    /// `vic-machine create --no-tls` from `bin_dir`, trusting `registry`.
    pub fn create(bin_dir: &Path, prefix: &str, registry: &str) -> anyhow::Result<Vch> {
        Self::create_with_env(bin_dir, prefix, registry, &[])
    }

    /// [`Vch::create`], with `env` set for vic-machine and so for the appliance it starts.
    pub fn create_with_env(
        bin_dir: &Path,
        prefix: &str,
        registry: &str,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Vch> {
        Self::create_with(bin_dir, prefix, registry, &[], env)
    }

    /// [`Vch::create_with_env`] with `extra` vic-machine create flags.
    pub fn create_with(
        bin_dir: &Path,
        prefix: &str,
        registry: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Vch> {
        let bin_dir = std::fs::canonicalize(bin_dir)
            .with_context(|| format!("no bin dir {}", bin_dir.display()))?;
        let mut vch = Vch {
            bin_dir,
            state: tempfile::Builder::new()
                .prefix(&format!("vic-{prefix}-"))
                .tempdir()?,
            name: format!("{prefix}-{}", std::process::id()),
            host: String::new(),
        };
        let name = vch.name.clone();
        let mut args = vec![
            "create",
            "--target",
            "local",
            "--name",
            &name,
            "--no-tls",
            "--insecure-registry",
            registry,
        ];
        args.extend_from_slice(extra);
        // On failure the drop deletes whatever create left.
        let out = run_ok(
            vch.machine(&args).envs(env.iter().copied()),
            "vic-machine create",
        )?;
        vch.host = out
            .lines()
            .find_map(|l| l.strip_prefix("DOCKER_HOST="))
            .context("vic-machine create printed no DOCKER_HOST")?
            .trim()
            .to_string();
        Ok(vch)
    }

    fn machine(&self, sub: &[&str]) -> Command {
        let mut c = Command::new(self.bin_dir.join("vic-machine"));
        // vic-machine create writes NAME/NAME.env into its working directory: keep that in
        // the temporary state directory too.
        c.env("VIC_STATE_ROOT", self.state.path())
            .current_dir(self.state.path())
            .args(sub);
        c
    }

    /// The VCH's state directory.
    pub fn dir(&self) -> PathBuf {
        self.state.path().join("vch").join(&self.name)
    }
}

impl Drop for Vch {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = self
            .machine(&["delete", "--target", "local", "--name", &name, "--force"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
