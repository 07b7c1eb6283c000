//! Files on datastores: HTTP transfers through the server's `/folder` (as the session), and
//! the FileManager's directories and deletions.

use std::path::Path;
use std::time::Duration;

use crate::soap::read_bounded;
use crate::xml::Request;
use crate::{Client, Error, MoRef};

/// A file on a datastore: `[DATASTORE] path/in/it`, as vSphere writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatastorePath {
    pub datastore: String,
    /// Relative to the datastore's root, `/`-separated, no leading `/`.
    pub path: String,
}

impl DatastorePath {
    pub fn new(datastore: &str, path: &str) -> DatastorePath {
        DatastorePath {
            datastore: datastore.to_string(),
            path: path.trim_start_matches('/').to_string(),
        }
    }

    /// Reads `[DS] path`.
    pub fn parse(s: &str) -> Option<DatastorePath> {
        let rest = s.strip_prefix('[')?;
        let (ds, path) = rest.split_once(']')?;
        Some(DatastorePath::new(ds, path.trim()))
    }
}

impl std::fmt::Display for DatastorePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.path.as_str() {
            // The datastore alone: vSphere picks the file's place (a new disk in its VM's directory).
            "" => write!(f, "[{}]", self.datastore),
            path => write!(f, "[{}] {path}", self.datastore),
        }
    }
}

/// Percent-encodes a path or query value (RFC 3986 unreserved characters and `/` kept).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let plain = b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/');
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// The `/folder` URL of `file` in datacenter `dc` (its inventory path; ESX: `ha-datacenter`).
    fn folder_url(&self, dc: &str, file: &DatastorePath) -> String {
        format!(
            "{}/folder/{}?dcPath={}&dsName={}",
            self.transport().base(),
            encode(&file.path, true),
            encode(dc, false),
            encode(&file.datastore, false)
        )
    }

    fn with_session(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.transport().cookie() {
            Some(c) => req.header("Cookie", format!("vmware_soap_session={c}")),
            None => req,
        }
    }

    /// Uploads the local file `from` to `to`, replacing what is there.
    pub async fn upload(
        &self,
        dc: &str,
        from: &Path,
        to: &DatastorePath,
        timeout: Duration,
    ) -> Result<(), Error> {
        let file = tokio::fs::File::open(from)
            .await
            .map_err(|e| Error::Transport(format!("opening {}: {e}", from.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| Error::Transport(format!("reading {}: {e}", from.display())))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util_stream(file));
        let req = self
            .transport()
            .http()
            .put(self.folder_url(dc, to))
            .timeout(timeout)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Length", len)
            .body(body);
        let resp = self
            .with_session(req)
            .send()
            .await
            .map_err(|e| self.transport().transport_error(e))?;
        match resp.status().as_u16() {
            200 | 201 | 204 => Ok(()),
            s => Err(Error::Transport(format!(
                "uploading {to}: the server answered {s}"
            ))),
        }
    }

    /// Downloads `file`, at most `max` bytes of it.
    pub async fn download(
        &self,
        dc: &str,
        file: &DatastorePath,
        max: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let req = self
            .transport()
            .http()
            .get(self.folder_url(dc, file))
            .timeout(timeout);
        let resp = self
            .with_session(req)
            .send()
            .await
            .map_err(|e| self.transport().transport_error(e))?;
        match resp.status().as_u16() {
            200 => read_bounded(resp, max).await,
            404 => Err(Error::Fault {
                fault: "FileNotFound".into(),
                message: format!("File {file} was not found"),
            }),
            s => Err(Error::Transport(format!(
                "downloading {file}: the server answered {s}"
            ))),
        }
    }

    fn file_manager(&self) -> Result<MoRef, Error> {
        self.content()
            .file_manager
            .clone()
            .ok_or_else(|| Error::Protocol("the server has no FileManager".into()))
    }

    /// Makes directory `dir` (and its parents) in datacenter `datacenter`.
    pub async fn make_directory(
        &self,
        datacenter: &MoRef,
        dir: &DatastorePath,
    ) -> Result<(), Error> {
        let mut req = Request::new("MakeDirectory", &self.file_manager()?);
        req.text("name", &dir.to_string())
            .moref("datacenter", datacenter)
            .text("createParentDirectories", "true");
        self.call(&req).await.map(|_| ())
    }

    /// Moves (renames) a file or a directory within datacenter `datacenter`, never over one
    /// that exists (`FileAlreadyExists`): what makes a thing whole under its name at once.
    pub async fn move_datastore_file(
        &self,
        datacenter: &MoRef,
        from: &DatastorePath,
        to: &DatastorePath,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("MoveDatastoreFile_Task", &self.file_manager()?);
        req.text("sourceName", &from.to_string())
            .moref("sourceDatacenter", datacenter)
            .text("destinationName", &to.to_string())
            .moref("destinationDatacenter", datacenter)
            .text("force", "false");
        self.run_task(&req, timeout).await.map(|_| ())
    }

    /// The browser of datastore `name` in datacenter `dc` (its inventory path).
    pub async fn datastore_browser(&self, dc: &str, name: &str) -> Result<MoRef, Error> {
        let path = format!("{dc}/datastore/{name}");
        let Some(ds) = self.find_by_inventory_path(&path).await? else {
            return Err(Error::Fault {
                fault: "NotFound".into(),
                message: format!("datastore '{name}' not found"),
            });
        };
        let props = self.properties(&ds, &["browser"]).await?;
        (props.prop("browser").and_then(|n| n.moref()))
            .ok_or_else(|| Error::Protocol(format!("datastore {name} has no browser")))
    }

    /// The names of the files and directories in directory `dir`, through `browser` (the
    /// datastore's): `FileNotFound` when it is not there.
    pub async fn list_directory(
        &self,
        browser: &MoRef,
        dir: &DatastorePath,
        timeout: Duration,
    ) -> Result<Vec<String>, Error> {
        let mut req = Request::new("SearchDatastore_Task", browser);
        req.text("datastorePath", &dir.to_string())
            .open_typed("searchSpec", "HostDatastoreBrowserSearchSpec")
            .text("matchPattern", "*")
            .close();
        let Some(result) = self.run_task(&req, timeout).await? else {
            return Ok(Vec::new());
        };
        Ok(result
            .all("file")
            .filter_map(|f| f.text_at(&["path"]))
            .map(str::to_string)
            .collect())
    }

    /// Deletes a file or a directory with all it holds.
    pub async fn delete_datastore_file(
        &self,
        datacenter: &MoRef,
        file: &DatastorePath,
        timeout: Duration,
    ) -> Result<(), Error> {
        let mut req = Request::new("DeleteDatastoreFile_Task", &self.file_manager()?);
        req.text("name", &file.to_string())
            .moref("datacenter", datacenter);
        self.run_task(&req, timeout).await.map(|_| ())
    }
}

/// A file as a stream of chunks, for an upload's body.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datastore_paths_read_and_print_as_vsphere_writes_them() {
        let p = DatastorePath::parse("[LocalDS_0] vch/appliance.iso").unwrap();
        assert_eq!(p, DatastorePath::new("LocalDS_0", "vch/appliance.iso"));
        assert_eq!(p.to_string(), "[LocalDS_0] vch/appliance.iso");
        assert!(DatastorePath::parse("LocalDS_0/x").is_none());
        assert_eq!(encode("a b/c&d", true), "a%20b/c%26d");
        assert_eq!(encode("a/b", false), "a%2Fb");
    }
}
