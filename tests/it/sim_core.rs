//! The simulator core over real HTTP: SOAP operations, streaming, control API.
//!
//! Every SOAP response body is validated against Exchange's schema.

use std::time::Duration;

use booking_sync::sim::{SimConfig, SimHandle, Simulator};

use crate::support::xsd::assert_valid_envelopes;

const ROOM: &str = "room-001@contoso.example";

async fn start_simulator() -> SimHandle {
    Simulator::start(SimConfig {
        rooms: 3,
        users: 3,
        heartbeat_interval: Duration::from_millis(400),
        minute: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

fn envelope(impersonate: Option<&str>, body: &str) -> String {
    let impersonation = impersonate
        .map(|mailbox| {
            format!(
                "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
<soap:Header><t:RequestServerVersion Version="Exchange2013_SP1"/>{impersonation}</soap:Header>
<soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
}

async fn post_soap(sim: &SimHandle, impersonate: Option<&str>, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(sim.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(impersonate, body))
        .send()
        .await
        .expect("request is sent");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body is read"))
}

#[tokio::test]
async fn unparseable_xml_gets_a_schema_validation_fault() {
    let sim = start_simulator().await;

    let response = reqwest::Client::new()
        .post(sim.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body("<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body><oops>")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 500);
    let text = response.text().await.unwrap();
    assert!(text.contains("ErrorSchemaValidation"), "{text}");
    assert_valid_envelopes(&[text]);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_operation_and_missing_version_are_faults() {
    let sim = start_simulator().await;

    let (status, unknown) = post_soap(&sim, None, "<m:FlyToTheMoon/>").await;
    let no_version = reqwest::Client::new()
        .post(sim.ews_url())
        .body("<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><m:Unsubscribe xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"><m:SubscriptionId>x</m:SubscriptionId></m:Unsubscribe></s:Body></s:Envelope>")
        .send()
        .await
        .unwrap();

    assert_eq!(status, 500);
    assert!(unknown.contains("ErrorInvalidRequest"), "{unknown}");
    assert_eq!(no_version.status().as_u16(), 500);
    let no_version = no_version.text().await.unwrap();
    assert!(
        no_version.contains("ErrorInvalidServerVersion"),
        "{no_version}"
    );
    assert_valid_envelopes(&[unknown, no_version]);
    sim.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_answers_no_error_then_subscription_not_found() {
    let sim = start_simulator().await;
    let subscribe = r#"<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id="calendar"/></t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"#;
    let (_, subscribed) = post_soap(&sim, Some(ROOM), subscribe).await;
    let id = between(&subscribed, "SubscriptionId>", "<").to_owned();

    let unsubscribe =
        format!("<m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe>");
    let (_, first) = post_soap(&sim, Some(ROOM), &unsubscribe).await;
    let (_, second) = post_soap(&sim, Some(ROOM), &unsubscribe).await;

    assert!(first.contains("NoError"), "{first}");
    assert!(second.contains("ErrorSubscriptionNotFound"), "{second}");
    assert_valid_envelopes(&[subscribed, first, second]);
    sim.shutdown().await;
}

/// The text between the first `start` marker and the next `end` marker.
fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("{start} in {text}"));
    let to = text[from..]
        .find(end)
        .map(|i| from + i)
        .unwrap_or(text.len());
    &text[from..to]
}
