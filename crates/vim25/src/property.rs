//! Reading the inventory: the PropertyCollector (RetrievePropertiesEx and its continuation),
//! container views over a folder's tree, and the SearchIndex.

use crate::xml::{Node, Request};
use crate::{Client, Error, MoRef};

/// How many objects a page of a retrieval holds (the server may send fewer).
const PAGE: usize = 100;

/// Properties of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectContent {
    pub obj: MoRef,
    /// Each property asked for that has a value, by its path.
    pub props: Vec<(String, Node)>,
    /// Paths the server could not read, with the fault's type.
    pub missing: Vec<(String, String)>,
}

impl ObjectContent {
    pub(crate) fn read(n: &Node) -> Result<ObjectContent, Error> {
        let obj = n
            .child("obj")
            .and_then(Node::moref)
            .ok_or_else(|| Error::Protocol("an object without its reference".into()))?;
        let props = n
            .all("propSet")
            .filter_map(|p| Some((p.text_at(&["name"])?.to_string(), p.child("val")?.clone())))
            .collect();
        let missing = n
            .all("missingSet")
            .map(|m| {
                let path = m.text_at(&["path"]).unwrap_or("").to_string();
                let fault = m
                    .at(&["fault", "fault"])
                    .map(|f| f.value_type().to_string())
                    .unwrap_or_default();
                (path, fault)
            })
            .collect();
        Ok(ObjectContent {
            obj,
            props,
            missing,
        })
    }

    /// The value of property `path`.
    pub fn prop(&self, path: &str) -> Option<&Node> {
        self.props.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    /// The text of property `path` (a string, number, enum or boolean).
    pub fn text(&self, path: &str) -> Option<&str> {
        self.prop(path).map(|v| v.text.as_str())
    }
}

/// Which objects a retrieval starts from: some objects, or everything a container view holds.
enum Start<'a> {
    Objects(&'a [MoRef]),
    View(&'a MoRef),
}

impl Client {
    /// Properties `paths` of `objects`, all of type `kind`. An object that no longer exists
    /// fails the call with `ManagedObjectNotFound`.
    pub async fn retrieve(
        &self,
        objects: &[MoRef],
        kind: &str,
        paths: &[&str],
    ) -> Result<Vec<ObjectContent>, Error> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        self.retrieve_from(Start::Objects(objects), &[(kind, paths)])
            .await
    }

    /// Properties `paths` of one object.
    pub async fn properties(&self, obj: &MoRef, paths: &[&str]) -> Result<ObjectContent, Error> {
        let mut all = self
            .retrieve(std::slice::from_ref(obj), &obj.kind, paths)
            .await?;
        all.pop()
            .ok_or_else(|| Error::Protocol(format!("{obj}: no properties returned")))
    }

    /// Every object of the types in `kinds` anywhere below `container` (a folder, datacenter,
    /// compute resource or pool), each with the properties its type lists.
    pub async fn find_all(
        &self,
        container: &MoRef,
        kinds: &[(&str, &[&str])],
    ) -> Result<Vec<ObjectContent>, Error> {
        let types: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
        let view = self.container_view(container, &types).await?;
        let found = self.retrieve_from(Start::View(&view), kinds).await;
        let destroyed = self.call(&Request::new("DestroyView", &view)).await;
        let found = found?;
        destroyed?;
        Ok(found)
    }

    /// A view of every object of `kinds` below `container`; `DestroyView` ends it.
    pub(crate) async fn container_view(
        &self,
        container: &MoRef,
        kinds: &[&str],
    ) -> Result<MoRef, Error> {
        let mut req = Request::new("CreateContainerView", &self.content().view_manager);
        req.moref("container", container);
        for kind in kinds {
            req.text("type", kind);
        }
        req.text("recursive", "true");
        self.call_returning(&req)
            .await?
            .and_then(|n| n.moref())
            .ok_or_else(|| Error::Protocol("CreateContainerView returned no view".into()))
    }

    async fn retrieve_from(
        &self,
        start: Start<'_>,
        kinds: &[(&str, &[&str])],
    ) -> Result<Vec<ObjectContent>, Error> {
        let pc = self.content().property_collector.clone();
        let mut req = Request::new("RetrievePropertiesEx", &pc);
        req.open("specSet");
        for (kind, paths) in kinds {
            req.open("propSet").text("type", kind);
            for p in *paths {
                req.text("pathSet", p);
            }
            req.close();
        }
        match start {
            Start::Objects(objects) => {
                for o in objects {
                    req.open("objectSet").moref("obj", o).close();
                }
            }
            Start::View(view) => view_object_set(&mut req, view),
        }
        req.close();
        req.open("options")
            .text("maxObjects", &PAGE.to_string())
            .close();
        let mut out = Vec::new();
        let mut page = self.call_returning(&req).await?;
        while let Some(p) = page {
            for o in p.all("objects") {
                out.push(ObjectContent::read(o)?);
            }
            let Some(token) = p.text_at(&["token"]) else {
                break;
            };
            let mut next = Request::new("ContinueRetrievePropertiesEx", &pc);
            next.text("token", token);
            page = self.call_returning(&next).await?;
        }
        Ok(out)
    }

    /// The object at an inventory path (`DC0/vm/name`, `DC0/host/cluster`), if there is one.
    pub async fn find_by_inventory_path(&self, path: &str) -> Result<Option<MoRef>, Error> {
        let mut req = Request::new("FindByInventoryPath", &self.content().search_index);
        req.text("inventoryPath", path);
        Ok(self.call_returning(&req).await?.and_then(|n| n.moref()))
    }
}

/// The `objectSet` that reaches every object a container view holds (not the view itself).
pub(crate) fn view_object_set(req: &mut Request, view: &MoRef) {
    req.open("objectSet")
        .moref("obj", view)
        .text("skip", "true")
        .open_typed("selectSet", "TraversalSpec")
        .text("type", "ContainerView")
        .text("path", "view")
        .text("skip", "false")
        .close()
        .close();
}
