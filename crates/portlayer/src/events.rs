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
    /// Increasing from 1 in publication order (to join history and live events exactly).
    pub seq: u64,
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
    /// The history and the sequence counter, under one lock so their order is the send order.
    history: Mutex<(VecDeque<Event>, u64)>,
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
            history: Mutex::new((VecDeque::with_capacity(HISTORY), 0)),
        }
    }

    pub fn publish(
        &self,
        kind: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        tracing::debug!(kind, action, id, "event");
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        h.1 += 1;
        let event = Event {
            seq: h.1,
            time: Utc::now(),
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
        };
        if h.0.len() == HISTORY {
            h.0.pop_front();
        }
        h.0.push_back(event.clone());
        // Sent under the lock: a subscriber that took the history first sees what follows it.
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
            .map(|h| h.0.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The recent events and a subscription to every later one, with nothing missed or
    /// repeated between the two.
    pub fn history_and_subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        (h.0.iter().cloned().collect(), self.tx.subscribe())
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
        bus.publish("container", "die", "abc", BTreeMap::new());
        let (past, mut live) = bus.history_and_subscribe();
        assert_eq!(past.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
        bus.publish("image", "pull", "busybox", BTreeMap::new());
        assert_eq!(
            live.recv().await.unwrap().seq,
            3,
            "nothing repeated or lost"
        );
    }
}
