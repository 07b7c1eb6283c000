//! `create`'s certificates: [`setup`] makes or reuses what a [`TlsPlan`] calls for, and
//! [`TlsSetup`] says how clients connect (the env file, the docker command line).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::files::{ca_for, client_for, make_dir, Dirs, Writes};
use super::ping::Pinger;
use super::{TlsMode, TlsPlan, CA_CERT, CA_KEY, CLIENT_CA, CLIENT_CERT, CLIENT_KEY};
use super::{SERVER_CERT, SERVER_KEY};
use crate::certs::{Ca, PemPair};
use crate::output::info;

/// The certificates in place: what the appliance is given, how to ping it, what to tell
/// the user.
pub struct TlsSetup {
    pub mode: TlsMode,
    /// The certificate directory, absolute.
    pub dir: PathBuf,
    /// Client side of the readiness ping (None for plain HTTP).
    ping: Option<Pinger>,
    /// Whether `cert.pem`/`key.pem` in `dir` are a client certificate the VCH accepts.
    client_in_dir: bool,
    /// Whether the server certificate came from `--tls-server-cert`.
    own_server_cert: bool,
}

/// A new server certificate from `ca` for `cname`, checked, and written to `dir`.
pub(super) fn generate_server(
    ca: &Ca,
    cname: Option<&str>,
    dir: &Path,
    writes: &mut Writes,
) -> anyhow::Result<PemPair> {
    let pair = ca
        .server(cname)
        .map_err(anyhow::Error::msg)
        .context("generating the server certificate")?;
    ca.verify_server(&pair.cert)
        .map_err(anyhow::Error::msg)
        .context("the generated server certificate does not verify")?;
    info(format!(
        "Generating server certificate/key pair - private key in {}",
        dir.join(SERVER_KEY).display()
    ));
    writes.put(dir.join(SERVER_CERT), pair.cert.clone());
    writes.put(dir.join(SERVER_KEY), pair.key.clone());
    Ok(pair)
}

/// Makes or reuses the certificates the plan calls for, writes them to the certificate
/// directory and the appliance's copies to `state_certs`.
pub fn setup(plan: &TlsPlan, state_certs: &Path) -> anyhow::Result<TlsSetup> {
    make_dir(&plan.dir)?;
    let dir =
        fs::canonicalize(&plan.dir).with_context(|| format!("resolving {}", plan.dir.display()))?;
    let mut setup = TlsSetup {
        mode: plan.mode,
        dir: dir.clone(),
        ping: None,
        client_in_dir: false,
        own_server_cert: plan.server.is_some(),
    };
    if plan.mode == TlsMode::NoTls {
        return Ok(setup);
    }
    let mut writes = Writes::default();
    let dirs = Dirs {
        from: &dir,
        to: &dir,
    };
    let verify = plan.mode == TlsMode::Tlsverify;
    let need_client = verify && plan.client_cas.is_none();
    let ca = if plan.server.is_none() || need_client {
        Some(ca_for(dirs, &mut writes)?)
    } else {
        None
    };
    let client = match &ca {
        Some((ca, reused)) if need_client => Some(client_for(dirs, ca, *reused, &mut writes)?),
        _ => None,
    };
    let server = match (&plan.server, &ca) {
        (Some(pair), _) => pair.clone(),
        (None, Some((ca, _))) => generate_server(ca, plan.cname.as_deref(), &dir, &mut writes)?,
        (None, None) => bail!("no server certificate to serve"),
    };

    writes.put(state_certs.join(SERVER_CERT), server.cert);
    writes.put(state_certs.join(SERVER_KEY), server.key);
    if let Some((ca, _)) = &ca {
        writes.put(state_certs.join(CA_CERT), ca.pem.cert.clone());
        writes.put(state_certs.join(CA_KEY), ca.pem.key.clone());
    }
    if verify {
        let authorities = match (&plan.client_cas, &ca) {
            (Some(bundle), _) => bundle.clone(),
            (None, Some((ca, _))) => ca.pem.cert.clone(),
            (None, None) => bail!("no authority to check client certificates against"),
        };
        writes.put(state_certs.join(CLIENT_CA), authorities);
    }
    writes.apply()?;
    setup.client_in_dir = client.is_some();
    setup.ping = Some(Pinger::new(client.as_ref())?);
    Ok(setup)
}

/// The appliance's TLS files for `mode`, those [`setup`] put in `state_certs` (the VCH's
/// `certs/`); `None` serves plain HTTP. Every start of the appliance uses these.
pub fn appliance_files(mode: TlsMode, state_certs: &Path) -> Option<vch_config::TlsFiles> {
    (mode != TlsMode::NoTls).then(|| vch_config::TlsFiles {
        cert: state_certs.join(SERVER_CERT),
        key: state_certs.join(SERVER_KEY),
        client_cas: if mode == TlsMode::Tlsverify {
            vec![state_certs.join(CLIENT_CA)]
        } else {
            Vec::new()
        },
    })
}

impl TlsSetup {
    /// What an existing VCH's TLS looks like, for reports (`inspect`, `configure`): `dir`
    /// is its certificate directory.
    pub fn described(
        mode: TlsMode,
        dir: PathBuf,
        client_in_dir: bool,
        own_server_cert: bool,
    ) -> TlsSetup {
        TlsSetup {
            mode,
            dir,
            ping: None,
            client_in_dir,
            own_server_cert,
        }
    }

    /// True when the appliance answers `/_ping` (for TLS: over TLS).
    pub fn ping(&self, port: u16) -> bool {
        match &self.ping {
            Some(p) => p.ping(port),
            None => crate::process::ping(port),
        }
    }

    /// The lines of NAME.env, for the docker CLI. With `--no-tlsverify` the user adds
    /// `--tls` (as with VIC, which writes DOCKER_HOST alone); DOCKER_CERT_PATH is written too
    /// when the directory has a ca.pem, because `docker --tls` refuses to start unless it
    /// finds one there (it defaults to ~/.docker/ca.pem).
    pub fn env(&self, docker_host: &str) -> Vec<String> {
        let mut lines = vec![format!("DOCKER_HOST={docker_host}")];
        let cert_path = format!("DOCKER_CERT_PATH={}", self.dir.display());
        match self.mode {
            TlsMode::Tlsverify => {
                lines.push("DOCKER_TLS_VERIFY=1".into());
                lines.push(cert_path);
            }
            TlsMode::NoTlsverify if !self.own_server_cert => lines.push(cert_path),
            _ => {}
        }
        lines
    }

    /// Writes NAME.env for `docker_host` into the certificate directory and prints it, as
    /// create ends.
    pub fn save_env(&self, name: &str, docker_host: &str) -> anyhow::Result<()> {
        let env = self.env(docker_host);
        let env_file = self.dir.join(format!("{name}.env"));
        fs::write(&env_file, env.join("\n") + "\n")
            .with_context(|| format!("writing {}", env_file.display()))?;
        info("Initialization of appliance successful");
        info("Docker environment variables:");
        for line in &env {
            crate::output::raw(line);
        }
        info(format!("Environment saved in {}", env_file.display()));
        Ok(())
    }

    /// How to connect after a TLS change (as `create` prints it): NAME.env's lines, where
    /// it is, and the docker command line.
    pub fn print_connect(&self, name: &str, docker_host: &str, port: u16) {
        info("Docker environment variables:");
        for line in self.env(docker_host) {
            crate::output::raw(line);
        }
        info(format!(
            "Environment saved in {}",
            self.dir.join(format!("{name}.env")).display()
        ));
        info("Connect to docker:");
        for line in self.docker_lines(port) {
            info(line);
        }
    }

    /// How to reach the VCH with the docker CLI, then notes when the user must supply files.
    pub fn docker_lines(&self, port: u16) -> Vec<String> {
        let host = format!("docker -H 127.0.0.1:{port}");
        let file = |f: &str| format!("\"{}\"", self.dir.join(f).display());
        let ca = if self.own_server_cert {
            "CA-OF-YOUR-SERVER-CERT.pem".to_string()
        } else {
            file(CA_CERT)
        };
        match self.mode {
            TlsMode::NoTls => vec![format!("{host} info")],
            // Any client gets in; checking the server still takes its CA.
            TlsMode::NoTlsverify => vec![
                format!("{host} --tlsverify --tlscacert={ca} info"),
                "(or `--tls` instead of --tlsverify to skip checking the server)".into(),
            ],
            TlsMode::Tlsverify => {
                let (cert, key) = if self.client_in_dir {
                    (file(CLIENT_CERT), file(CLIENT_KEY))
                } else {
                    ("YOUR-CLIENT-CERT.pem".into(), "YOUR-CLIENT-KEY.pem".into())
                };
                let mut lines = vec![format!(
                    "{host} --tlsverify --tlscacert={ca} --tlscert={cert} --tlskey={key} info"
                )];
                if !self.client_in_dir {
                    lines.push(format!(
                        "Client certificates must chain to the --tls-ca authorities; put yours in {} as {CLIENT_CERT} and {CLIENT_KEY} to use the environment file",
                        self.dir.display()
                    ));
                }
                if self.own_server_cert {
                    lines.push(format!(
                        "The server certificate is yours: clients verify it with the CA that issued it ({} is the CA of the client certificates)",
                        self.dir.join(CA_CERT).display()
                    ));
                }
                lines
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{plan, TlsOptions};
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn tlsverify_writes_vics_files_and_a_second_create_reuses_the_ca_and_client() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let o = TlsOptions {
            cert_path: Some(root.join("certs")),
            ..TlsOptions::default()
        };
        let p = plan(&o, "x").unwrap();
        let s = setup(&p, &root.join("state")).unwrap();
        for f in [CA_CERT, CLIENT_CERT, SERVER_CERT] {
            assert!(s.dir.join(f).is_file(), "{f}");
        }
        for f in [CA_KEY, CLIENT_KEY, SERVER_KEY] {
            assert_eq!(mode_of(&s.dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode_of(&root.join("state").join(SERVER_KEY)), 0o600);
        assert!(root.join("state").join(CLIENT_CA).is_file());
        let files = appliance_files(s.mode, &root.join("state")).unwrap();
        assert_eq!(files.client_cas.len(), 1);
        for file in [&files.cert, &files.key, &files.client_cas[0]] {
            assert!(file.is_file(), "{file:?}");
        }
        let env = s.env("tcp://127.0.0.1:1");
        assert_eq!(env[1], "DOCKER_TLS_VERIFY=1");
        assert_eq!(env[2], format!("DOCKER_CERT_PATH={}", s.dir.display()));

        let read = |f: &str| fs::read_to_string(s.dir.join(f)).unwrap();
        let (ca, client, server) = (read(CA_CERT), read(CLIENT_CERT), read(SERVER_CERT));
        setup(&p, &root.join("state")).unwrap();
        assert_eq!(read(CA_CERT), ca, "the CA is reused");
        assert_eq!(
            read(CLIENT_CERT),
            client,
            "the client certificate is reused"
        );
        assert_ne!(
            read(SERVER_CERT),
            server,
            "the server certificate is made anew"
        );

        // A client certificate that does not verify is replaced; the CA stays.
        fs::write(s.dir.join(CLIENT_CERT), &server).unwrap();
        setup(&p, &root.join("state")).unwrap();
        assert_eq!(read(CA_CERT), ca);
        assert_ne!(read(CLIENT_CERT), server);
        // A broken CA key replaces the CA and the client certificate.
        fs::write(s.dir.join(CA_KEY), "garbage").unwrap();
        setup(&p, &root.join("state")).unwrap();
        assert_ne!(read(CA_CERT), ca);
    }

    #[test]
    fn no_tlsverify_makes_no_client_certificate_and_env_sets_no_verification() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let o = TlsOptions {
            no_tlsverify: true,
            cert_path: Some(root.join("certs")),
            ..TlsOptions::default()
        };
        let s = setup(&plan(&o, "x").unwrap(), &root.join("state")).unwrap();
        assert!(s.dir.join(CA_CERT).is_file());
        assert!(s.dir.join(SERVER_CERT).is_file());
        assert!(!s.dir.join(CLIENT_CERT).exists());
        assert!(!root.join("state").join(CLIENT_CA).exists());
        let files = appliance_files(s.mode, &root.join("state")).unwrap();
        assert!(files.client_cas.is_empty());
        for file in [&files.cert, &files.key] {
            assert!(file.is_file(), "{file:?}");
        }
        assert_eq!(
            s.env("tcp://127.0.0.1:1"),
            vec![
                "DOCKER_HOST=tcp://127.0.0.1:1".to_string(),
                format!("DOCKER_CERT_PATH={}", s.dir.display())
            ]
        );
        assert_eq!(
            s.docker_lines(1)[0],
            format!(
                "docker -H 127.0.0.1:1 --tlsverify --tlscacert=\"{}\" info",
                s.dir.join(CA_CERT).display()
            )
        );
    }
}
