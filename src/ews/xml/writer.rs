//! A minimal XML writer for building SOAP requests.
//!
//! Requests are small and their shape is fixed, so a string builder that escapes
//! every text and attribute value is all that is needed. Element names are passed
//! in already prefixed (`m:GetItem`); the envelope declares the prefixes.

use std::fmt::Write as _;

/// Builds one XML document into a string.
#[derive(Debug, Default)]
pub(crate) struct XmlWriter {
    out: String,
}

impl XmlWriter {
    /// Starts a document with an XML declaration.
    pub fn new() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
        }
    }

    /// Opens `name` with attributes.
    pub fn open(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        self.tag(name, attributes);
        self.out.push('>');
        self
    }

    /// Closes `name`.
    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.out, "</{name}>");
        self
    }

    /// Writes an element without content.
    pub fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Self {
        self.tag(name, attributes);
        self.out.push_str("/>");
        self
    }

    /// Writes an element holding only (escaped) text.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name, &[]);
        escape_into(&mut self.out, text);
        self.close(name)
    }

    /// Writes (escaped) text inside the element last opened.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.out, text);
        self
    }

    /// The finished document.
    pub fn finish(self) -> String {
        self.out
    }

    fn tag(&mut self, name: &str, attributes: &[(&str, &str)]) {
        let _ = write!(self.out, "<{name}");
        for (key, value) in attributes {
            let _ = write!(self.out, " {key}=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
    }
}

/// Appends `text` with the five XML special characters escaped.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    out.push_str(&quick_xml::escape::escape(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attribute_values_are_escaped() {
        let mut writer = XmlWriter::new();
        writer
            .open("a", &[("k", "x\"<&'>")])
            .leaf("b", "1 < 2 & 3")
            .close("a");

        assert!(writer
            .finish()
            .ends_with("<a k=\"x&quot;&lt;&amp;&apos;&gt;\"><b>1 &lt; 2 &amp; 3</b></a>"));
    }
}
