//! The EWS client against a scripted HTTP server on loopback: headers, affinity,
//! streaming across chunk boundaries, errors by HTTP status and SOAP fault, the
//! concurrency cap and the request timeout.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use booking_sync::domain::{ItemId, MailboxAddress, SubscriptionId, SyncState};
use booking_sync::ews::{
    Affinity, ConnectionStatus, EwsAuth, EwsClient, EwsConfig, EwsError, ItemError,
};
use futures::StreamExt;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

const SUBSCRIBE_OK: &str = include_str!("../fixtures/ews/subscribe_success.xml");
const SERVER_BUSY_FAULT: &str = include_str!("../fixtures/ews/fault_server_busy.xml");
const GET_ITEM: &str = include_str!("../fixtures/ews/get_item_single_and_missing.xml");
const SYNC_PAGE: &str = include_str!("../fixtures/ews/sync_folder_items_page.xml");
const STREAM: &str = include_str!("../fixtures/ews/streaming_events.xml");
const UNSUBSCRIBE_GONE: &str = include_str!("../fixtures/ews/unsubscribe_not_found.xml");
const AUTODISCOVER: &str = include_str!("../fixtures/ews/autodiscover_user_settings.xml");
const CALENDAR_VIEW: &str = include_str!("../fixtures/ews/find_item_calendar_view.xml");
const BACKEND_COOKIE: &str =
    "X-BackEndOverrideCookie=AM6PR04MB1234~1593847261; path=/; secure; HttpOnly";

/// What the fake server answers to the next request.
enum Reply {
    Body {
        status: StatusCode,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
    /// A 200 whose body is whatever the test sends into the channel.
    Stream(mpsc::Receiver<Bytes>),
    /// Waits for a permit of the gate, then answers 200 with the body.
    Gated(Arc<Semaphore>, String),
    /// Never answers.
    Hang,
}

fn ok(body: &str) -> Reply {
    Reply::Body {
        status: StatusCode::OK,
        headers: Vec::new(),
        body: body.to_owned(),
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    token_requests: Mutex<Vec<String>>,
}

impl Script {
    fn push(&self, reply: Reply) {
        self.replies.lock().unwrap().push_back(reply);
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(State(script): State<Arc<Script>>, headers: HeaderMap, body: String) -> Response {
    script.seen.lock().unwrap().push(Seen { headers, body });
    let reply = script
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .expect("a scripted reply for every request");
    match reply {
        Reply::Body {
            status,
            headers,
            body,
        } => {
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(body)).unwrap()
        }
        Reply::Stream(receiver) => Response::new(Body::from_stream(
            ReceiverStream::new(receiver).map(Ok::<_, Infallible>),
        )),
        Reply::Gated(gate, body) => {
            let now = script.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            script.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let _permit = gate.acquire().await.unwrap();
            script.in_flight.fetch_sub(1, Ordering::SeqCst);
            Response::new(Body::from(body))
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// A token endpoint that hands out `token-1`, `token-2`, ... valid for an hour.
async fn issue_token(State(script): State<Arc<Script>>, form: String) -> Response {
    let mut requests = script.token_requests.lock().unwrap();
    requests.push(form);
    let body = format!(
        r#"{{"access_token":"token-{}","token_type":"Bearer","expires_in":3599}}"#,
        requests.len()
    );
    Response::new(Body::from(body))
}

async fn spawn_server() -> (SocketAddr, Arc<Script>) {
    let script = Arc::new(Script::default());
    let app = Router::new()
        .route("/EWS/Exchange.asmx", post(handle))
        .route("/tenant/oauth2/v2.0/token", post(issue_token))
        .route("/autodiscover/autodiscover.svc", post(handle))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, script)
}

fn client(address: SocketAddr, max_concurrent_requests: usize) -> EwsClient {
    let auth = EwsAuth::Basic {
        username: "svc-booking".to_owned(),
        password: "s3cret".to_owned().into(),
    };
    client_with_auth(address, max_concurrent_requests, auth)
}

fn oauth_client(address: SocketAddr) -> EwsClient {
    let auth = EwsAuth::OAuthClientCredentials {
        token_url: format!("http://{address}/tenant/oauth2/v2.0/token"),
        client_id: "app-id".to_owned(),
        client_secret: "app-secret".to_owned().into(),
        scope: "https://outlook.office365.com/.default".to_owned(),
    };
    client_with_auth(address, 4, auth)
}

fn client_with_auth(
    address: SocketAddr,
    max_concurrent_requests: usize,
    auth: EwsAuth,
) -> EwsClient {
    EwsClient::new(EwsConfig {
        url: format!("http://{address}/EWS/Exchange.asmx"),
        auth,
        impersonation: true,
        server_version: "Exchange2013_SP1".to_owned(),
        request_timeout: Duration::from_secs(10),
        max_concurrent_requests,
        user_agent: "booking-sync/test".to_owned(),
    })
    .unwrap()
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a str> {
    seen.headers.get(name).map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn subscribing_a_group_keeps_and_sends_back_the_affinity_cookie() {
    let (address, script) = spawn_server().await;
    script.push(Reply::Body {
        status: StatusCode::OK,
        headers: vec![("set-cookie", BACKEND_COOKIE)],
        body: SUBSCRIBE_OK.to_owned(),
    });
    script.push(ok(SUBSCRIBE_OK));
    let client = client(address, 4);
    let anchor = MailboxAddress::new("room-1@contoso.example");
    let member = MailboxAddress::new("room-2@contoso.example");
    let affinity = Affinity::new(anchor.clone());

    let first = client.subscribe_streaming(&anchor, &affinity).await;
    let second = client.subscribe_streaming(&member, &affinity).await;

    let expected =
        SubscriptionId::from("KQBhbTZwcjA0bWIxMjM0LmV1cnByZDA0LnByb2Qub3V0bG9vay5jb20QAAAA");
    assert_eq!(first.unwrap(), expected);
    assert_eq!(second.unwrap(), expected);
    let seen = script.seen();
    assert_eq!(header(&seen[0], "cookie"), None);
    assert_eq!(
        header(&seen[1], "cookie"),
        Some("X-BackEndOverrideCookie=AM6PR04MB1234~1593847261")
    );
    for request in &seen {
        assert_eq!(
            header(request, "x-anchormailbox"),
            Some("room-1@contoso.example")
        );
        assert_eq!(header(request, "x-preferserveraffinity"), Some("true"));
        assert_eq!(
            header(request, "content-type"),
            Some("text/xml; charset=utf-8")
        );
        assert_eq!(header(request, "accept"), Some("text/xml"));
        assert_eq!(header(request, "user-agent"), Some("booking-sync/test"));
        assert!(header(request, "authorization")
            .unwrap()
            .starts_with("Basic "));
    }
    assert!(seen[1]
        .body
        .contains("<t:PrimarySmtpAddress>room-2@contoso.example</t:PrimarySmtpAddress>"));
}

#[tokio::test]
async fn data_requests_anchor_on_the_mailbox_they_read_without_affinity_headers() {
    let (address, script) = spawn_server().await;
    script.push(ok(SYNC_PAGE));
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("Room-3@Contoso.example");

    let page = client
        .sync_folder_items(&mailbox, Some(&SyncState::from("previous")), 512)
        .await
        .unwrap();

    assert_eq!(page.changes.len(), 3);
    let seen = script.seen();
    assert_eq!(
        header(&seen[0], "x-anchormailbox"),
        Some("room-3@contoso.example")
    );
    assert_eq!(header(&seen[0], "x-preferserveraffinity"), None);
    assert!(seen[0].body.contains("<m:SyncState>previous</m:SyncState>"));
}

#[tokio::test]
async fn a_stream_split_inside_envelopes_yields_each_message_as_it_completes() {
    let (address, script) = spawn_server().await;
    let (sender, receiver) = mpsc::channel(16);
    script.push(Reply::Stream(receiver));
    let client = client(address, 4);
    let affinity = Affinity::new(MailboxAddress::new("room-1@contoso.example"));
    let ids = [
        SubscriptionId::from("SUB-AAA="),
        SubscriptionId::from("SUB-BBB="),
    ];
    let bytes = STREAM.as_bytes();
    let first_end = STREAM.find("</s:Envelope>").unwrap() + "</s:Envelope>".len();

    let mut stream = client
        .get_streaming_events(&affinity, &ids, 30)
        .await
        .unwrap();
    // The first envelope arrives in two pieces, plus the start of the second one.
    sender
        .send(Bytes::copy_from_slice(&bytes[..100]))
        .await
        .unwrap();
    sender
        .send(Bytes::copy_from_slice(&bytes[100..first_end + 40]))
        .await
        .unwrap();
    let first = stream.next_message().await.unwrap().unwrap();
    // The rest arrives in odd-sized chunks; then the body ends.
    for chunk in bytes[first_end + 40..].chunks(333) {
        sender.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    drop(sender);
    let mut rest = Vec::new();
    while let Some(message) = stream.next_message().await.unwrap() {
        rest.push(message);
    }

    assert_eq!(first.notifications.len(), 2);
    assert_eq!(first.notifications[1].subscription_id, ids[1]);
    assert_eq!(rest.len(), 3);
    assert_eq!(rest[0].connection_status, Some(ConnectionStatus::Ok));
    let error = rest[2].error.as_ref().unwrap();
    assert_eq!(error.subscription_ids, vec![ids[1].clone()]);
    assert!(matches!(
        error.to_error(),
        EwsError::SubscriptionGone { .. }
    ));
    assert_eq!(rest[2].connection_status, Some(ConnectionStatus::Closed));
    let request = &script.seen()[0];
    assert!(request
        .body
        .contains("<m:ConnectionTimeout>30</m:ConnectionTimeout>"));
    assert!(request
        .body
        .contains("<t:PrimarySmtpAddress>room-1@contoso.example</t:PrimarySmtpAddress>"));
}

#[tokio::test]
async fn a_stream_that_breaks_off_inside_an_envelope_is_malformed() {
    let (address, script) = spawn_server().await;
    let (sender, receiver) = mpsc::channel(4);
    script.push(Reply::Stream(receiver));
    let client = client(address, 4);
    let affinity = Affinity::new(MailboxAddress::new("room-1@contoso.example"));

    let mut stream = client
        .get_streaming_events(&affinity, &[SubscriptionId::from("SUB-AAA=")], 1)
        .await
        .unwrap();
    sender
        .send(Bytes::copy_from_slice(&STREAM.as_bytes()[..500]))
        .await
        .unwrap();
    drop(sender);
    let result = stream.next_message().await;

    assert!(matches!(result, Err(EwsError::Malformed(_))), "{result:?}");
}

#[tokio::test]
async fn a_server_busy_fault_becomes_throttled_with_its_backoff() {
    let (address, script) = spawn_server().await;
    script.push(Reply::Body {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![("content-type", "text/xml; charset=utf-8")],
        body: SERVER_BUSY_FAULT.to_owned(),
    });
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let result = client.sync_folder_items(&mailbox, None, 100).await;

    let error = result.unwrap_err();
    assert!(matches!(error, EwsError::Throttled { .. }), "{error:?}");
    assert_eq!(error.backoff_hint(), Some(Duration::from_millis(61250)));
    assert!(error.is_transient());
    assert!(client.throttled_until().is_some(), "the account is paused");
}

#[tokio::test]
async fn no_request_starts_before_the_backoff_of_a_server_busy_expires() {
    let (address, script) = spawn_server().await;
    script.push(Reply::Body {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![("content-type", "text/xml; charset=utf-8")],
        body: SERVER_BUSY_FAULT.replace("61250", "400"),
    });
    script.push(ok(SYNC_PAGE));
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let busy = client.sync_folder_items(&mailbox, None, 100).await;
    let refused_at = tokio::time::Instant::now();
    let next = client.sync_folder_items(&mailbox, None, 100).await;

    assert!(matches!(busy, Err(EwsError::Throttled { .. })), "{busy:?}");
    assert!(next.is_ok(), "{next:?}");
    assert!(
        refused_at.elapsed() >= Duration::from_millis(400),
        "the second request waited for the back-off"
    );
    assert_eq!(script.seen().len(), 2);
}

#[tokio::test]
async fn a_read_that_fails_with_a_5xx_is_retried_until_it_passes() {
    let (address, script) = spawn_server().await;
    let failing = || Reply::Body {
        status: StatusCode::BAD_GATEWAY,
        headers: vec![],
        body: "bad gateway".to_owned(),
    };
    script.push(failing());
    script.push(failing());
    script.push(ok(SYNC_PAGE));
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let page = client.sync_folder_items(&mailbox, None, 100).await;

    assert!(page.is_ok(), "{page:?}");
    assert_eq!(script.seen().len(), 3, "two retries, then success");
}

#[tokio::test]
async fn http_statuses_without_soap_map_to_their_own_errors() {
    let (address, script) = spawn_server().await;
    let plain = |status, headers| Reply::Body {
        status,
        headers,
        body: "denied".to_owned(),
    };
    script.push(plain(
        StatusCode::UNAUTHORIZED,
        vec![("www-authenticate", "Basic")],
    ));
    script.push(plain(StatusCode::FORBIDDEN, vec![]));
    // Reads retry 5xx answers: each of these is answered three times.
    for _ in 0..3 {
        script.push(plain(StatusCode::BAD_GATEWAY, vec![]));
    }
    for _ in 0..3 {
        script.push(plain(StatusCode::INTERNAL_SERVER_ERROR, vec![]));
    }
    script.push(plain(
        StatusCode::SERVICE_UNAVAILABLE,
        vec![("retry-after", "30")],
    ));
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let mut errors = Vec::new();
    for _ in 0..5 {
        errors.push(client.get_calendar_folder(&mailbox).await.unwrap_err());
    }

    assert!(
        matches!(errors[0], EwsError::Unauthorized),
        "{:?}",
        errors[0]
    );
    assert!(matches!(errors[1], EwsError::Forbidden), "{:?}", errors[1]);
    assert!(
        matches!(errors[2], EwsError::Http { status: 502 }),
        "{:?}",
        errors[2]
    );
    assert!(
        matches!(errors[3], EwsError::Http { status: 500 }),
        "{:?}",
        errors[3]
    );
    assert_eq!(errors[4].backoff_hint(), Some(Duration::from_secs(30)));
    assert_eq!(script.seen().len(), 9);
}

#[tokio::test]
async fn a_failing_stream_request_reports_the_fault_instead_of_a_stream() {
    let (address, script) = spawn_server().await;
    script.push(Reply::Body {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: vec![],
        body: SERVER_BUSY_FAULT.to_owned(),
    });
    let client = client(address, 4);
    let affinity = Affinity::new(MailboxAddress::new("room-1@contoso.example"));

    let result = client
        .get_streaming_events(&affinity, &[SubscriptionId::from("SUB-AAA=")], 30)
        .await;

    assert!(
        matches!(result, Err(EwsError::Throttled { .. })),
        "{result:?}"
    );
}

#[tokio::test]
async fn get_item_answers_each_id_in_order_and_rejects_a_count_mismatch() {
    let (address, script) = spawn_server().await;
    script.push(ok(GET_ITEM));
    script.push(ok(GET_ITEM));
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-4b@contoso.example");
    let ids = [
        ItemId::from("AAMkAGI2...AAA="),
        ItemId::from("AAMkAGI2...CCC="),
        ItemId::from("bad"),
    ];

    let results = client.get_calendar_items(&mailbox, &ids).await.unwrap();
    let mismatch = client.get_calendar_items(&mailbox, &ids[..2]).await;

    assert_eq!(
        results[0].as_ref().unwrap().subject,
        "Quarterly planning & review"
    );
    assert_eq!(results[1], Err(ItemError::NotFound));
    assert!(matches!(results[2], Err(ItemError::Other { .. })));
    assert!(
        matches!(mismatch, Err(EwsError::Malformed(_))),
        "{mismatch:?}"
    );
    assert!(script.seen()[0]
        .body
        .contains("<t:ItemId Id=\"AAMkAGI2...CCC=\"/>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_requests_than_the_cap_are_in_flight_at_once() {
    let (address, script) = spawn_server().await;
    let gate = Arc::new(Semaphore::new(0));
    for _ in 0..6 {
        script.push(Reply::Gated(gate.clone(), SYNC_PAGE.to_owned()));
    }
    let client = client(address, 2);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let calls: Vec<_> = (0..6)
        .map(|_| {
            let client = client.clone();
            let mailbox = mailbox.clone();
            tokio::spawn(async move { client.sync_folder_items(&mailbox, None, 10).await })
        })
        .collect();
    while script.in_flight.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(6);
    for call in calls {
        call.await.unwrap().unwrap();
    }

    assert_eq!(script.max_in_flight.load(Ordering::SeqCst), 2);
    assert_eq!(script.seen().len(), 6);
}

#[tokio::test(start_paused = true)]
async fn a_request_without_an_answer_times_out() {
    let (address, script) = spawn_server().await;
    script.push(Reply::Hang);
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let result = client.get_calendar_folder(&mailbox).await;

    assert!(matches!(result, Err(EwsError::Timeout)), "{result:?}");
}

#[tokio::test]
async fn a_stream_needs_between_one_and_two_hundred_subscriptions() {
    let (address, _script) = spawn_server().await;
    let client = client(address, 4);
    let affinity = Affinity::new(MailboxAddress::new("room-1@contoso.example"));
    let too_many: Vec<_> = (0..201)
        .map(|index| SubscriptionId(format!("SUB-{index}")))
        .collect();

    let none = client.get_streaming_events(&affinity, &[], 30).await;
    let over = client.get_streaming_events(&affinity, &too_many, 30).await;

    assert!(
        matches!(none, Err(EwsError::InvalidArgument(_))),
        "{none:?}"
    );
    assert!(
        matches!(over, Err(EwsError::InvalidArgument(_))),
        "{over:?}"
    );
}

#[tokio::test]
async fn unsubscribing_twice_succeeds_and_carries_the_affinity_headers() {
    let (address, script) = spawn_server().await;
    script.push(ok(UNSUBSCRIBE_GONE));
    let client = client(address, 4);
    let anchor = MailboxAddress::new("room-1@contoso.example");
    let member = MailboxAddress::new("room-2@contoso.example");
    let affinity = Affinity::new(anchor);

    let result = client
        .unsubscribe(&member, &affinity, &SubscriptionId::from("SUB-BBB="))
        .await;

    assert!(result.is_ok(), "{result:?}");
    let request = &script.seen()[0];
    assert_eq!(
        header(request, "x-anchormailbox"),
        Some("room-1@contoso.example")
    );
    assert_eq!(header(request, "x-preferserveraffinity"), Some("true"));
    assert!(request
        .body
        .contains("<m:SubscriptionId>SUB-BBB=</m:SubscriptionId>"));
}

#[tokio::test]
async fn a_calendar_view_reports_truncation_and_sends_the_window_in_utc() {
    let (address, script) = spawn_server().await;
    script.push(ok(CALENDAR_VIEW));
    let client = client(address, 4);
    let mailbox = MailboxAddress::new("room-1@contoso.example");
    let from = "2026-03-01T00:00:00Z".parse().unwrap();
    let to = "2026-04-01T00:00:00Z".parse().unwrap();

    let view = client
        .find_calendar_view(&mailbox, from, to, 3)
        .await
        .unwrap();

    assert_eq!(view.items.len(), 3);
    assert!(!view.includes_last_item_in_range);
    assert_eq!(view.total_items_in_view, Some(33));
    assert!(script.seen()[0].body.contains(
        "<m:CalendarView MaxEntriesReturned=\"3\" StartDate=\"2026-03-01T00:00:00Z\" EndDate=\"2026-04-01T00:00:00Z\"/>"
    ));
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_read_keeps_the_partial_envelope_for_the_next_call() {
    let (address, script) = spawn_server().await;
    let (sender, receiver) = mpsc::channel(4);
    script.push(Reply::Stream(receiver));
    let client = client(address, 4);
    let affinity = Affinity::new(MailboxAddress::new("room-1@contoso.example"));
    let bytes = STREAM.as_bytes();
    let first_end = STREAM.find("</s:Envelope>").unwrap() + "</s:Envelope>".len();
    let mut stream = client
        .get_streaming_events(&affinity, &[SubscriptionId::from("SUB-AAA=")], 30)
        .await
        .unwrap();

    sender
        .send(Bytes::copy_from_slice(&bytes[..first_end / 2]))
        .await
        .unwrap();
    let cancelled = tokio::time::timeout(Duration::from_secs(5), stream.next_message()).await;
    sender
        .send(Bytes::copy_from_slice(&bytes[first_end / 2..first_end]))
        .await
        .unwrap();
    let message = stream.next_message().await.unwrap().unwrap();

    assert!(cancelled.is_err(), "{cancelled:?}");
    assert_eq!(message.notifications.len(), 2);
    assert_eq!(message.connection_status, Some(ConnectionStatus::Ok));
}

#[tokio::test]
async fn an_oauth_token_is_fetched_once_and_renewed_after_a_401() {
    let (address, script) = spawn_server().await;
    script.push(ok(SYNC_PAGE));
    script.push(Reply::Body {
        status: StatusCode::UNAUTHORIZED,
        headers: vec![("www-authenticate", "Bearer")],
        body: String::new(),
    });
    script.push(ok(SYNC_PAGE));
    let client = oauth_client(address);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let first = client.sync_folder_items(&mailbox, None, 10).await;
    let second = client.sync_folder_items(&mailbox, None, 10).await;

    assert!(first.is_ok(), "{first:?}");
    assert!(second.is_ok(), "{second:?}");
    let seen = script.seen();
    let bearer: Vec<_> = seen
        .iter()
        .map(|request| header(request, "authorization").unwrap())
        .collect();
    assert_eq!(
        bearer,
        vec!["Bearer token-1", "Bearer token-1", "Bearer token-2"]
    );
    let token_requests = script.token_requests.lock().unwrap().clone();
    assert_eq!(token_requests.len(), 2);
    assert!(token_requests[0].contains("grant_type=client_credentials"));
    assert!(token_requests[0].contains("client_id=app-id"));
    assert!(token_requests[0].contains("scope=https%3A%2F%2Foutlook.office365.com%2F.default"));
}

#[tokio::test]
async fn a_token_rejected_twice_is_unauthorized_without_more_retries() {
    let (address, script) = spawn_server().await;
    for _ in 0..2 {
        script.push(Reply::Body {
            status: StatusCode::UNAUTHORIZED,
            headers: vec![],
            body: String::new(),
        });
    }
    let client = oauth_client(address);
    let mailbox = MailboxAddress::new("room-1@contoso.example");

    let result = client.get_calendar_folder(&mailbox).await;

    assert!(matches!(result, Err(EwsError::Unauthorized)), "{result:?}");
    assert_eq!(script.seen().len(), 2);
    assert_eq!(script.token_requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn autodiscover_asks_for_every_mailbox_in_one_request() {
    let (address, script) = spawn_server().await;
    script.push(ok(AUTODISCOVER));
    let client = client(address, 4);
    let url = format!("http://{address}/autodiscover/autodiscover.svc");
    let mailboxes = [
        MailboxAddress::new("room-1@contoso.example"),
        MailboxAddress::new("nobody@contoso.example"),
        MailboxAddress::new("room-9@contoso.example"),
    ];

    let settings = client.get_user_settings(&url, &mailboxes).await.unwrap();

    assert_eq!(
        settings[0]
            .as_ref()
            .unwrap()
            .grouping_information
            .as_deref(),
        Some("AM6PR04")
    );
    assert_eq!(settings[1].as_ref().unwrap_err().code, "InvalidUser");
    assert_eq!(
        settings[2].as_ref().unwrap_err().redirect_target.as_deref(),
        Some("room-9@fabrikam.example")
    );
    let request = &script.seen()[0];
    assert_eq!(
        header(request, "soapaction"),
        Some(
            "http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettings"
        )
    );
    assert_eq!(header(request, "x-anchormailbox"), None);
    assert!(request
        .body
        .contains("<a:Mailbox>nobody@contoso.example</a:Mailbox>"));
    assert!(request.body.contains(&format!("<wsa:To>{url}</wsa:To>")));
}

#[tokio::test]
async fn rooms_are_listed_and_addresses_resolved_acting_as_a_mailbox() {
    let (address, script) = spawn_server().await;
    script.push(ok(include_str!("../fixtures/ews/get_room_lists.xml")));
    script.push(ok(include_str!("../fixtures/ews/get_rooms.xml")));
    script.push(ok(include_str!("../fixtures/ews/resolve_names_alias.xml")));
    let client = client(address, 4);
    let acting_as = MailboxAddress::new("room-001@contoso.example");

    let lists = client.get_room_lists(&acting_as).await.unwrap();
    let list = MailboxAddress::new(lists[0].email.as_deref().unwrap());
    let rooms = client.get_rooms(&acting_as, &list).await.unwrap();
    let resolved = client
        .resolve_name(&acting_as, "u001@contoso.example")
        .await
        .unwrap();

    assert_eq!(rooms.len(), 2);
    assert_eq!(
        resolved[0].email.as_deref(),
        Some("user-001@contoso.example")
    );
    let seen = script.seen();
    assert!(seen[1].body.contains(
        "<m:RoomList><t:EmailAddress>all-rooms@contoso.example</t:EmailAddress></m:RoomList>"
    ));
    assert!(seen
        .iter()
        .all(|request| header(request, "x-anchormailbox") == Some("room-001@contoso.example")));
}
