//! The **port layer**: the container abstractions of a VCH, neutral to both the API on top
//! (the Docker personality) and the hypervisor below (a [`Backend`]).
//!
//! It owns containers (create, start, stop, kill, wait, remove), their interaction streams
//! (attach, stdin, resize), their logs (kept host-side, so they outlive the VM), the lifecycle
//! event stream, and the link from the image store to the backend's disks. It does not speak
//! Docker's JSON, and it does not know how a VM is made.
//!
//! ```text
//!   docker-api ── Containers::{create,start,attach,wait,…} ──► portlayer
//!                                                               │  state.rs (records in one redb database, logs as files)
//!                                                               │  storage  (usage of images, containers, volumes; the quota)
//!                                                               │  logs     (framed records with stream + timestamp, rotated within bounds)
//!                                                               ▼
//!                                      dyn Backend ── VM + channel ──► tether (tether-proto frames)
//! ```
//!
//! Each running container has one *session task* that reads the tether channel: output goes
//! to the log file first and then to live subscribers (attach, `logs -f`), and the exit is
//! recorded before anyone waiting is told.

pub mod binds;
pub mod changes;
pub mod container;
pub mod events;
#[cfg(test)]
mod fake_stop_tests;
#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod fake_update_tests;
#[cfg(test)]
mod fake_volume_tests;
pub mod follow;
pub mod guest;
pub mod health;
mod image_service;
pub mod limits;
pub mod logs;
mod manager;
mod names;
pub mod networks;
pub mod ports;
mod signals;
mod state;
pub mod storage;
pub mod volumes;

pub use container::{
    BindMount, Confinement, ContainerRecord, ContainerSpec, ContainerState, PrivilegeSpec,
    ProcessSpec, Rlimit, Status, VolumeMount,
};
pub use events::{Event, EventBus};
pub use guest::copy::CopyIn;
pub use guest::exec::{ExecConfig, ExecOutput};
pub use guest::session::{GuestProcess, Processes, StdinMsg};
pub use guest::stats::{ContainerStats, DiskStats, NetStats};
pub use guest::transfer::{ContainerPath, CopyError};
pub use image_service::{ImageEvent, ImageService};
pub use limits::Limits;
pub use logs::{LogBounds, LogEntry, LogSet, LogStream};
pub use manager::{
    AttachStreams, Containers, ContainersConfig, CopyStream, Error, ExecClaim, ExecInfo, ExecStdin,
    ExecStreams, Images, LayerStream, Output, Resize, WaitCondition, MAX_EXECS,
};
pub use networks::{Endpoint, Network};
pub use signals::parse_signal;
pub use state::{open_database, Quarantined};
pub use storage::{Storage, VolumeStore};
