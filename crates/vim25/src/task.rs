//! Tasks: the long operations a method starts (`PowerOnVM_Task`, …), waited on within a
//! deadline, their fault typed as a call's would be.

use std::time::{Duration, Instant};

use crate::xml::{Node, Request};
use crate::{Client, Error, MoRef};

/// The first and the longest pause between two looks at a task's state.
const FIRST_POLL: Duration = Duration::from_millis(20);
const MAX_POLL: Duration = Duration::from_millis(500);

/// A task's error as a typed error: its fault's type and message.
pub fn task_error(error: &Node) -> Error {
    let fault = error
        .child("fault")
        .map(|f| f.value_type().to_string())
        .unwrap_or_else(|| "SystemError".to_string());
    let message = error
        .text_at(&["localizedMessage"])
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| fault.clone());
    Error::Fault { fault, message }
}

impl Client {
    /// Calls a method that returns a task and waits for it to end, at most `timeout`;
    /// returns the task's result (a created VM's reference, …).
    pub async fn run_task(&self, req: &Request, timeout: Duration) -> Result<Option<Node>, Error> {
        let task = self
            .call_returning(req)
            .await?
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol(format!("{} returned no task", req.method())))?;
        self.wait_task(&task, req.method(), timeout).await
    }

    /// Waits for `task` (started by `what`) to end, at most `timeout`.
    pub async fn wait_task(
        &self,
        task: &MoRef,
        what: &str,
        timeout: Duration,
    ) -> Result<Option<Node>, Error> {
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_POLL;
        loop {
            let props = self.properties(task, &["info"]).await?;
            let info = props
                .prop("info")
                .ok_or_else(|| Error::Protocol(format!("{task}: a task without info")))?;
            match info.text_at(&["state"]) {
                Some("success") => return Ok(info.child("result").cloned()),
                Some("error") => {
                    return Err(info.child("error").map(task_error).unwrap_or_else(|| {
                        Error::Protocol(format!("{what} failed without saying why"))
                    }))
                }
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }
}
