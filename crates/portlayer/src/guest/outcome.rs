//! How a session's start and its main process end.

/// Why a start failed.
#[derive(Debug)]
pub enum StartFailure {
    /// The process could not be executed (Docker exit code 126/127 semantics).
    Spawn { message: String, code: i32 },
    /// The guest broke the protocol: its VM is not to be trusted with powering itself off.
    Violation(String),
    /// Anything else: guest setup, a broken channel, a timeout.
    Other(String),
}

/// How the main process ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionExit {
    Exited(i32),
    /// The VM went away without reporting an exit (powered off from outside, crashed).
    Lost(String),
}
