//! A small, bounded element tree built from one XML document.
//!
//! Responses are read into this tree first so that the EWS parsers can look children
//! up by (namespace, local name) in any order and ignore what they do not know. The
//! builder refuses DOCTYPE declarations (no entity expansion, no external entities),
//! caps the nesting depth and the size of any single text or attribute value, and
//! records each element's namespace as one of the few EWS namespaces.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::names::{NS_AUTODISCOVER, NS_ERRORS, NS_MESSAGES, NS_SOAP, NS_TYPES};

/// Deepest element nesting accepted in a response.
pub(crate) const MAX_DEPTH: usize = 64;
/// Largest single text node or attribute value accepted, in bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 1 << 20;

/// The namespace of an element, reduced to what the parsers distinguish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    Soap,
    Messages,
    Types,
    Errors,
    Autodiscover,
    /// No namespace (the SOAP fault's `faultcode`, `faultstring`, `detail`).
    None,
    /// Any other namespace, or an undeclared prefix.
    Other,
}

impl Ns {
    fn from_resolved(resolved: &ResolveResult<'_>) -> Self {
        match resolved {
            ResolveResult::Bound(namespace) => match namespace.as_ref() {
                uri if uri == NS_SOAP.as_bytes() => Self::Soap,
                uri if uri == NS_MESSAGES.as_bytes() => Self::Messages,
                uri if uri == NS_TYPES.as_bytes() => Self::Types,
                uri if uri == NS_ERRORS.as_bytes() => Self::Errors,
                uri if uri == NS_AUTODISCOVER.as_bytes() => Self::Autodiscover,
                _ => Self::Other,
            },
            ResolveResult::Unbound => Self::None,
            ResolveResult::Unknown(_) => Self::Other,
        }
    }
}

/// One element: its name, unprefixed attributes, concatenated text and children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub ns: Ns,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// Whether this element is `name` in namespace `ns`.
    pub fn is(&self, ns: Ns, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The first child named `name` in namespace `ns`.
    pub fn child(&self, ns: Ns, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.is(ns, name))
    }

    /// Every child named `name` in namespace `ns`.
    pub fn children_named<'a>(
        &'a self,
        ns: Ns,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |child| child.is(ns, name))
    }

    /// The trimmed text of the first child named `name`, if present.
    pub fn child_text(&self, ns: Ns, name: &str) -> Option<&str> {
        self.child(ns, name).map(|child| child.text.trim())
    }

    /// The value of the unprefixed attribute `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Takes the first child named `name` in namespace `ns` out of this element.
    pub fn take_child(self, ns: Ns, name: &str) -> Option<Element> {
        self.children.into_iter().find(|child| child.is(ns, name))
    }

    /// Follows a path of child names in one namespace.
    pub fn path(&self, ns: Ns, names: &[&str]) -> Option<&Element> {
        names
            .iter()
            .try_fold(self, |element, name| element.child(ns, name))
    }
}

/// Why a document could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TreeError {
    #[error("document type declarations are not accepted")]
    Doctype,
    #[error("elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("a text or attribute value exceeds {MAX_TEXT_BYTES} bytes")]
    TooLarge,
    #[error("document has no root element")]
    Empty,
    #[error("document ends inside an element")]
    Truncated,
    #[error("content after the root element")]
    TrailingContent,
    #[error("not well-formed xml: {0}")]
    Syntax(String),
}

/// Parses one complete XML document into its root element.
pub(crate) fn parse_document(bytes: &[u8]) -> Result<Element, TreeError> {
    let mut reader = NsReader::from_reader(bytes);
    reader.config_mut().expand_empty_elements = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|err| TreeError::Syntax(err.to_string()))?;
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(TreeError::TrailingContent);
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(TreeError::TooDeep);
                }
                let element = start_element(Ns::from_resolved(&resolved), &start)?;
                stack.push(element);
            }
            Event::End(_) => {
                let element = stack.pop().ok_or(TreeError::TrailingContent)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(text) => {
                let value = text
                    .unescape()
                    .map_err(|err| TreeError::Syntax(err.to_string()))?;
                append_text(&mut stack, &root, &value)?;
            }
            Event::CData(data) => {
                let value = std::str::from_utf8(&data)
                    .map_err(|err| TreeError::Syntax(err.to_string()))?
                    .to_owned();
                append_text(&mut stack, &root, &value)?;
            }
            Event::DocType(_) => return Err(TreeError::Doctype),
            Event::Eof => break,
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(TreeError::Truncated);
    }
    root.ok_or(TreeError::Empty)
}

fn start_element(ns: Ns, start: &BytesStart<'_>) -> Result<Element, TreeError> {
    let name = std::str::from_utf8(start.local_name().as_ref())
        .map_err(|err| TreeError::Syntax(err.to_string()))?
        .to_owned();
    let mut attributes = Vec::new();
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|err| TreeError::Syntax(err.to_string()))?;
        if attribute.value.len() > MAX_TEXT_BYTES {
            return Err(TreeError::TooLarge);
        }
        // Namespace declarations and qualified attributes (xml:lang) are not data.
        if attribute.key.as_namespace_binding().is_some() || attribute.key.prefix().is_some() {
            continue;
        }
        let key = std::str::from_utf8(attribute.key.local_name().as_ref())
            .map_err(|err| TreeError::Syntax(err.to_string()))?
            .to_owned();
        let value = attribute
            .unescape_value()
            .map_err(|err| TreeError::Syntax(err.to_string()))?;
        attributes.push((key, value.into_owned()));
    }
    Ok(Element {
        ns,
        name,
        attributes,
        text: String::new(),
        children: Vec::new(),
    })
}

fn append_text(
    stack: &mut [Element],
    root: &Option<Element>,
    value: &str,
) -> Result<(), TreeError> {
    match stack.last_mut() {
        Some(element) => {
            if element.text.len() + value.len() > MAX_TEXT_BYTES {
                return Err(TreeError::TooLarge);
            }
            element.text.push_str(value);
            Ok(())
        }
        // Whitespace around the root element is allowed; anything else is not.
        None if value
            .trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
            .is_empty() =>
        {
            Ok(())
        }
        None if root.is_some() => Err(TreeError::TrailingContent),
        None => Err(TreeError::Syntax("text before the root element".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_matched_by_namespace_not_prefix() {
        let document = br#"<a:Envelope xmlns:a="http://schemas.xmlsoap.org/soap/envelope/"><Body xmlns="http://schemas.xmlsoap.org/soap/envelope/"><x:Thing xmlns:x="urn:other" Id="1"/></Body></a:Envelope>"#;

        let root = parse_document(document).expect("valid document");

        assert!(root.is(Ns::Soap, "Envelope"));
        let body = root.child(Ns::Soap, "Body").expect("body");
        assert_eq!(body.children[0].ns, Ns::Other);
        assert_eq!(body.children[0].attribute("Id"), Some("1"));
    }

    #[test]
    fn doctype_is_rejected_before_any_entity_is_expanded() {
        let document = br#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><a>&lol;</a>"#;

        assert_eq!(parse_document(document), Err(TreeError::Doctype));
    }

    #[test]
    fn nesting_beyond_the_depth_cap_is_rejected() {
        let document = format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        );

        assert_eq!(parse_document(document.as_bytes()), Err(TreeError::TooDeep));
    }

    #[test]
    fn a_truncated_document_is_rejected() {
        assert_eq!(parse_document(b"<a><b>text</b>"), Err(TreeError::Truncated));
    }

    #[test]
    fn an_oversized_text_node_is_rejected() {
        let document = format!("<a>{}</a>", "x".repeat(MAX_TEXT_BYTES + 1));

        assert_eq!(
            parse_document(document.as_bytes()),
            Err(TreeError::TooLarge)
        );
    }

    #[test]
    fn escaped_text_and_cdata_are_decoded() {
        let root = parse_document(b"<a>x &amp; y<![CDATA[ <z>]]></a>").expect("valid document");

        assert_eq!(root.text, "x & y <z>");
    }
}
