//! Parsing throughput of the two hot EWS paths: a GetItem response of 100 calendar
//! items (items/s) and a GetStreamingEvents body of 1000 notifications (events/s).
//! Both inputs are built from the parser test fixtures.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use booking_sync::ews::responses::parse_get_item;
use booking_sync::ews::StreamDecoder;

const GET_ITEM: &str = include_str!("../tests/fixtures/ews/get_item_single_and_missing.xml");
const STREAM: &str = include_str!("../tests/fixtures/ews/streaming_events.xml");
const ITEMS: usize = 100;
const NOTIFICATIONS: usize = 1000;
/// Events in the notification the stream repeats.
const EVENTS_PER_NOTIFICATION: usize = 2;
/// Roughly the size of the chunks an HTTP body arrives in.
const CHUNK_BYTES: usize = 4096;

/// The fixture's response with its successful message repeated `count` times.
fn get_item_response(count: usize) -> String {
    let open = "<GetItemResponseMessage ResponseClass=\"Success\">";
    let close = "</GetItemResponseMessage>";
    let start = GET_ITEM.find(open).expect("fixture has a success message");
    let end = GET_ITEM[start..].find(close).expect("message is closed") + start + close.len();
    let list_end = GET_ITEM
        .find("</ResponseMessages>")
        .expect("fixture has a message list");
    format!(
        "{}{}{}",
        &GET_ITEM[..start],
        GET_ITEM[start..end].repeat(count),
        &GET_ITEM[list_end..]
    )
}

/// The fixture's default-namespace envelope (one notification) repeated `count` times.
fn notification_stream(count: usize) -> String {
    let open = "<Envelope xmlns=";
    let close = "</Envelope>";
    let start = STREAM
        .find(open)
        .expect("fixture has a default-namespace envelope");
    let end = STREAM[start..].find(close).expect("envelope is closed") + start + close.len();
    STREAM[start..end].repeat(count)
}

fn parse_get_item_response(c: &mut Criterion) {
    let body = get_item_response(ITEMS);
    let mut group = c.benchmark_group("ews_get_item");
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function(BenchmarkId::new("calendar_items", ITEMS), |b| {
        b.iter(|| {
            let items = parse_get_item(body.as_bytes()).expect("valid response");
            assert_eq!(items.len(), ITEMS);
            items
        })
    });
    group.finish();
}

fn decode_notification_stream(c: &mut Criterion) {
    let body = notification_stream(NOTIFICATIONS);
    let mut group = c.benchmark_group("ews_stream");
    group.throughput(Throughput::Elements(
        (NOTIFICATIONS * EVENTS_PER_NOTIFICATION) as u64,
    ));
    group.bench_function(BenchmarkId::new("events", NOTIFICATIONS), |b| {
        b.iter(|| {
            let mut decoder = StreamDecoder::new();
            let mut events = 0;
            for chunk in body.as_bytes().chunks(CHUNK_BYTES) {
                decoder.push(chunk);
                while let Some(message) = decoder.next_message().expect("valid stream") {
                    events += message
                        .notifications
                        .iter()
                        .map(|notification| notification.events.len())
                        .sum::<usize>();
                }
            }
            assert_eq!(events, NOTIFICATIONS * EVENTS_PER_NOTIFICATION);
            events
        })
    });
    group.finish();
}

criterion_group!(benches, parse_get_item_response, decode_notification_stream);
criterion_main!(benches);
