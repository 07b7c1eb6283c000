//! `configure`'s certificates. Unlike `create`, configure changes only what its TLS flags
//! ask for and keeps the rest:
//!
//! | flag | the VCH then |
//! |---|---|
//! | `--tls-server-cert F --tls-server-key K` | serves that certificate |
//! | `--tls-cname N` | serves a new certificate from its CA, for 127.0.0.1, localhost and N |
//! | `--tls-ca F` (repeatable) | admits clients whose certificate chains to these authorities (tlsverify) |
//! | `--no-tlsverify` | admits any client over TLS |
//! | `--tls-cert-path DIR` | keeps its certificate files and NAME.env in DIR (new or empty; the files are copied) |
//!
//! Any of them turns TLS on for a VCH without it (mutual TLS unless `--no-tlsverify`), with
//! a generated server certificate unless one is given. The CA in the certificate directory
//! is reused when it can be, and so is the client certificate, so clients keep working.
//!
//! [`reconfigure`] reads and checks everything and decides every file first: nothing is
//! written until `configure` applies the [`Writes`] with the appliance stopped (and puts
//! the files back if the appliance does not come up).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::files::{ca_for, client_for, Dirs, Writes};
use super::setup::generate_server;
use super::{plan, TlsMode, TlsOptions, TlsRecord, TlsSetup};
use super::{CA_CERT, CA_KEY, CLIENT_CA, CLIENT_CERT, SERVER_CERT, SERVER_KEY};
use crate::certs;
use crate::output::info;

/// A TLS change, decided and not yet written.
pub struct Reconfigured {
    /// The TLS part of the new record.
    pub record: TlsRecord,
    /// The appliance's copies (`certs/`), the certificate directory's files and NAME.env.
    pub writes: Writes,
    /// How clients connect afterwards.
    pub setup: TlsSetup,
    /// One line per change, for the report.
    pub changes: Vec<String>,
}

/// What the server certificate becomes.
enum Server {
    /// `--tls-server-cert`.
    Own(certs::PemPair),
    /// A new one from the VCH's CA.
    Generate,
    /// The one the VCH serves now.
    Keep,
}

/// Decides the TLS change `opts` asks of a VCH whose TLS is `old` (None: no TLS flag given,
/// the certificates stay as they are). `state_certs` is the VCH's `certs/`; `docker_host`
/// goes into NAME.env.
pub fn reconfigure(
    old: &TlsRecord,
    name: &str,
    docker_host: &str,
    state_certs: &Path,
    opts: &TlsOptions,
) -> anyhow::Result<Option<Reconfigured>> {
    if !opts.any() {
        info("No certificate regeneration requested. No new certificates provided. Certificates left unchanged.");
        return Ok(None);
    }
    if opts.no_tls {
        bail!("configure cannot turn TLS off: --no-tls is a create option");
    }
    let old_dir = absolute(&old.dir(name))?;
    let dir = match &opts.cert_path {
        Some(d) => absolute(d)?,
        None => old_dir.clone(),
    };
    let moved = dir != old_dir;
    if moved && fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!(
            "Specified certificate output location \"{}\" already exists and is not empty. Specify a location that does not yet exist (or is empty) with --tls-cert-path to continue",
            dir.display()
        );
    }
    let plan = plan(
        &TlsOptions {
            cert_path: Some(dir.clone()),
            ..opts.clone()
        },
        name,
    )?;

    let mode = if opts.no_tlsverify {
        TlsMode::NoTlsverify
    } else if plan.client_cas.is_some() || old.mode == TlsMode::NoTls {
        TlsMode::Tlsverify
    } else {
        old.mode
    };
    let user_cas = mode == TlsMode::Tlsverify
        && (plan.client_cas.is_some()
            || (old.mode == TlsMode::Tlsverify && old.tls_user_client_cas));
    let need_client = mode == TlsMode::Tlsverify && !user_cas;
    let mut server = match &plan.server {
        Some(pair) => Server::Own(pair.clone()),
        None if opts.cname.is_some() || old.mode == TlsMode::NoTls => Server::Generate,
        None => Server::Keep,
    };
    let own = match server {
        Server::Own(_) => true,
        Server::Generate => false,
        Server::Keep => old.tls_own_server_cert,
    };

    let mut writes = Writes::default();
    let dirs = Dirs {
        from: &old_dir,
        to: &dir,
    };
    // A generated server certificate, a generated client certificate, and a moved directory
    // of a VCH serving a generated certificate (clients verify it with ca.pem) need the CA.
    let need_ca = need_client || matches!(server, Server::Generate) || (moved && !own);
    let ca = if need_ca {
        Some(ca_for(dirs, &mut writes)?)
    } else {
        None
    };
    if let (Server::Keep, Some((_, false))) = (&server, &ca) {
        if !own {
            info("The served certificate was made by the CA that is being replaced: generating a new server certificate");
            server = Server::Generate;
        }
    }
    let client = match &ca {
        Some((ca, reused)) if need_client => Some(client_for(dirs, ca, *reused, &mut writes)?),
        _ => None,
    };
    let cname = match &server {
        Server::Own(_) => None,
        Server::Generate | Server::Keep => opts.cname.clone().or_else(|| old.tls_cname.clone()),
    };
    let mut changes = Vec::new();
    match &server {
        Server::Own(pair) => {
            writes.put(state_certs.join(SERVER_CERT), pair.cert.clone());
            writes.put(state_certs.join(SERVER_KEY), pair.key.clone());
            changes.push(format!(
                "Server certificate: replaced by {}",
                opts.server_cert
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display()
            ));
        }
        Server::Generate => {
            let Some((ca, _)) = &ca else {
                bail!("no CA to sign the server certificate");
            };
            let pair = generate_server(ca, cname.as_deref(), &dir, &mut writes)?;
            writes.put(state_certs.join(SERVER_CERT), pair.cert);
            writes.put(state_certs.join(SERVER_KEY), pair.key);
            changes.push(format!(
                "Server certificate: generated for 127.0.0.1, localhost{}",
                cname
                    .as_deref()
                    .map(|c| format!(" and {c}"))
                    .unwrap_or_default()
            ));
        }
        Server::Keep if moved && !own => {
            for f in [SERVER_CERT, SERVER_KEY] {
                if let Ok(text) = fs::read_to_string(old_dir.join(f)) {
                    writes.put(dir.join(f), text);
                }
            }
        }
        Server::Keep => {}
    }
    if let Some((ca, _)) = &ca {
        writes.put(state_certs.join(CA_CERT), ca.pem.cert.clone());
        writes.put(state_certs.join(CA_KEY), ca.pem.key.clone());
    }
    let authorities = match (mode, &plan.client_cas, &ca) {
        (TlsMode::Tlsverify, Some(bundle), _) => {
            writes.put(state_certs.join(CLIENT_CA), bundle.clone());
            changes.push("Client certificate authorities: replaced by --tls-ca".into());
            Some(bundle.clone())
        }
        (TlsMode::Tlsverify, None, _) if user_cas => {
            fs::read_to_string(state_certs.join(CLIENT_CA)).ok()
        }
        (TlsMode::Tlsverify, None, Some((ca, _))) => {
            writes.put(state_certs.join(CLIENT_CA), ca.pem.cert.clone());
            Some(ca.pem.cert.clone())
        }
        (TlsMode::Tlsverify, None, None) => {
            bail!("no authority to check client certificates against")
        }
        _ => {
            writes.remove(state_certs.join(CLIENT_CA));
            None
        }
    };
    if mode != old.mode {
        changes.push(format!(
            "Docker API TLS: {} -> {}",
            old.mode.label(),
            mode.label()
        ));
    }
    if moved {
        changes.push(format!(
            "Certificate directory: {} -> {}",
            old_dir.display(),
            dir.display()
        ));
    }

    let client_in_dir = match (&client, &authorities) {
        (Some(_), _) => true,
        (None, Some(bundle)) if user_cas => {
            let cert = match writes.pending(&dir.join(CLIENT_CERT)) {
                Some(pending) => pending.map(str::to_string),
                None => fs::read_to_string(dir.join(CLIENT_CERT)).ok(),
            };
            match cert {
                Some(cert) => match certs::verify_client_with(bundle, &cert) {
                    Ok(()) => true,
                    Err(why) => {
                        info(format!(
                            "The client certificate in {} does not chain to the --tls-ca authorities ({why}): clients need one that does",
                            dir.display()
                        ));
                        false
                    }
                },
                None => false,
            }
        }
        _ => false,
    };
    let setup = TlsSetup::described(mode, dir.clone(), client_in_dir, own);
    let env = setup.env(docker_host);
    writes.put(dir.join(format!("{name}.env")), env.join("\n") + "\n");
    Ok(Some(Reconfigured {
        record: TlsRecord {
            mode,
            cert_path: Some(dir),
            tls_cname: cname,
            tls_user_client_cas: user_cas,
            tls_own_server_cert: own,
        },
        writes,
        setup,
        changes,
    }))
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Ca;
    use crate::tls::{setup, CLIENT_KEY};

    /// A tlsverify VCH as create leaves it: (its record, the state certs directory).
    fn created(root: &Path, opts: TlsOptions) -> (TlsRecord, PathBuf) {
        let state = root.join("state");
        let opts = TlsOptions {
            cert_path: Some(root.join("certs")),
            ..opts
        };
        let p = plan(&opts, "v").unwrap();
        let s = setup(&p, &state).unwrap();
        let record = TlsRecord {
            mode: s.mode,
            cert_path: Some(s.dir.clone()),
            tls_cname: p.cname().map(str::to_string),
            tls_user_client_cas: p.user_client_cas(),
            tls_own_server_cert: p.own_server_cert(),
        };
        (record, state)
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap()
    }

    #[test]
    fn no_tls_flag_changes_nothing() {
        let r = reconfigure(
            &TlsRecord::default(),
            "v",
            "tcp://127.0.0.1:1",
            Path::new("/nonexistent"),
            &TlsOptions::default(),
        )
        .unwrap();
        assert!(r.is_none());
    }

    #[test]
    fn a_cname_regenerates_the_server_certificate_from_the_same_ca() {
        let root = tempfile::tempdir().unwrap();
        let (old, state) = created(root.path(), TlsOptions::default());
        let dir = old.cert_path.clone().unwrap();
        let (ca, client) = (read(&dir.join(CA_CERT)), read(&dir.join(CLIENT_CERT)));
        let opts = TlsOptions {
            cname: Some("vch.example.com".into()),
            ..TlsOptions::default()
        };
        let r = reconfigure(&old, "v", "tcp://127.0.0.1:1", &state, &opts)
            .unwrap()
            .unwrap();
        assert_eq!(r.record.tls_cname.as_deref(), Some("vch.example.com"));
        assert_eq!(r.record.mode, TlsMode::Tlsverify);
        let new_server = r.writes.pending(&state.join(SERVER_CERT)).unwrap().unwrap();
        assert_ne!(new_server, read(&state.join(SERVER_CERT)));
        Ca::load(&ca, &read(&dir.join(CA_KEY)))
            .unwrap()
            .verify_server(new_server)
            .unwrap();
        // Nothing is written until the writes are applied; the client certificate stays.
        assert_eq!(read(&dir.join(CLIENT_CERT)), client);
        assert!(r.writes.pending(&dir.join(CLIENT_CERT)).is_none());
        assert!(r
            .writes
            .pending(&dir.join("v.env"))
            .unwrap()
            .unwrap()
            .contains("DOCKER_TLS_VERIFY=1"));
    }

    #[test]
    fn tls_ca_replaces_the_client_authorities_and_keeps_the_server_certificate() {
        let root = tempfile::tempdir().unwrap();
        let (old, state) = created(root.path(), TlsOptions::default());
        let theirs = Ca::generate().unwrap();
        let ca_file = root.path().join("theirs.pem");
        fs::write(&ca_file, &theirs.pem.cert).unwrap();
        let opts = TlsOptions {
            client_cas: vec![ca_file],
            ..TlsOptions::default()
        };
        let r = reconfigure(&old, "v", "tcp://127.0.0.1:1", &state, &opts)
            .unwrap()
            .unwrap();
        assert!(r.record.tls_user_client_cas);
        assert_eq!(
            r.writes.pending(&state.join(CLIENT_CA)),
            Some(Some(theirs.pem.cert.as_str()))
        );
        assert!(r.writes.pending(&state.join(SERVER_CERT)).is_none());
        // The generated client certificate does not chain to the new authorities.
        assert!(r.setup.docker_lines(1)[0].contains("YOUR-CLIENT-CERT.pem"));
    }

    #[test]
    fn no_tlsverify_drops_the_client_authorities() {
        let root = tempfile::tempdir().unwrap();
        let (old, state) = created(root.path(), TlsOptions::default());
        let opts = TlsOptions {
            no_tlsverify: true,
            ..TlsOptions::default()
        };
        let r = reconfigure(&old, "v", "tcp://127.0.0.1:1", &state, &opts)
            .unwrap()
            .unwrap();
        assert_eq!(r.record.mode, TlsMode::NoTlsverify);
        assert_eq!(r.writes.pending(&state.join(CLIENT_CA)), Some(None));
        assert!(r
            .changes
            .contains(&"Docker API TLS: tlsverify -> tls".to_string()));
    }

    #[test]
    fn a_new_certificate_directory_gets_copies_and_an_old_one_in_use_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let (old, state) = created(root.path(), TlsOptions::default());
        let dir = old.cert_path.clone().unwrap();
        let new_dir = root.path().join("moved");
        let opts = TlsOptions {
            cert_path: Some(new_dir.clone()),
            ..TlsOptions::default()
        };
        let r = reconfigure(&old, "v", "tcp://127.0.0.1:1", &state, &opts)
            .unwrap()
            .unwrap();
        assert_eq!(r.record.cert_path.as_deref(), Some(new_dir.as_path()));
        for f in [CA_CERT, CA_KEY, CLIENT_CERT, CLIENT_KEY, SERVER_CERT] {
            assert_eq!(
                r.writes.pending(&new_dir.join(f)),
                Some(Some(read(&dir.join(f)).as_str())),
                "{f} is copied"
            );
        }
        // A directory with something in it is not taken over.
        let opts = TlsOptions {
            cert_path: Some(root.path().join("state")),
            ..TlsOptions::default()
        };
        let err = reconfigure(&old, "v", "tcp://127.0.0.1:1", &state, &opts)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
    }

    #[test]
    fn tls_flags_turn_tls_on_for_a_plain_vch() {
        let root = tempfile::tempdir().unwrap();
        let old = TlsRecord {
            cert_path: Some(root.path().join("certs")),
            ..TlsRecord::default()
        };
        let state = root.path().join("state");
        let opts = TlsOptions {
            cname: Some("10.1.2.3".into()),
            ..TlsOptions::default()
        };
        let r = reconfigure(&old, "v", "tcp://127.0.0.1:1", &state, &opts)
            .unwrap()
            .unwrap();
        assert_eq!(r.record.mode, TlsMode::Tlsverify);
        for f in [SERVER_CERT, SERVER_KEY, CLIENT_CA, CA_CERT] {
            assert!(
                matches!(r.writes.pending(&state.join(f)), Some(Some(_))),
                "{f}"
            );
        }
        assert!(!root.path().join("certs").exists(), "nothing written yet");
    }
}
