//! The guest handle: the one module of the port layer that speaks the tether protocol.
//!
//! A container's VM is reached through a [`session`] (one task per running VM, reading and
//! writing tether-proto frames over the backend's channel, bounded both ways). What the
//! guest is told comes from the port layer's own types: [`launch`] converts a container's
//! spec, and the guest options here ([`Confinement`], [`Rlimit`], …), into the wire's
//! `Setup` and `Process`. Records keep the port layer's types, so a change of the wire
//! format does not reach the state database, and nothing outside this module names
//! `tether_proto`.
//!
//! ```text
//!   manager ── Launch::of(spec) ──► session ── frames ──► backend channel ──► tether
//!           ◄── SessionExit, output ──┘      protocol.rs: the host side's state machine
//! ```

mod control;
pub mod copy;
pub mod exec;
pub(crate) mod launch;
mod options;
mod outcome;
mod protocol;
mod resync;
pub(crate) mod session;
#[cfg(test)]
mod session_tests;
pub mod stats;
mod stdin;
pub mod transfer;

pub(crate) use launch::Launch;
pub use options::{
    capability_mask, Confinement, Device, HostEntry, Rlimit, Tmpfs, UnknownCapability,
    CAPABILITIES, DEFAULT_CAPABILITIES, RLIMITS, TMPFS_DATA, TMPFS_FLAGS,
};
