//! The one edge where vim25's XML becomes Rust values and back: responses are read into a
//! small namespace-resolved tree ([`Node`]); requests are written with [`Request`].
//!
//! Element names are kept by local name only (vim25 puts everything in one namespace), and a
//! value's `xsi:type` is found by the attribute's namespace, not its prefix: vcsim writes it
//! under a prefix of its own (`XMLSchema-instance:type`).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::{Error, MoRef};

const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// How deep a response may nest: vim25's deepest values (a VM's config) stay well within it.
const MAX_DEPTH: usize = 64;

/// An element of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The local name.
    pub name: String,
    /// Its `xsi:type`, without the type's prefix (`VirtualMachinePowerState`, `string`).
    pub xsi_type: Option<String>,
    /// Its `type` attribute, which a managed object reference carries.
    pub ref_type: Option<String>,
    /// Its text, unescaped (empty for elements with children).
    pub text: String,
    pub children: Vec<Node>,
}

impl Node {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children named `name`, in order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The node at `path` below this one, each step the first child of that name.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, step| n.child(step))
    }

    /// The text of the child at `path`.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.at(path).map(|n| n.text.as_str())
    }

    /// This node read as a managed object reference.
    pub fn moref(&self) -> Option<MoRef> {
        let kind = self.ref_type.clone()?;
        Some(MoRef {
            kind,
            value: self.text.clone(),
        })
    }

    /// The type of the value: its `xsi:type`, else its name.
    pub fn value_type(&self) -> &str {
        self.xsi_type.as_deref().unwrap_or(&self.name)
    }
}

/// Reads a whole document into its root element.
pub fn parse(doc: &[u8]) -> Result<Node, Error> {
    let mut reader = NsReader::from_reader(doc);
    let mut stack: Vec<Node> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader.read_event_into(&mut buf).map_err(bad_xml)?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Error::Protocol(format!(
                        "the response nests deeper than {MAX_DEPTH} elements"
                    )));
                }
                stack.push(element(&reader, &e)?);
            }
            Event::Empty(e) => {
                let node = element(&reader, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.decode().map_err(bad_xml)?;
                    top.text.push_str(&unescape(&text)?);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = r.decode().map_err(bad_xml)?;
                    top.text.push_str(&unescape(&format!("&{name};"))?);
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| bad_xml("an unmatched end tag"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Eof => return Err(bad_xml("the document ends early")),
            _ => {}
        }
        buf.clear();
    }
}

fn unescape(text: &str) -> Result<String, Error> {
    quick_xml::escape::unescape(text)
        .map(|s| s.into_owned())
        .map_err(bad_xml)
}

fn element(reader: &NsReader<&[u8]>, e: &quick_xml::events::BytesStart) -> Result<Node, Error> {
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut node = Node {
        name,
        ..Node::default()
    };
    for attr in e.attributes() {
        let attr = attr.map_err(bad_xml)?;
        let (ns, local) = reader.resolve_attribute(attr.key);
        let value = attr.unescape_value().map_err(bad_xml)?.into_owned();
        match (ns, local.as_ref()) {
            (ResolveResult::Bound(ns), b"type") if ns.as_ref() == XSI => {
                let ty = value.rsplit(':').next().unwrap_or(&value).to_string();
                node.xsi_type = Some(ty);
            }
            (ResolveResult::Unbound, b"type") => node.ref_type = Some(value),
            _ => {}
        }
    }
    Ok(node)
}

fn bad_xml(e: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("the response is not XML vim25 writes: {e}"))
}

/// Escapes text for an element's content or an attribute.
pub fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

/// A request body: the method's element and its arguments, written in order.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    body: String,
    open: Vec<String>,
}

impl Request {
    /// A call of `method` on `this`.
    pub fn new(method: &str, this: &MoRef) -> Request {
        let mut r = Request {
            method: method.to_string(),
            body: String::new(),
            open: Vec::new(),
        };
        r.moref("_this", this);
        r
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    /// `<name>text</name>`.
    pub fn text(&mut self, name: &str, text: &str) -> &mut Self {
        self.body
            .push_str(&format!("<{name}>{}</{name}>", escape(text)));
        self
    }

    /// `<name xsi:type="ty">text</name>`: a value of a declared `anyType`.
    pub fn typed_text(&mut self, name: &str, ty: &str, text: &str) -> &mut Self {
        self.body.push_str(&format!(
            "<{name} xsi:type=\"{ty}\">{}</{name}>",
            escape(text)
        ));
        self
    }

    /// A managed object reference argument.
    pub fn moref(&mut self, name: &str, r: &MoRef) -> &mut Self {
        self.body.push_str(&format!(
            "<{name} type=\"{}\">{}</{name}>",
            escape(&r.kind),
            escape(&r.value)
        ));
        self
    }

    /// Opens `<name>`; [`Request::close`] ends it.
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.body.push_str(&format!("<{name}>"));
        self.open.push(name.to_string());
        self
    }

    /// Opens `<name xsi:type="ty">`, a value of a subtype of what the field declares.
    pub fn open_typed(&mut self, name: &str, ty: &str) -> &mut Self {
        self.body.push_str(&format!("<{name} xsi:type=\"{ty}\">"));
        self.open.push(name.to_string());
        self
    }

    /// Closes the element opened last.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.body.push_str(&format!("</{name}>"));
        }
        self
    }

    /// The whole SOAP envelope.
    pub fn envelope(&self) -> String {
        let mut body = self.body.clone();
        for name in self.open.iter().rev() {
            body.push_str(&format!("</{name}>"));
        }
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?>"#,
                r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
                r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" "#,
                r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
                r#"<soapenv:Body><{m} xmlns="urn:vim25">{b}</{m}></soapenv:Body></soapenv:Envelope>"#
            ),
            m = self.method,
            b = body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xsi_type_is_found_by_namespace_whatever_its_prefix() {
        let doc = br#"<a xmlns="urn:vim25" xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance">
            <val XMLSchema-instance:type="xsd:string">on &amp; off</val>
            <obj type="VirtualMachine">vm-1</obj><e/></a>"#;
        let a = parse(doc).unwrap();
        let val = a.child("val").unwrap();
        assert_eq!(val.xsi_type.as_deref(), Some("string"));
        assert_eq!(val.text, "on & off");
        assert_eq!(
            a.child("obj").unwrap().moref(),
            Some(MoRef::new("VirtualMachine", "vm-1"))
        );
        assert!(a.child("e").is_some());
    }

    #[test]
    fn a_document_that_nests_too_deep_or_ends_early_is_refused() {
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(deep.as_bytes()), Err(Error::Protocol(_))));
        assert!(parse(b"<a><b></b>").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn requests_escape_their_text_and_close_what_they_opened() {
        let mut r = Request::new("Login", &MoRef::new("SessionManager", "SessionManager"));
        r.text("userName", "a<b")
            .open("x")
            .typed_text("v", "xsd:string", "&");
        let env = r.envelope();
        assert!(env.contains(r#"<_this type="SessionManager">SessionManager</_this>"#));
        assert!(env.contains("<userName>a&lt;b</userName>"));
        assert!(env.contains(r#"<x><v xsi:type="xsd:string">&amp;</v></x></Login>"#));
        let parsed = parse(env.as_bytes()).unwrap();
        let login = parsed.at(&["Body", "Login"]).unwrap();
        assert_eq!(login.text_at(&["userName"]), Some("a<b"));
    }
}
