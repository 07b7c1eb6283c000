//! Watching objects change: a property collector of the watcher's own, a filter on it, and
//! WaitForUpdatesEx long polls. Power changes made by anyone (the vSphere client, govc) reach
//! the watcher as they happen, not at the next poll.
//!
//! A simulator sends no update for `config.extraConfig`: watch `config`, or read it.

use std::time::Duration;

use crate::property::view_object_set;
use crate::xml::{Node, Request};
use crate::{Client, Error, MoRef};

/// How an object took part in an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// The object came into the filter's view (first update, or created).
    Enter,
    Modify,
    /// The object left it (destroyed, moved out).
    Leave,
}

/// A change of one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    /// `assign`, `add`, `remove`, `indirectRemove`.
    pub op: String,
    pub val: Option<Node>,
}

/// What changed of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUpdate {
    pub obj: MoRef,
    pub kind: UpdateKind,
    pub changes: Vec<Change>,
}

/// A watch over properties of some objects.
pub struct Watch {
    client: Client,
    collector: MoRef,
    /// The container view a watch over a tree looks through.
    view: Option<MoRef>,
    version: String,
}

/// What a watch starts from.
enum Over<'a> {
    Objects(&'a [MoRef]),
    View(&'a MoRef),
}

impl Watch {
    /// Watches `paths` of `objects` (all of type `kind`). The first [`Watch::next`] reports
    /// their current values.
    pub async fn new(
        client: &Client,
        objects: &[MoRef],
        kind: &str,
        paths: &[&str],
    ) -> Result<Watch, Error> {
        Watch::start(client, Over::Objects(objects), None, kind, paths).await
    }

    /// Watches `paths` of every object of type `kind` below `container` (a folder, pool or
    /// vApp), objects that come later included. (vcsim follows a folder's tree only: a VM
    /// made in a vApp later comes into a watch below its folder, not below the vApp.)
    pub async fn below(
        client: &Client,
        container: &MoRef,
        kind: &str,
        paths: &[&str],
    ) -> Result<Watch, Error> {
        let view = client.container_view(container, &[kind]).await?;
        Watch::start(client, Over::View(&view), Some(view.clone()), kind, paths).await
    }

    async fn start(
        client: &Client,
        over: Over<'_>,
        view: Option<MoRef>,
        kind: &str,
        paths: &[&str],
    ) -> Result<Watch, Error> {
        let pc = client.content().property_collector.clone();
        let collector = client
            .call_returning(&Request::new("CreatePropertyCollector", &pc))
            .await?
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("CreatePropertyCollector returned nothing".into()));
        let watch = Watch {
            client: client.clone(),
            collector: MoRef::new("PropertyCollector", ""),
            view,
            version: String::new(),
        };
        let collector = match collector {
            Ok(c) => c,
            Err(e) => {
                watch.close().await;
                return Err(e);
            }
        };
        let watch = Watch { collector, ..watch };
        let mut req = Request::new("CreateFilter", &watch.collector);
        req.open("spec").open("propSet").text("type", kind);
        for p in paths {
            req.text("pathSet", p);
        }
        req.close();
        match over {
            Over::Objects(objects) => {
                for o in objects {
                    req.open("objectSet").moref("obj", o).close();
                }
            }
            Over::View(view) => view_object_set(&mut req, view),
        }
        req.close().text("partialUpdates", "false");
        if let Err(e) = client.call(&req).await {
            watch.close().await;
            return Err(e);
        }
        Ok(watch)
    }

    /// The updates since the last call, waiting up to `wait` for one; empty when none came.
    pub async fn next(&mut self, wait: Duration) -> Result<Vec<ObjectUpdate>, Error> {
        let mut req = Request::new("WaitForUpdatesEx", &self.collector);
        req.text("version", &self.version);
        req.open("options")
            .text("maxWaitSeconds", &wait.as_secs().max(1).to_string())
            .close();
        let timeout = wait + Duration::from_secs(30);
        let resp = self.client.call_within(&req, timeout).await?;
        let Some(set) = resp.child("returnval") else {
            return Ok(Vec::new());
        };
        if let Some(v) = set.text_at(&["version"]) {
            self.version = v.to_string();
        }
        let mut out = Vec::new();
        for filter in set.all("filterSet") {
            for o in filter.all("objectSet") {
                out.push(object_update(o)?);
            }
        }
        Ok(out)
    }

    /// What ends a [`Watch::next`] that waits, from elsewhere.
    pub fn canceller(&self) -> Canceller {
        Canceller {
            client: self.client.clone(),
            collector: self.collector.clone(),
        }
    }

    /// Ends the watch: its collector (and filter) are destroyed.
    pub async fn close(self) {
        if !self.collector.value.is_empty() {
            let req = Request::new("DestroyPropertyCollector", &self.collector);
            if let Err(e) = self.client.call(&req).await {
                tracing::debug!("destroying a property collector: {e}");
            }
        }
        if let Some(view) = &self.view {
            if let Err(e) = self.client.call(&Request::new("DestroyView", view)).await {
                tracing::debug!("destroying a container view: {e}");
            }
        }
    }
}

fn object_update(o: &Node) -> Result<ObjectUpdate, Error> {
    let obj = o
        .child("obj")
        .and_then(Node::moref)
        .ok_or_else(|| Error::Protocol("an update without its object".into()))?;
    let kind = match o.text_at(&["kind"]) {
        Some("enter") => UpdateKind::Enter,
        Some("leave") => UpdateKind::Leave,
        _ => UpdateKind::Modify,
    };
    let changes = o
        .all("changeSet")
        .map(|c| Change {
            name: c.text_at(&["name"]).unwrap_or("").to_string(),
            op: c.text_at(&["op"]).unwrap_or("assign").to_string(),
            val: c.child("val").cloned(),
        })
        .collect();
    Ok(ObjectUpdate { obj, kind, changes })
}

/// Cancels the wait of a watch: its `next` fails with `RequestCanceled`.
#[derive(Clone)]
pub struct Canceller {
    client: Client,
    collector: MoRef,
}

impl Canceller {
    pub async fn cancel(&self) -> Result<(), Error> {
        let req = Request::new("CancelWaitForUpdates", &self.collector);
        self.client.call(&req).await.map(|_| ())
    }
}
