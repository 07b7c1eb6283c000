//! The client: a server's service content, the session (login, logout, keepalive).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::soap::Transport;
use crate::tls::Trust;
use crate::xml::{Node, Request};
use crate::{Error, MoRef};

/// How long a call may take by default (a task's own wait has its timeout).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What the server offers: its managers, and what it is.
#[derive(Debug, Clone)]
pub struct ServiceContent {
    pub root_folder: MoRef,
    pub property_collector: MoRef,
    pub view_manager: MoRef,
    pub session_manager: MoRef,
    pub search_index: MoRef,
    pub file_manager: Option<MoRef>,
    pub virtual_disk_manager: Option<MoRef>,
    pub event_manager: Option<MoRef>,
    /// The OptionManager of the server's settings.
    pub setting: Option<MoRef>,
    /// `VirtualCenter` or `HostAgent` (ESX).
    pub api_type: String,
    pub api_version: String,
    /// The product's name, e.g. "VMware vCenter Server (govmomi simulator)".
    pub name: String,
    /// The product's full name, e.g. "VMware vCenter Server 6.5.0 build-5973321".
    pub full_name: String,
    pub instance_uuid: String,
}

impl ServiceContent {
    pub(crate) fn read(n: &Node) -> Result<ServiceContent, Error> {
        let need = |name: &str| {
            n.child(name)
                .and_then(Node::moref)
                .ok_or_else(|| Error::Protocol(format!("the service content has no {name}")))
        };
        let opt = |name: &str| n.child(name).and_then(Node::moref);
        let about = |name: &str| n.text_at(&["about", name]).unwrap_or("").to_string();
        Ok(ServiceContent {
            root_folder: need("rootFolder")?,
            property_collector: need("propertyCollector")?,
            view_manager: need("viewManager")?,
            session_manager: need("sessionManager")?,
            search_index: need("searchIndex")?,
            file_manager: opt("fileManager"),
            virtual_disk_manager: opt("virtualDiskManager"),
            event_manager: opt("eventManager"),
            setting: opt("setting"),
            api_type: about("apiType"),
            api_version: about("apiVersion"),
            name: about("name"),
            full_name: about("fullName"),
            instance_uuid: about("instanceUuid"),
        })
    }

    /// Whether the server is govmomi's simulator, vcsim (its VMs have no guest of their own).
    pub fn is_simulator(&self) -> bool {
        self.name.contains("govmomi simulator")
    }

    /// Whether the server is a vCenter (else an ESX host managed directly).
    pub fn is_vcenter(&self) -> bool {
        self.api_type == "VirtualCenter"
    }
}

/// A client of one vSphere server; clones share the session.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    content: ServiceContent,
    keepalive: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

impl Client {
    /// Connects to `host` (`name[:port]`) and reads its service content; not logged in yet.
    pub async fn connect(host: &str, trust: &Trust) -> Result<Client, Error> {
        let transport = Transport::new(host, trust, CALL_TIMEOUT)?;
        let si = MoRef::new("ServiceInstance", "ServiceInstance");
        let resp = transport
            .call(&Request::new("RetrieveServiceContent", &si))
            .await?;
        let returnval = resp
            .child("returnval")
            .ok_or_else(|| Error::Protocol("RetrieveServiceContent returned nothing".into()))?;
        let content = ServiceContent::read(returnval)?;
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                content,
                keepalive: Mutex::new(None),
            }),
        })
    }

    pub fn content(&self) -> &ServiceContent {
        &self.inner.content
    }

    /// Calls a method; its `<MethodResponse>`.
    pub async fn call(&self, req: &Request) -> Result<Node, Error> {
        self.inner.transport.call(req).await
    }

    /// Calls a method that may take up to `timeout` (a long poll).
    pub async fn call_within(&self, req: &Request, timeout: Duration) -> Result<Node, Error> {
        self.inner.transport.call_within(req, timeout).await
    }

    /// Calls a method and returns its `returnval`, if it returned one.
    pub async fn call_returning(&self, req: &Request) -> Result<Option<Node>, Error> {
        let resp = self.call(req).await?;
        Ok(resp.child("returnval").cloned())
    }

    /// Logs in; the session is kept by its cookie.
    pub async fn login(&self, user: &str, password: &str) -> Result<(), Error> {
        let mut req = Request::new("Login", &self.content().session_manager);
        req.text("userName", user).text("password", password);
        self.call(&req).await?;
        Ok(())
    }

    /// Ends the session (and its keepalive).
    pub async fn logout(&self) -> Result<(), Error> {
        if let Some(task) = self
            .inner
            .keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
        let req = Request::new("Logout", &self.content().session_manager);
        self.call(&req).await.map(|_| ())
    }

    /// The server's clock (also what keeps an idle session alive).
    pub async fn current_time(&self) -> Result<DateTime<Utc>, Error> {
        let si = MoRef::new("ServiceInstance", "ServiceInstance");
        let resp = self.call(&Request::new("CurrentTime", &si)).await?;
        let text = resp.text_at(&["returnval"]).unwrap_or("");
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Error::Protocol(format!("CurrentTime returned {text:?}: {e}")))
    }

    /// Keeps the session alive by asking the time every `every` while any clone of the client
    /// lives; a failure is logged, and the next tick tries again.
    pub fn keep_alive(&self, every: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let client = Client { inner };
                if let Err(e) = client.current_time().await {
                    tracing::warn!("vSphere session keepalive: {e}");
                }
            }
        });
        let old = self
            .inner
            .keepalive
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task);
        if let Some(old) = old {
            old.abort();
        }
    }

    /// The session cookie and the HTTPS client, for transfers outside SOAP.
    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }
}
