//! vSphere's event history: what happened to VMs (powered on or off by anyone, a guest
//! shutdown asked from the UI, removed, moved by DRS), read through an
//! EventHistoryCollector.

use chrono::{DateTime, Utc};

use crate::xml::{Node, Request};
use crate::{Client, Error, MoRef};

/// The event types a VCH follows for its VMs, as VIC's event manager did.
pub const VM_EVENTS: &[&str] = &[
    "VmPoweredOnEvent",
    "VmPoweredOffEvent",
    "VmSuspendedEvent",
    "VmResumingEvent",
    "VmGuestShutdownEvent",
    "VmGuestRebootEvent",
    "VmRemovedEvent",
    "VmRelocatedEvent",
    "VmMigratedEvent",
    "DrsVmPoweredOnEvent",
    "DrsVmMigratedEvent",
];

/// How many events a collector keeps for its reader (vSphere's most).
const PAGE: u32 = 1000;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its type, e.g. `VmPoweredOffEvent`.
    pub kind: String,
    pub key: i64,
    pub created: Option<DateTime<Utc>>,
    /// The VM it is about, if any.
    pub vm: Option<MoRef>,
    pub message: String,
}

impl Event {
    fn read(n: &Node) -> Event {
        let created = n
            .text_at(&["createdTime"])
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        Event {
            kind: n.value_type().to_string(),
            key: n
                .text_at(&["key"])
                .and_then(|k| k.parse().ok())
                .unwrap_or(0),
            created,
            vm: n.at(&["vm", "vm"]).and_then(Node::moref),
            message: n
                .text_at(&["fullFormattedMessage"])
                .unwrap_or("")
                .to_string(),
        }
    }
}

/// A collector of the events of some types about the objects below an entity, from its
/// creation on.
pub struct EventCollector {
    client: Client,
    collector: MoRef,
    /// The key of the newest event read: servers differ in the order a page comes in and
    /// in where a new collector starts, keys only grow.
    last_key: i64,
}

impl EventCollector {
    /// Collects events of `types` (all types when empty) about `entity` and what it holds.
    pub async fn new(client: &Client, entity: &MoRef, types: &[&str]) -> Result<Self, Error> {
        let manager = client
            .content()
            .event_manager
            .clone()
            .ok_or_else(|| Error::Protocol("the server has no EventManager".into()))?;
        let mut req = Request::new("CreateCollectorForEvents", &manager);
        req.open("filter")
            .open("entity")
            .moref("entity", entity)
            .text("recursion", "all")
            .close();
        for t in types {
            req.text("eventTypeId", t);
        }
        req.close();
        let collector = client
            .call_returning(&req)
            .await?
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("CreateCollectorForEvents returned nothing".into()))?;
        let events = EventCollector {
            client: client.clone(),
            collector,
            last_key: i64::MIN,
        };
        // The page is what a reader can fall behind by before events are lost.
        let mut req = Request::new("SetCollectorPageSize", &events.collector);
        req.text("maxCount", &PAGE.to_string());
        if let Err(e) = client.call(&req).await {
            events.close().await;
            return Err(e);
        }
        Ok(events)
    }

    /// The events not read yet (at most `max` of them), oldest first.
    pub async fn read_next(&mut self, max: u32) -> Result<Vec<Event>, Error> {
        let mut req = Request::new("ReadNextEvents", &self.collector);
        req.text("maxCount", &max.to_string());
        let resp = self.client.call(&req).await?;
        let mut events: Vec<Event> = resp
            .all("returnval")
            .map(Event::read)
            .filter(|e| e.key > self.last_key)
            .collect();
        events.sort_by_key(|e| e.key);
        if let Some(last) = events.last() {
            self.last_key = last.key;
        }
        Ok(events)
    }

    /// Ends the collector on the server.
    pub async fn close(self) {
        let req = Request::new("DestroyCollector", &self.collector);
        if let Err(e) = self.client.call(&req).await {
            tracing::debug!("destroying an event collector: {e}");
        }
    }
}
