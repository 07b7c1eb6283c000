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
//!        └─ layers applied in order → tmp/ → images/<hex>/rootfs, then record.json (last)
//! ```
//!
//! A pull that dies midway leaves only `*.partial` blobs and `tmp/` directories, which
//! [`store::ImageStore::open`] sweeps away: never half an image.

pub mod pull;
pub mod reference;
pub mod store;
mod unpack;
