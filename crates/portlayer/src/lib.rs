//! The port layer (in progress).
pub use hypervisor as backend;
