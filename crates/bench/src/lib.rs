//! Shared parts of the benchmarks (and of tests that need a peer daemon).

pub mod dockerd;
