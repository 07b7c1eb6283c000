//! **imagec**: the registry client and the content-addressed image store of a VCH.
//!
//! It owns images: pulling them from a registry v2 / OCI distribution endpoint, verifying
//! every blob's digest, applying layers (with whiteouts) into an unpacked root filesystem, and
//! keeping records, tags and digests. It does not know containers, Docker's JSON or disks:
//! the port layer asks for an image's root filesystem and a backend turns it into a disk.
//!
//! ```text
//!   Puller::pull(ref) ── GET /v2/<repo>/manifests/<tag> (Accept: v2s2, OCI, list, index)
//!        │                 index/list → pick linux/amd64 → manifest
//!        ├─ config blob (digest checked) → image ID
//!        ├─ layer blobs, 3 at a time → blobs/sha256/<hex> (digest checked while streaming)
//!        └─ layers applied in order → tmp/ → images/<hex>/rootfs, then the record, tags
//!           and digests in one database transaction (last)
//! ```
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use imagec::{pull::{Platform, Puller, RegistryOptions}, reference::Reference, store::ImageStore};
//! let store = ImageStore::open(std::path::Path::new("/var/lib/vic/images"))?;
//! let puller = Puller::new(RegistryOptions {
//!     insecure: vec!["127.0.0.1:5000".into()], // HTTPS unverified if it speaks TLS, else HTTP
//!     ..Default::default()
//! });
//! let r = Reference::parse("127.0.0.1:5000/busybox")?;
//! let out = puller.pull(&store, &r, &Platform::default(), None, &|p| println!("{p:?}")).await?;
//! assert_eq!(store.resolve("127.0.0.1:5000/busybox").map(|i| i.id), Some(out.image.id));
//! # Ok(()) }
//! ```
//!
//! Modules: [`archive`] (`docker save`, `load` and `import`), [`auth`] (credentials, Basic and Bearer challenges), [`digest`] (validated `sha256:` digests), [`reference`](mod@reference) (Docker's name grammar), `registry` (the v2 wire, private),
//! [`pull`] (orchestration, progress, errors), `unpack` (layers → rootfs, private), [`store`].
//!
//! A registry is hostile until its bytes verify: digests are [`digest::Digest`]s from the
//! moment they are parsed (only those name files), every body is read within a bound and
//! under a stall window and deadline ([`pull::Timeouts`]), blobs are cut off at their declared
//! size, and redirects never leave HTTPS or the whitelist.
//!
//! A pull that dies midway leaves only `*.partial` blobs (resumed by the next pull with a
//! `Range` request, swept after a day) and `tmp/` directories (swept by
//! [`store::ImageStore::open`]): never half an image. The store may be given a
//! [`store::Budget`] (the VCH's storage quota): a pull is then refused before it starts when
//! the store is over it, before it downloads when the manifest's sizes do not fit, and before
//! the image commits when the unpacked layers do not.

pub mod archive;
pub mod auth;
pub mod digest;
pub mod dns;
mod error;
pub mod pull;
pub mod push;
pub mod reference;
mod registry;
pub mod store;
mod transfer;
mod unpack;

/// Why a layer could not be applied (carried by [`pull::PullError::Unpack`]).
pub use unpack::UnpackError;
