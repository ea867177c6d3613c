//! Validates SOAP messages against Exchange's own schema with `xmllint`.
//!
//! `tests/schema/soap-envelope.xsd` wraps `../shared/ews-schema/messages.xsd`, so a
//! whole envelope is checked: every element inside `soap:Body` must be declared by the
//! EWS schema and valid against it. Header blocks are skipped.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schema/soap-envelope.xsd")
}

/// Splits a body made of concatenated SOAP envelopes (a GetStreamingEvents stream)
/// into standalone documents, dropping an XML declaration.
pub fn split_envelopes(stream: &str) -> Vec<String> {
    let mut documents = Vec::new();
    let mut reader = quick_xml::Reader::from_str(stream);
    let mut depth = 0usize;
    let mut start = 0usize;
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event().expect("stream is well-formed XML") {
            quick_xml::events::Event::Start(_) => {
                if depth == 0 {
                    start = before;
                }
                depth += 1;
            }
            quick_xml::events::Event::End(_) => {
                depth -= 1;
                if depth == 0 {
                    documents.push(stream[start..reader.buffer_position() as usize].to_owned());
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    documents
}

/// Validates each document (a whole SOAP envelope) and returns xmllint's complaints,
/// one entry per invalid document, each naming the document's index.
pub fn invalid_envelopes(documents: &[String]) -> Vec<String> {
    if documents.is_empty() {
        return Vec::new();
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut paths = Vec::new();
    for (index, document) in documents.iter().enumerate() {
        let path = dir.path().join(format!("doc-{index}.xml"));
        let mut file = std::fs::File::create(&path).expect("create document file");
        file.write_all(document.as_bytes())
            .expect("write document file");
        paths.push(path);
    }
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(schema_path())
        .args(&paths)
        .output()
        .expect("xmllint is installed (Debian package libxml2-utils)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut problems = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let name = path.to_string_lossy();
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|line| line.starts_with(name.as_ref()) && !line.ends_with(" validates"))
            .collect();
        if !lines.is_empty() {
            problems.push(format!(
                "document {index} is not valid:\n{}\n---\n{}",
                lines.join("\n"),
                documents[index]
            ));
        }
    }
    problems
}

/// Panics with xmllint's complaints unless every document is a valid EWS envelope.
pub fn assert_valid_envelopes(documents: &[String]) {
    let problems = invalid_envelopes(documents);
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
