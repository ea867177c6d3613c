//! SOAP plumbing of the simulator: request parsing and response writing.
//!
//! Requests are parsed into a small namespace-resolved element tree ([`Element`]), so
//! operations look children up by (namespace, local name) and never by prefix. The
//! parser refuses DOCTYPE declarations and caps nesting depth, so hostile input costs
//! little. Responses are written by [`XmlWriter`], which varies namespace prefixes from
//! one response to the next so clients cannot come to depend on them.
//!
//! This module knows nothing about the calendar model or about HTTP routing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// The SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The EWS messages namespace.
pub const NS_MESSAGES: &str = "http://schemas.microsoft.com/exchange/services/2006/messages";
/// The EWS types namespace.
pub const NS_TYPES: &str = "http://schemas.microsoft.com/exchange/services/2006/types";
/// The EWS errors namespace (SOAP fault detail).
pub const NS_ERRORS: &str = "http://schemas.microsoft.com/exchange/services/2006/errors";

/// How EWS writes instants: UTC, whole seconds.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// The content type of every SOAP response.
pub const CONTENT_TYPE_XML: &str = "text/xml; charset=utf-8";

/// Deepest element nesting a request may have.
const MAX_DEPTH: usize = 64;
/// Most elements a request may have.
const MAX_ELEMENTS: usize = 100_000;

/// The namespaces the simulator distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    /// SOAP envelope.
    Soap,
    /// EWS messages.
    Messages,
    /// EWS types.
    Types,
    /// Any other namespace, or none.
    Other,
}

impl Ns {
    fn from_uri(uri: &[u8]) -> Self {
        match uri {
            b"http://schemas.xmlsoap.org/soap/envelope/" => Self::Soap,
            b"http://schemas.microsoft.com/exchange/services/2006/messages" => Self::Messages,
            b"http://schemas.microsoft.com/exchange/services/2006/types" => Self::Types,
            _ => Self::Other,
        }
    }
}

/// One parsed element: namespace, local name, attributes (by local name), text and children.
#[derive(Debug, Clone)]
pub struct Element {
    /// Namespace of the element.
    pub ns: Ns,
    /// Local name.
    pub name: String,
    /// Attributes as (local name, unescaped value).
    pub attributes: Vec<(String, String)>,
    /// Concatenated text content (trimmed).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this namespace and local name.
    pub fn child(&self, ns: Ns, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|child| child.ns == ns && child.name == name)
    }

    /// The first child with this local name in the messages or the types namespace.
    pub fn child_mt(&self, name: &str) -> Option<&Element> {
        self.children
            .iter()
            .find(|child| child.name == name && matches!(child.ns, Ns::Messages | Ns::Types))
    }

    /// Every child with this namespace and local name.
    pub fn children_named<'a>(
        &'a self,
        ns: Ns,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |child| child.ns == ns && child.name == name)
    }

    /// The value of an attribute by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A parsed SOAP request: its header facts and the operation element of its body.
#[derive(Debug, Clone)]
pub struct SoapRequest {
    /// `RequestServerVersion/@Version`, when present.
    pub server_version: Option<String>,
    /// The SMTP address (or principal name) of `ExchangeImpersonation/ConnectingSID`.
    pub impersonation: Option<String>,
    /// The whole `soap:Header` element, when present.
    pub header: Option<Element>,
    /// The first element of `soap:Body`: the operation.
    pub operation: Element,
}

/// Why a request could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed XML, a DOCTYPE, too deep, or not a SOAP envelope with a body.
    #[error("request is not a valid SOAP envelope: {0}")]
    Invalid(String),
}

/// Parses a SOAP request envelope.
///
/// # Errors
///
/// [`ParseError::Invalid`] for malformed XML, any DOCTYPE, nesting deeper than 64, or a
/// document that is not a SOAP envelope with a non-empty body.
pub fn parse_request(body: &[u8]) -> Result<SoapRequest, ParseError> {
    let root = parse_tree(body)?;
    if root.ns != Ns::Soap || root.name != "Envelope" {
        return Err(ParseError::Invalid("root is not soap:Envelope".into()));
    }
    let header = root.child(Ns::Soap, "Header").cloned();
    let body = root
        .child(Ns::Soap, "Body")
        .ok_or_else(|| ParseError::Invalid("no soap:Body".into()))?;
    let operation = body
        .children
        .first()
        .cloned()
        .ok_or_else(|| ParseError::Invalid("empty soap:Body".into()))?;
    let server_version = header
        .as_ref()
        .and_then(|h| h.child(Ns::Types, "RequestServerVersion"))
        .and_then(|v| v.attr("Version"))
        .map(str::to_owned);
    let impersonation = header
        .as_ref()
        .and_then(|h| h.child(Ns::Types, "ExchangeImpersonation"))
        .and_then(|i| i.child(Ns::Types, "ConnectingSID"))
        .and_then(|sid| sid.children.first())
        .map(|value| value.text.clone());
    Ok(SoapRequest {
        server_version,
        impersonation,
        header,
        operation,
    })
}

/// Parses any XML document into an element tree.
///
/// # Errors
///
/// [`ParseError::Invalid`] as for [`parse_request`].
pub fn parse_tree(body: &[u8]) -> Result<Element, ParseError> {
    let mut reader = NsReader::from_reader(body);
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut buf = Vec::new();
    loop {
        let (resolved, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|err| ParseError::Invalid(err.to_string()))?;
        let is_empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(start) | Event::Empty(start) => {
                count += 1;
                if stack.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(ParseError::Invalid("document too deep or too large".into()));
                }
                let ns = match resolved {
                    ResolveResult::Bound(ns) => Ns::from_uri(ns.as_ref()),
                    _ => Ns::Other,
                };
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let mut attributes = Vec::new();
                for attribute in start.attributes() {
                    let attribute =
                        attribute.map_err(|err| ParseError::Invalid(err.to_string()))?;
                    let key = attribute.key;
                    if key.as_ref().starts_with(b"xmlns") {
                        continue;
                    }
                    let value = attribute
                        .unescape_value()
                        .map_err(|err| ParseError::Invalid(err.to_string()))?;
                    attributes.push((
                        String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                let element = Element {
                    ns,
                    name,
                    attributes,
                    text: String::new(),
                    children: Vec::new(),
                };
                if is_empty {
                    if stack.is_empty() {
                        return Ok(element);
                    }
                    attach(&mut stack, element);
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| ParseError::Invalid("unbalanced end tag".into()))?;
                if stack.is_empty() {
                    return Ok(element);
                }
                attach(&mut stack, element);
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    let text = text
                        .unescape()
                        .map_err(|err| ParseError::Invalid(err.to_string()))?;
                    top.text.push_str(&text);
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::DocType(_) => {
                return Err(ParseError::Invalid("DOCTYPE is not allowed".into()));
            }
            Event::Eof => return Err(ParseError::Invalid("unexpected end of document".into())),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        buf.clear();
    }
}

fn attach(stack: &mut [Element], element: Element) {
    if let Some(parent) = stack.last_mut() {
        parent.children.push(element);
    }
}

/// The namespace prefix style of one response.
#[derive(Debug, Clone, Copy)]
struct PrefixStyle {
    envelope: &'static str,
    messages: &'static str,
    types: &'static str,
}

const STYLES: [PrefixStyle; 3] = [
    PrefixStyle {
        envelope: "s",
        messages: "m",
        types: "t",
    },
    PrefixStyle {
        envelope: "soap",
        messages: "m",
        types: "t",
    },
    PrefixStyle {
        envelope: "s",
        messages: "",
        types: "t",
    },
];

static NEXT_STYLE: AtomicUsize = AtomicUsize::new(0);

/// Builds one SOAP response envelope as text, in a prefix style chosen per response.
#[derive(Debug)]
pub struct XmlWriter {
    out: String,
    style: PrefixStyle,
    open: Vec<String>,
}

impl XmlWriter {
    /// Starts an envelope (declaration only when `declaration`) with a ServerVersionInfo header.
    pub fn envelope(declaration: bool) -> Self {
        let index = NEXT_STYLE.fetch_add(1, Ordering::Relaxed) % STYLES.len();
        Self::with_style(declaration, index)
    }

    /// Starts an envelope in an explicit prefix style (0..3), for deterministic output.
    pub fn with_style(declaration: bool, style: usize) -> Self {
        let style = STYLES[style % STYLES.len()];
        let mut out = String::with_capacity(2048);
        if declaration {
            out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
        }
        let env = style.envelope;
        let _ = write!(
            out,
            "<{env}:Envelope xmlns:{env}=\"{NS_SOAP}\"><{env}:Header>\
             <h:ServerVersionInfo xmlns:h=\"{NS_TYPES}\" MajorVersion=\"15\" MinorVersion=\"20\" \
             MajorBuildNumber=\"8000\" MinorBuildNumber=\"12\" Version=\"V2018_01_08\"/></{env}:Header><{env}:Body>"
        );
        Self {
            out,
            style,
            open: Vec::new(),
        }
    }

    /// The prefix of the types namespace in this response.
    pub fn types_prefix(&self) -> &'static str {
        self.style.types
    }

    /// The text written so far, for callers that write hot paths by hand.
    pub fn raw(&mut self) -> &mut String {
        &mut self.out
    }

    /// Opens the response element (messages namespace) and declares the prefixes.
    pub fn open_response(&mut self, name: &str) {
        let qualified = self.qualify_m(name);
        let declaration = if self.style.messages.is_empty() {
            format!("xmlns=\"{NS_MESSAGES}\"")
        } else {
            format!("xmlns:{}=\"{NS_MESSAGES}\"", self.style.messages)
        };
        let _ = write!(
            self.out,
            "<{qualified} {declaration} xmlns:{}=\"{NS_TYPES}\">",
            self.style.types
        );
        self.open.push(qualified);
    }

    fn qualify_m(&self, name: &str) -> String {
        if self.style.messages.is_empty() {
            name.to_owned()
        } else {
            format!("{}:{name}", self.style.messages)
        }
    }

    fn qualify_t(&self, name: &str) -> String {
        format!("{}:{name}", self.style.types)
    }

    /// Opens a messages-namespace element with attributes.
    pub fn open_m(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let qualified = self.qualify_m(name);
        self.open_qualified(qualified, attributes);
    }

    /// Opens a types-namespace element with attributes.
    pub fn open_t(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let qualified = self.qualify_t(name);
        self.open_qualified(qualified, attributes);
    }

    fn open_qualified(&mut self, qualified: String, attributes: &[(&str, &str)]) {
        self.out.push('<');
        self.out.push_str(&qualified);
        self.push_attributes(attributes);
        self.out.push('>');
        self.open.push(qualified);
    }

    fn push_attributes(&mut self, attributes: &[(&str, &str)]) {
        for (key, value) in attributes {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
    }

    /// Closes the most recently opened element.
    pub fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.out.push_str("</");
            self.out.push_str(&name);
            self.out.push('>');
        }
    }

    /// Writes `<m:name>text</m:name>`.
    pub fn text_m(&mut self, name: &str, text: &str) {
        let qualified = self.qualify_m(name);
        self.text_qualified(&qualified, text);
    }

    /// Writes `<t:name>text</t:name>`.
    pub fn text_t(&mut self, name: &str, text: &str) {
        let qualified = self.qualify_t(name);
        self.text_qualified(&qualified, text);
    }

    fn text_qualified(&mut self, qualified: &str, text: &str) {
        let _ = write!(self.out, "<{qualified}>");
        escape_into(&mut self.out, text);
        let _ = write!(self.out, "</{qualified}>");
    }

    /// Writes an empty types-namespace element with attributes.
    pub fn empty_t(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let qualified = self.qualify_t(name);
        self.out.push('<');
        self.out.push_str(&qualified);
        self.push_attributes(attributes);
        self.out.push_str("/>");
    }

    /// Writes an empty messages-namespace element with attributes.
    pub fn empty_m(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let qualified = self.qualify_m(name);
        self.out.push('<');
        self.out.push_str(&qualified);
        self.push_attributes(attributes);
        self.out.push_str("/>");
    }

    /// Writes the start of a response message with its class, code and error details.
    pub fn open_message(&mut self, name: &str, outcome: &MessageOutcome) {
        match outcome {
            MessageOutcome::Success => {
                self.open_m(name, &[("ResponseClass", "Success")]);
                self.text_m("ResponseCode", "NoError");
            }
            MessageOutcome::Error { code, text } => {
                self.open_m(name, &[("ResponseClass", "Error")]);
                self.text_m("MessageText", text);
                self.text_m("ResponseCode", code);
                self.text_m("DescriptiveLinkKey", "0");
            }
        }
    }

    /// Closes every open element and the envelope, returning the text.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        let env = self.style.envelope;
        let _ = write!(self.out, "</{env}:Body></{env}:Envelope>");
        self.out
    }
}

/// The outcome of one response message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// `ResponseClass="Success"`, `NoError`.
    Success,
    /// `ResponseClass="Error"` with a code and message text.
    Error {
        /// The EWS response code, e.g. `ErrorItemNotFound`.
        code: &'static str,
        /// The message text.
        text: String,
    },
}

impl MessageOutcome {
    /// An error outcome.
    pub fn error(code: &'static str, text: impl Into<String>) -> Self {
        Self::Error {
            code,
            text: text.into(),
        }
    }
}

/// Escapes text for element content and attribute values.
pub fn escape_into(out: &mut String, text: &str) {
    out.push_str(&quick_xml::escape::escape(text));
}

/// An HTTP 200 SOAP response with the given envelope text.
pub fn xml_response(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE_XML)],
        body,
    )
        .into_response()
}

/// Builds the envelope text of a SOAP fault (protocol doc section 2.4).
///
/// `back_off_ms` adds `MessageXml/Value Name="BackOffMilliseconds"` (for ErrorServerBusy).
pub fn fault_envelope(code: &str, message: &str, back_off_ms: Option<u64>) -> String {
    let index = NEXT_STYLE.fetch_add(1, Ordering::Relaxed) % 2;
    let env = STYLES[index].envelope;
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "<{env}:Envelope xmlns:{env}=\"{NS_SOAP}\"><{env}:Body><{env}:Fault>\
         <faultcode xmlns:a=\"{NS_TYPES}\">a:{code}</faultcode><faultstring xml:lang=\"en-US\">"
    );
    escape_into(&mut out, message);
    let _ = write!(
        out,
        "</faultstring><detail><e:ResponseCode xmlns:e=\"{NS_ERRORS}\">{code}</e:ResponseCode>\
         <e:Message xmlns:e=\"{NS_ERRORS}\">"
    );
    escape_into(&mut out, message);
    out.push_str("</e:Message>");
    if let Some(back_off) = back_off_ms {
        let _ = write!(
            out,
            "<t:MessageXml xmlns:t=\"{NS_TYPES}\"><t:Value Name=\"BackOffMilliseconds\">{back_off}</t:Value></t:MessageXml>"
        );
    }
    let _ = write!(out, "</detail></{env}:Fault></{env}:Body></{env}:Envelope>");
    out
}

/// An HTTP 500 SOAP fault response.
pub fn fault_response(code: &str, message: &str, back_off_ms: Option<u64>) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, CONTENT_TYPE_XML)],
        fault_envelope(code, message, back_off_ms),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"<?xml version="1.0"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>
   <t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>room-001@contoso.example</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>
  </soap:Header>
  <soap:Body><Unsubscribe xmlns="http://schemas.microsoft.com/exchange/services/2006/messages"><SubscriptionId>a&amp;b</SubscriptionId></Unsubscribe></soap:Body>
</soap:Envelope>"#;

    #[test]
    fn request_header_and_operation_are_found_by_namespace() {
        let request = parse_request(REQUEST.as_bytes()).unwrap();

        assert_eq!(request.server_version.as_deref(), Some("Exchange2013_SP1"));
        assert_eq!(
            request.impersonation.as_deref(),
            Some("room-001@contoso.example")
        );
        assert_eq!(request.operation.ns, Ns::Messages);
        assert_eq!(request.operation.name, "Unsubscribe");
        let id = request
            .operation
            .child(Ns::Messages, "SubscriptionId")
            .unwrap();
        assert_eq!(id.text, "a&b");
    }

    #[test]
    fn doctype_and_garbage_are_rejected() {
        let doctype = r#"<!DOCTYPE x [<!ENTITY a "b">]><x/>"#;

        assert!(parse_request(doctype.as_bytes()).is_err());
        assert!(parse_request(b"<not xml").is_err());
        assert!(parse_request(b"").is_err());
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);

        assert!(parse_tree(deep.as_bytes()).is_err());
    }

    #[test]
    fn writer_output_parses_back_in_every_style() {
        for style in 0..3 {
            let mut writer = XmlWriter::with_style(false, style);
            writer.open_response("UnsubscribeResponse");
            writer.open_m("ResponseMessages", &[]);
            writer.open_message(
                "UnsubscribeResponseMessage",
                &MessageOutcome::error("ErrorSubscriptionNotFound", "gone <now>"),
            );
            let text = writer.finish();

            let tree = parse_tree(text.as_bytes()).unwrap();
            let body = tree.child(Ns::Soap, "Body").unwrap();
            let response = body.child(Ns::Messages, "UnsubscribeResponse").unwrap();
            let message = &response.children[0].children[0];
            assert_eq!(message.attr("ResponseClass"), Some("Error"));
            assert_eq!(message.children[0].text, "gone <now>");
        }
    }
}
