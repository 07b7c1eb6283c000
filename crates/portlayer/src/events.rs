//! The lifecycle event stream (what Docker's `/events` serves): typed, broadcast to every
//! subscriber, newest kept in a short history for `since` queries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

const HISTORY: usize = 1024;

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub time: DateTime<Utc>,
    /// "container" or "image".
    pub kind: &'static str,
    /// e.g. "create", "start", "die", "destroy", "pull", "delete".
    pub action: String,
    /// Container ID or image reference.
    pub id: String,
    pub attributes: BTreeMap<String, String>,
}

/// Publishes events to subscribers.
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(HISTORY);
        EventBus {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    pub fn publish(
        &self,
        kind: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let event = Event {
            time: Utc::now(),
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
        };
        tracing::debug!(kind, action, id, "event");
        if let Ok(mut h) = self.history.lock() {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Live events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Recent events (oldest first).
    pub fn history(&self) -> Vec<Event> {
        self.history
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_and_history_see_events() {
        let bus = EventBus::new();
        let mut rx = bus.subscribe();
        bus.publish("container", "start", "abc", BTreeMap::new());
        let got = rx.recv().await.unwrap();
        assert_eq!(got.action, "start");
        assert_eq!(bus.history().len(), 1);
    }
}
