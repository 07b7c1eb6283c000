//! Logging to the VM console (ttyS0, the host's `console.log`), never failing.

/// Writes one `tether: …` line to the console. Errors are ignored: PID 1 must not die of logging.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!("tether: {}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}
