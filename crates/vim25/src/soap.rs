//! The SOAP transport: one HTTPS POST to `/sdk` a call, the session's cookie, responses read
//! within a bound and turned into a [`Node`] or a typed fault.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use crate::tls::{client_config, Thumbprint, Trust};
use crate::xml::{parse, Node, Request};
use crate::Error;

/// The largest response read: a retrieval of many objects' properties comes in pages of
/// at most this much (the collector is asked for pages well below it).
pub(crate) const MAX_RESPONSE: usize = 32 << 20;

/// What `SOAPAction` names: the API version whose semantics the client expects.
const SOAP_ACTION: &str = "urn:vim25/6.5";

const COOKIE: &str = "vmware_soap_session";

/// A connection to one server's `/sdk`.
pub(crate) struct Transport {
    http: reqwest::Client,
    /// `https://HOST[:PORT]`.
    base: String,
    host: String,
    cookie: Mutex<Option<String>>,
    refused: Arc<Mutex<Option<Thumbprint>>>,
    /// How long a call may take unless it says otherwise.
    timeout: Duration,
}

impl Transport {
    /// A transport to `host` (`name` or `name:port`) trusting what `trust` says.
    pub(crate) fn new(host: &str, trust: &Trust, timeout: Duration) -> Result<Transport, Error> {
        let refused = Arc::new(Mutex::new(None));
        let tls = client_config(trust, refused.clone()).map_err(Error::Transport)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Transport(format!("making the HTTPS client: {e}")))?;
        Ok(Transport {
            http,
            base: format!("https://{host}"),
            host: host.to_string(),
            cookie: Mutex::new(None),
            refused,
            timeout,
        })
    }

    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The session cookie, for requests outside SOAP (datastore file transfers).
    pub(crate) fn cookie(&self) -> Option<String> {
        self.cookie
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Calls the method `req` holds; returns its response element (`<MethodResponse>`).
    pub(crate) async fn call(&self, req: &Request) -> Result<Node, Error> {
        self.call_within(req, self.timeout).await
    }

    /// As [`Transport::call`], for a call that may take `timeout` (a long poll).
    pub(crate) async fn call_within(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Node, Error> {
        let mut http = self
            .http
            .post(format!("{}/sdk", self.base))
            .timeout(timeout)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", SOAP_ACTION)
            .body(req.envelope());
        if let Some(c) = self.cookie() {
            http = http.header("Cookie", format!("{COOKIE}={c}"));
        }
        let resp = http.send().await.map_err(|e| self.transport_error(e))?;
        self.keep_cookie(&resp);
        let status = resp.status();
        let body = read_bounded(resp, MAX_RESPONSE).await?;
        let doc = parse(&body).map_err(|e| match status.is_success() {
            true => e,
            false => Error::Protocol(format!("{} answered {status}", req.method())),
        })?;
        let answer = doc
            .child("Body")
            .and_then(|b| b.children.first())
            .ok_or_else(|| {
                Error::Protocol(format!("{}: a response without a body", req.method()))
            })?;
        if answer.name == "Fault" {
            return Err(fault(answer));
        }
        Ok(answer.clone())
    }

    fn keep_cookie(&self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or("");
            if let Some(value) = first.trim().strip_prefix(&format!("{COOKIE}=")) {
                let value = value.trim_matches('"').to_string();
                *self.cookie.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
            }
        }
    }

    pub(crate) fn transport_error(&self, e: reqwest::Error) -> Error {
        if let Some(t) = self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Error::Untrusted {
                host: self.host.clone(),
                thumbprint: t,
            };
        }
        if e.is_timeout() {
            return Error::Transport(format!("{}: no answer in time", self.base));
        }
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg = format!("{msg}: {s}");
            src = s.source();
        }
        Error::Transport(format!("{}: {msg}", self.base))
    }
}

/// Reads a response's body, at most `max` bytes.
pub(crate) async fn read_bounded(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Transport(format!("reading the response: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(Error::Protocol(format!(
                "the response is larger than {} MiB",
                max >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A SOAP fault as a typed error: the type of its detail (`InvalidLogin`), else its code.
pub(crate) fn fault(f: &Node) -> Error {
    let message = f.text_at(&["faultstring"]).unwrap_or("").to_string();
    let detail = f.child("detail").and_then(|d| d.children.first());
    let kind = match detail {
        Some(d) => d
            .xsi_type
            .clone()
            .unwrap_or_else(|| d.name.trim_end_matches("Fault").to_string()),
        None => f.text_at(&["faultcode"]).unwrap_or("Fault").to_string(),
    };
    Error::Fault {
        fault: kind,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_typed_by_its_detail() {
        // As vcsim answers a login with a wrong password.
        let doc = br#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Login failure</faultstring><detail><InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let doc = parse(doc).unwrap();
        let f = doc.at(&["Body", "Fault"]).unwrap();
        match fault(f) {
            Error::Fault { fault, message } => {
                assert_eq!(fault, "InvalidLogin");
                assert_eq!(message, "Login failure");
            }
            e => panic!("{e:?}"),
        }
    }
}
