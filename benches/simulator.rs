//! Throughput of the bundled Exchange simulator over real HTTP.
//!
//! Two figures, printed as text (run with `cargo bench --bench simulator`):
//! - streamed events per second through one GetStreamingEvents response (events are
//!   published straight into the subscription, so the figure is the stream's cost:
//!   queueing, rendering envelopes, chunked HTTP, and a client reading them);
//! - items per second served by GetItem in batches of 50 ids.
//!
//! Targets: at least 20,000 events/s and 5,000 items/s on one core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use futures::StreamExt;

use booking_sync::domain::{EventKind, MailboxAddress};
use booking_sync::sim::model::{EventBatch, EventTarget, SimEvent};
use booking_sync::sim::{NewAppointment, SimConfig, SimHandle, Simulator};

const ROOM: &str = "room-001@contoso.example";
const STREAMED_EVENTS: usize = 200_000;
const EVENTS_PER_BATCH: usize = 50;
const ITEMS: usize = 2_000;
const GETITEM_BATCH: usize = 50;
const GETITEM_ROUNDS: usize = 10;

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\" \
         xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\"><soap:Header>\
         <t:RequestServerVersion Version=\"Exchange2013_SP1\"/><t:ExchangeImpersonation><t:ConnectingSID>\
         <t:PrimarySmtpAddress>{ROOM}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>\
         </soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

async fn post(client: &reqwest::Client, url: &str, body: &str) -> String {
    client
        .post(url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(body))
        .send()
        .await
        .expect("request reaches the simulator")
        .text()
        .await
        .expect("response body")
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(&text[start..end])
}

async fn subscribe(client: &reqwest::Client, url: &str) -> String {
    let response = post(
        client,
        url,
        "<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id=\"calendar\"/>\
         </t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType></t:EventTypes>\
         </m:StreamingSubscriptionRequest></m:Subscribe>",
    )
    .await;
    let start =
        response.find("SubscriptionId>").expect("subscription id") + "SubscriptionId>".len();
    let end = response[start..].find('<').expect("end of id") + start;
    response[start..end].to_owned()
}

fn synthetic_batch(sequence: usize) -> EventBatch {
    let events = (0..EVENTS_PER_BATCH)
        .map(|index| SimEvent {
            kind: EventKind::Created,
            timestamp: Utc
                .timestamp_opt(1_767_225_600, 0)
                .single()
                .unwrap_or_default(),
            target: EventTarget::Item(
                Arc::from(format!("AAMkBench{sequence:08}{index:03}")),
                Arc::from("DwAAABYAAAA="),
            ),
            parent_folder_id: Arc::from("AQMkBenchCalendar"),
            old_item: None,
            old_parent_folder_id: None,
            unread_count: None,
        })
        .collect();
    EventBatch {
        mailbox: Some(MailboxAddress::new(ROOM)),
        events,
    }
}

async fn bench_streaming(simulator: &SimHandle) -> f64 {
    let client = reqwest::Client::new();
    let url = simulator.ews_url();
    let id = subscribe(&client, &url).await;
    let response = client
        .post(&url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(envelope(&format!(
            "<m:GetStreamingEvents><m:SubscriptionIds><t:SubscriptionId>{id}</t:SubscriptionId>\
             </m:SubscriptionIds><m:ConnectionTimeout>30</m:ConnectionTimeout></m:GetStreamingEvents>"
        )))
        .send()
        .await
        .expect("stream opens");
    let reader = tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut seen = 0usize;
        let mut tail = String::new();
        const MARK: &str = "CreatedEvent>";
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("stream chunk");
            tail.push_str(&String::from_utf8_lossy(&chunk));
            seen += tail.matches(MARK).count();
            let keep = tail.len().min(MARK.len() - 1);
            let mut cut = tail.len() - keep;
            while !tail.is_char_boundary(cut) {
                cut -= 1;
            }
            tail = tail[cut..].to_owned();
            if seen / 2 >= STREAMED_EVENTS {
                return Instant::now();
            }
        }
        panic!("stream ended after {} events", seen / 2);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = Arc::clone(simulator.control().state());
    let started = Instant::now();
    for sequence in 0..STREAMED_EVENTS / EVENTS_PER_BATCH {
        state.publish(synthetic_batch(sequence));
        if sequence % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let finished = reader.await.expect("reader finishes");
    STREAMED_EVENTS as f64 / finished.duration_since(started).as_secs_f64()
}

async fn bench_get_item(simulator: &SimHandle) -> f64 {
    let control = simulator.control();
    let base = Utc
        .with_ymd_and_hms(2026, 6, 1, 8, 0, 0)
        .single()
        .unwrap_or_default();
    let mut ids = Vec::with_capacity(ITEMS);
    for index in 0..ITEMS {
        let start = base + chrono::Duration::minutes(30 * index as i64);
        let created = control
            .create_appointment(
                ROOM,
                NewAppointment {
                    subject: format!("Bench {index}"),
                    start,
                    end: start + chrono::Duration::minutes(30),
                    is_all_day: false,
                    organizer: "user-001@contoso.example".to_owned(),
                    attendees: vec!["user-002@contoso.example".to_owned()],
                    time_zone: Some("Europe/Berlin".to_owned()),
                    recurrence: None,
                    location: Some("Room 1".to_owned()),
                    uid: None,
                },
            )
            .expect("appointment created");
        ids.push(created.item_id);
    }
    let client = reqwest::Client::new();
    let url = simulator.ews_url();
    let bodies: Vec<String> = ids
        .chunks(GETITEM_BATCH)
        .map(|chunk| {
            let ids: String = chunk
                .iter()
                .map(|id| format!("<t:ItemId Id=\"{id}\"/>"))
                .collect();
            format!(
                "<m:GetItem><m:ItemShape><t:BaseShape>AllProperties</t:BaseShape></m:ItemShape>\
                 <m:ItemIds>{ids}</m:ItemIds></m:GetItem>"
            )
        })
        .collect();
    let started = Instant::now();
    let mut served = 0usize;
    for _ in 0..GETITEM_ROUNDS {
        for body in &bodies {
            let response = post(&client, &url, body).await;
            assert!(
                between(&response, "ResponseClass=\"", "\"") == Some("Success"),
                "GetItem failed: {}",
                &response[..response.len().min(600)]
            );
            served += response.matches(":CalendarItem>").count() / 2;
        }
    }
    served as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let simulator = Simulator::start(SimConfig {
            rooms: 2,
            users: 2,
            heartbeat_interval: Duration::from_secs(600),
            max_queued_events: STREAMED_EVENTS * 2,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let events_per_second = bench_streaming(&simulator).await;
        println!("simulator/streaming: {events_per_second:.0} events/s ({STREAMED_EVENTS} events, one core)");
        let items_per_second = bench_get_item(&simulator).await;
        println!("simulator/get_item: {items_per_second:.0} items/s (batches of {GETITEM_BATCH}, one core)");
        simulator.shutdown().await;
    });
}
