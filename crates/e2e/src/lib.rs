//! Black-box tests of vic: the real `docker` CLI against a VCH made by `vic-machine`, with
//! real QEMU VMs and a real registry. The tests are in `tests/`; they are `#[ignore]`d in a
//! plain `cargo test` and run by `make test`, which builds the binaries and starts the
//! registry first.
