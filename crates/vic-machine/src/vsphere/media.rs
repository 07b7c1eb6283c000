//! A VCH's boot media on vSphere, in VIC's form: ISO images in the VCH's directory,
//! `appliance-BUILD.iso` (the appliance's programs, on the appliance VM's CD-ROM) and
//! `bootstrap-BUILD.iso` (the container VMs' kernel and initramfs, on each container VM's
//! CD-ROM). BUILD is the installation's build (its version's suffix), so an upgrade puts its
//! media beside the ones it replaces and a rollback finds them again.
//!
//! They hold this installation's files ([`crate::parts`]) under the names a VCH's appliance
//! directory gives them, as ISO 9660 with Rock Ridge names (`hadris-iso`). Neither carries a
//! boot loader yet: on vcsim the stand-in VMs read their programs from them; a real ESX VM
//! needs an El Torito image and a kernel built for a PC's firmware (see the README).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hadris_iso::read::PathSeparator;
use hadris_iso::sync::write::IsoImageWriter;
use hadris_iso::write::estimator::estimate;
use hadris_iso::write::options::{CreationFeatures, FormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles};
use vim25::datastore::DatastorePath;
use vim25::Client;

use crate::parts::Parts;

/// How long one medium's upload may take.
const UPLOAD: Duration = Duration::from_secs(600);

/// A VCH's media on its datastore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub appliance: DatastorePath,
    pub bootstrap: DatastorePath,
}

impl Media {
    /// The media of build `version` (`SEMVER-BUILD`) in the VCH's directory `dir`.
    pub fn of(dir: &DatastorePath, version: &str) -> Media {
        let build = version.rsplit('-').next().unwrap_or(version);
        let at = |kind: &str| {
            DatastorePath::new(&dir.datastore, &format!("{}/{kind}-{build}.iso", dir.path))
        };
        Media {
            appliance: at("appliance"),
            bootstrap: at("bootstrap"),
        }
    }
}

/// Removes the media in the VCH's directory `dir` that nothing uses: not in `keep` (the
/// releases the appliance VM can run) and in no CD-ROM of the VMs in `pool` (a container VM
/// keeps the bootstrap it was made with). Returns their names.
pub async fn sweep(
    client: &Client,
    dc_path: &str,
    datacenter: &vim25::MoRef,
    pool: &vim25::MoRef,
    dir: &DatastorePath,
    keep: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut used: Vec<String> = keep.to_vec();
    let vms = client
        .find_all(pool, &[("VirtualMachine", &["name"])])
        .await?;
    for vm in &vms {
        let devices = client.devices(&vm.obj).await?;
        used.extend(
            (devices.iter())
                .filter(|d| d.value_type() == "VirtualCdrom")
                .filter_map(|d| d.text_at(&["backing", "fileName"]))
                .map(str::to_string),
        );
    }
    let browser = client.datastore_browser(dc_path, &dir.datastore).await?;
    let names = client.list_directory(&browser, dir, UPLOAD).await?;
    let mut gone = Vec::new();
    for name in names.into_iter().filter(|n| is_medium(n)) {
        let file = DatastorePath::new(&dir.datastore, &format!("{}/{name}", dir.path));
        if used.contains(&file.to_string()) {
            continue;
        }
        client
            .delete_datastore_file(datacenter, &file, UPLOAD)
            .await
            .with_context(|| format!("removing {file}"))?;
        gone.push(name);
    }
    Ok(gone)
}

/// `appliance-BUILD.iso` or `bootstrap-BUILD.iso`.
fn is_medium(name: &str) -> bool {
    (name.strip_suffix(".iso"))
        .and_then(|n| {
            n.strip_prefix("appliance-")
                .or_else(|| n.strip_prefix("bootstrap-"))
        })
        .is_some_and(|build| !build.is_empty() && build.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Builds this installation's media and uploads them to the VCH's directory `dir`.
pub async fn upload(
    client: &Client,
    dc_path: &str,
    parts: &Parts,
    dir: &DatastorePath,
) -> anyhow::Result<Media> {
    let media = Media::of(dir, &parts.version()?);
    let work = tempfile::tempdir().context("making a directory for the boot media")?;
    let files: Vec<(&str, &Path)> = parts.files().collect();
    for (iso, volume, names) in [
        (&media.appliance, "VIC_APPLIANCE", &files[..2]),
        (&media.bootstrap, "VIC_BOOTSTRAP", &files[2..]),
    ] {
        let local = work.path().join(volume);
        build_iso(volume, names, &local)?;
        client
            .upload(dc_path, &local, iso, UPLOAD)
            .await
            .with_context(|| format!("uploading {iso}"))?;
    }
    Ok(media)
}

/// Writes an ISO image at `out` holding `files` (name, local file) at its root.
fn build_iso(volume: &str, files: &[(&str, &Path)], out: &Path) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    for (name, path) in files {
        let contents =
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        entries.push(IsoFile::File {
            name: Arc::new(name.to_string()),
            contents,
        });
    }
    let input = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: entries,
    };
    let options = FormatOptions {
        volume_name: volume.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("VIC".into()),
        sector_size: 2048,
        path_separator: PathSeparator::ForwardSlash,
        features: CreationFeatures::with_rock_ridge(),
        strict_charset: false,
    };
    // The writer reads back what it wrote: the file has its whole (estimated) size first.
    let size = estimate(&input, &options).minimum_bytes();
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.set_len(size)
        .with_context(|| format!("sizing {}", out.display()))?;
    IsoImageWriter::format_new(file, input, options)
        .map_err(|e| anyhow::anyhow!("writing {}: {e:?}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_are_named_by_build_in_the_vch_directory() {
        let dir = DatastorePath::new("ds1", "vch1");
        let m = Media::of(&dir, "0.1.0-0a1b2c3d");
        assert_eq!(m.appliance.to_string(), "[ds1] vch1/appliance-0a1b2c3d.iso");
        assert_eq!(m.bootstrap.to_string(), "[ds1] vch1/bootstrap-0a1b2c3d.iso");
    }

    #[test]
    fn only_media_names_are_swept() {
        assert!(is_medium("appliance-0a1b2c3d.iso") && is_medium("bootstrap-ff.iso"));
        for other in [
            "appliance-key.img",
            "appliance-.iso",
            "bootstrap-x1.iso",
            "vch1.vmx",
            "images",
        ] {
            assert!(!is_medium(other), "{other}");
        }
    }

    #[test]
    fn an_iso_holds_its_files_under_their_names() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, b"program bytes").unwrap();
        let out = d.path().join("x.iso");
        build_iso("VIC_TEST", &[("vic-appliance", &a)], &out).unwrap();
        let image = std::fs::read(&out).unwrap();
        // The primary volume descriptor at sector 16, then the file's name and its bytes.
        assert_eq!(&image[16 * 2048 + 1..16 * 2048 + 6], b"CD001");
        let has = |needle: &[u8]| image.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"vic-appliance"), "its Rock Ridge name");
        assert!(has(b"program bytes"));
    }
}
