//! The schema harness itself: it must accept a valid message and reject an invalid one.

use crate::support::xsd::{invalid_envelopes, split_envelopes};

const VALID: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><t:RequestServerVersion xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types" Version="Exchange2013_SP1"/></s:Header><s:Body><m:Unsubscribe xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:SubscriptionId>abc</m:SubscriptionId></m:Unsubscribe></s:Body></s:Envelope>"#;

const INVALID: &str = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><m:Unsubscribe xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:Nonsense/></m:Unsubscribe></s:Body></s:Envelope>"#;

#[test]
fn schema_harness_accepts_a_valid_message_and_rejects_an_invalid_one() {
    let problems = invalid_envelopes(&[VALID.to_owned(), INVALID.to_owned()]);

    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("document 1"), "{}", problems[0]);
}

#[test]
fn stream_splitter_yields_each_envelope() {
    let stream = format!("<?xml version=\"1.0\"?>{VALID}\r\n{VALID}");

    let documents = split_envelopes(&stream);

    assert_eq!(documents, vec![VALID.to_owned(), VALID.to_owned()]);
}

#[test]
fn assert_valid_envelopes_passes_on_valid_messages() {
    crate::support::xsd::assert_valid_envelopes(&[VALID.to_owned()]);
}
