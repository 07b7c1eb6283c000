//! A client of the vSphere API, vim25 over SOAP: the calls vic makes of vCenter and ESX, and
//! nothing of containers.
//!
//! Written by hand because no crate fits: the one Rust vim25 crate is generated from the whole
//! WSDL (close to a million lines, minutes to build) and speaks vim25's JSON API, which vCenter
//! 6.x and ESX do not have. The subset here is a few dozen methods; each response is read into
//! a namespace-resolved tree at one edge (`xml.rs`) and from there into the types below.
//!
//! ```text
//!   Client ── soap.rs (HTTPS POST /sdk, session cookie, faults) ── xml.rs (the wire format)
//!     ├─ property.rs   RetrievePropertiesEx/Continue, ContainerView, SearchIndex
//!     ├─ task.rs       waiting on a task, its fault typed
//!     ├─ datastore.rs  files: /folder uploads and downloads, FileManager
//!     ├─ pool.rs       resource pools and vApps
//!     ├─ updates.rs    WaitForUpdatesEx watches
//!     ├─ events.rs     the event history (EventHistoryCollector)
//!     ├─ options.rs    OptionManager, VirtualDiskManager
//!     └─ vm.rs         CreateVM, ReconfigVM, power, Destroy
//! ```
//!
//! The server is trusted by its certificate's thumbprint (VIC's `--thumbprint`) or by a CA;
//! a server that matches neither is refused with the thumbprint it showed ([`tls`]).

mod client;
pub mod datastore;
pub mod devices;
pub mod events;
mod hostnet;
mod options;
pub mod pool;
pub mod property;
#[cfg(test)]
mod recorded_tests;
mod soap;
pub mod task;
pub mod tls;
pub mod updates;
pub mod vm;
pub mod xml;

pub use client::{Client, ServiceContent};
pub use property::ObjectContent;
pub use tls::{Thumbprint, Trust};
pub use xml::Node;

/// A managed object reference: a server-side object by its type and ID (`VirtualMachine`,
/// `vm-42`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MoRef {
    pub kind: String,
    pub value: String,
}

impl MoRef {
    pub fn new(kind: &str, value: &str) -> MoRef {
        MoRef {
            kind: kind.to_string(),
            value: value.to_string(),
        }
    }
}

impl std::fmt::Display for MoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server's certificate is neither the pinned one nor signed by a trusted CA.
    #[error("Failed to verify certificate for target={host} (thumbprint={thumbprint})")]
    Untrusted {
        host: String,
        thumbprint: Thumbprint,
    },
    /// The server answered with a vim25 fault: its type (`InvalidLogin`,
    /// `ManagedObjectNotFound`, …) and message.
    #[error("{message} ({fault})")]
    Fault { fault: String, message: String },
    /// A task did not end in time.
    #[error("{what} did not complete within {secs} s")]
    Timeout { what: String, secs: u64 },
    /// The server could not be reached, or the connection broke.
    #[error("{0}")]
    Transport(String),
    /// The server answered something that is not vim25.
    #[error("{0}")]
    Protocol(String),
}

impl Error {
    /// The fault's type, when the server answered with one.
    pub fn fault(&self) -> Option<&str> {
        match self {
            Error::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
