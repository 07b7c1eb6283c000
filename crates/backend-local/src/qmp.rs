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

#[cfg(test)]
mod tests {
    use super::*;

    /// A QEMU that greets, then answers each line with the next of `answers`.
    async fn qemu(answers: Vec<&'static str>) -> UnixStream {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        tokio::spawn(async move {
            let greeting = b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n";
            theirs.write_all(greeting).await.unwrap();
            let mut lines = BufReader::new(theirs);
            for a in answers {
                let mut line = String::new();
                if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                lines.get_mut().write_all(a.as_bytes()).await.unwrap();
            }
            let _ = lines.read_line(&mut String::new()).await;
        });
        ours
    }

    const OK: &str = "{\"return\": {}}\n";

    #[tokio::test]
    async fn answers_errors_and_events() {
        let s = qemu(vec![
            OK,
            "{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\"}}\n",
            "{\"error\": {\"class\": \"GenericError\", \"desc\": \"no such fd\"}}\n",
        ])
        .await;
        let mut q = Qmp::open(s, Duration::from_secs(5)).await.unwrap();
        let r = q.execute("query-status", json!({})).await.unwrap();
        assert_eq!(r["status"], "running");
        let e = q.execute("migrate-incoming", json!({})).await.unwrap_err();
        assert!(e.to_string().contains("no such fd"), "{e}");
        // Seen while waiting for an answer: waiting for it returns at once.
        q.event("RESUME").await.unwrap();
    }

    #[tokio::test]
    async fn a_silent_or_babbling_qemu_is_an_error_not_a_hang() {
        let s = qemu(vec![OK]).await;
        let mut q = Qmp::open(s, Duration::from_millis(200)).await.unwrap();
        let e = q.event("RESUME").await.unwrap_err();
        assert!(e.to_string().contains("said nothing"), "{e}");

        let long: &'static str = Box::leak(format!("{}\n", "x".repeat(MAX_LINE + 10)).into());
        let s = qemu(vec![OK, long]).await;
        let mut q = Qmp::open(s, Duration::from_secs(5)).await.unwrap();
        let e = q.execute("query-status", json!({})).await.unwrap_err();
        assert!(e.to_string().contains("over"), "{e}");

        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(theirs);
        let e = Qmp::open(ours, Duration::from_secs(5)).await.err().unwrap();
        assert!(e.to_string().contains("closed"), "{e}");
    }
}
