//! The few QEMU Machine Protocol commands templates need: saving a booted VM's device state
//! and restoring a clone from it.
//!
//! QEMU connects to a socket the backend listens on (`-chardev socket,path=…` without
//! `server`), so a jailed QEMU needs no right to create files. What it says is read as a
//! hostile peer's: lines are bounded, and every wait has a deadline.

use std::time::Duration;

use hypervisor::BackendError;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::vm::failed;

/// The longest line QEMU may send (its answers here are a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

/// The chardev and monitor options of a VM whose QEMU connects to `socket`.
pub fn args(socket: &str) -> [String; 4] {
    [
        "-chardev".into(),
        format!("socket,id=qmp,path={socket}"),
        "-mon".into(),
        "chardev=qmp,mode=control".into(),
    ]
}

/// A QMP session with one QEMU.
pub struct Qmp {
    stream: BufReader<UnixStream>,
    limit: Duration,
    /// Events seen while waiting for answers, by name.
    events: Vec<String>,
}

impl Qmp {
    /// Reads QEMU's greeting and leaves capabilities negotiation; each later read or write
    /// may take up to `limit`.
    pub async fn open(stream: UnixStream, limit: Duration) -> Result<Self, BackendError> {
        let mut q = Self {
            stream: BufReader::new(stream),
            limit,
            events: Vec::new(),
        };
        let greeting = q.next().await?;
        if greeting.get("QMP").is_none() {
            return Err(failed(format!("QEMU did not greet in QMP: {greeting}")));
        }
        q.execute("qmp_capabilities", json!({})).await?;
        Ok(q)
    }

    /// Runs `command` and returns its `return` value; an `error` is an error.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Value,
    ) -> Result<Value, BackendError> {
        let mut line = serde_json::to_vec(&json!({"execute": command, "arguments": arguments}))
            .map_err(|e| failed(format!("encoding QMP {command}: {e}")))?;
        line.push(b'\n');
        let write = async {
            self.stream.get_mut().write_all(&line).await?;
            self.stream.get_mut().flush().await
        };
        tokio::time::timeout(self.limit, write)
            .await
            .map_err(|_| failed(format!("QEMU did not take QMP {command} in time")))?
            .map_err(|e| failed(format!("sending QMP {command}: {e}")))?;
        loop {
            let v = self.next().await?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                let desc = e.get("desc").and_then(Value::as_str).unwrap_or("?");
                return Err(failed(format!("QMP {command} failed: {desc}")));
            }
        }
    }

    /// Waits for the event `name` (one seen earlier counts).
    pub async fn event(&mut self, name: &str) -> Result<(), BackendError> {
        while !self.events.iter().any(|e| e == name) {
            self.next().await?;
        }
        Ok(())
    }

    /// The next message (an event is also recorded).
    async fn next(&mut self) -> Result<Value, BackendError> {
        {
            let mut buf = Vec::new();
            let mut bounded = (&mut self.stream).take(MAX_LINE as u64);
            let read = bounded.read_until(b'\n', &mut buf);
            let n = tokio::time::timeout(self.limit, read)
                .await
                .map_err(|_| failed(format!("QEMU said nothing on QMP for {:?}", self.limit)))?
                .map_err(|e| failed(format!("reading QMP: {e}")))?;
            if n == 0 {
                return Err(failed("QEMU closed its QMP connection".into()));
            }
            if !buf.ends_with(b"\n") {
                return Err(failed(format!("a QMP line over {MAX_LINE} bytes")));
            }
            let v: Value = serde_json::from_slice(&buf)
                .map_err(|e| failed(format!("QEMU sent QMP that does not parse: {e}")))?;
            if let Some(event) = v.get("event").and_then(Value::as_str) {
                if self.events.len() < 64 && !self.events.iter().any(|e| e == event) {
                    self.events.push(event.to_string());
                }
            }
            Ok(v)
        }
    }
}
