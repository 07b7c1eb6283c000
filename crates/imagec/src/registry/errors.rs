//! Registry failures worded as Docker words them.

use serde::Deserialize;

use crate::error::PullError;

/// A registry's (or token service's) error body as Docker prints it: `unauthorized:
/// authentication required`, or the token service's `details`.
pub(crate) fn error_detail(body: &[u8], fallback: &str) -> String {
    #[derive(Deserialize, Default)]
    struct Body {
        #[serde(default)]
        errors: Vec<Entry>,
        #[serde(default)]
        details: String,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let b: Body = serde_json::from_slice(body).unwrap_or_default();
    if !b.details.is_empty() {
        return format!("unauthorized: {}", b.details);
    }
    let parts: Vec<String> = b
        .errors
        .iter()
        .map(|e| {
            if e.message.is_empty() {
                e.code.to_ascii_lowercase()
            } else {
                format!("{}: {}", e.code.to_ascii_lowercase(), e.message)
            }
        })
        .collect();
    if parts.is_empty() {
        fallback.to_string()
    } else {
        parts.join(", ")
    }
}

/// A failed request, worded as Docker words it: `Get "URL": dial tcp HOST: connect:
/// connection refused`.
pub(crate) fn unreachable(url: &str, e: &reqwest::Error) -> PullError {
    let host = reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            let port = u
                .port_or_known_default()
                .map(|p| format!(":{p}"))
                .unwrap_or_default();
            format!("{}{port}", u.host_str().unwrap_or(""))
        })
        .unwrap_or_default();
    let mut io = None;
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cur {
        if let Some(i) = c.downcast_ref::<std::io::Error>() {
            io = Some(i);
        }
        cur = c.source();
    }
    let refused = {
        let mut cur: Option<&dyn std::error::Error> = Some(e);
        let mut found = None;
        while let Some(c) = cur {
            if let Some(r) = c.downcast_ref::<super::redirect::RedirectRefused>() {
                found = Some(r.to_string());
            }
            cur = c.source();
        }
        found
    };
    let detail = match io.map(std::io::Error::kind) {
        _ if refused.is_some() => refused.unwrap_or_default(),
        _ if e.is_timeout() => format!("dial tcp {host}: i/o timeout"),
        Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("dial tcp {host}: connect: connection refused")
        }
        Some(std::io::ErrorKind::ConnectionReset) => {
            format!("read tcp {host}: connection reset by peer")
        }
        _ if error_chain(e).contains("UnknownIssuer") => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .to_string()
        }
        _ if error_chain(e).contains("NotValidForName") => {
            format!("tls: failed to verify certificate: x509: certificate is not valid for {host}")
        }
        _ if error_chain(e).contains("Expired") => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
                .to_string()
        }
        _ if error_chain(e).contains(": no such host") => {
            // Looked up with the VCH's own DNS servers, which the message names.
            let chain = error_chain(e);
            let at = chain.find("lookup ").unwrap_or(0);
            format!("dial tcp: {}", &chain[at..])
        }
        _ if e.is_connect() && error_chain(e).contains("dns error") => {
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            format!("dial tcp: lookup {name}: no such host")
        }
        _ => error_chain(e),
    };
    PullError::Unreachable {
        url: url.to_string(),
        detail,
    }
}

/// An error with its causes, e.g. "error sending request: connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
