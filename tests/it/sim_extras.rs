//! The simulator's identity, limits, push, directory and fault behaviour, over HTTP.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{TimeZone, Utc};
use serde_json::json;

use booking_sync::domain::MailboxAddress;
use booking_sync::sim::auth::{AppRegistration, AuthConfig, AuthMode, ImpersonationScope};
use booking_sync::sim::faults::Fault;
use booking_sync::sim::limits::{LimitsConfig, RequestBudget};
use booking_sync::sim::{NewAppointment, SimConfig, SimHandle, Simulator};

use self::client::{between, Ews};

/// A small EWS client for tests: builds envelopes and posts them.
pub(crate) mod client {
    use axum::http::{HeaderMap, StatusCode};

    /// The namespaces every request declares.
    pub const NAMESPACES: &str = "xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
        xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\" \
        xmlns:t=\"http://schemas.microsoft.com/exchange/services/2006/types\"";

    /// A request envelope, impersonating `mailbox` when given.
    pub fn envelope(mailbox: Option<&str>, body: &str) -> String {
        let impersonation = mailbox
            .map(|mailbox| {
                format!(
                    "<t:ExchangeImpersonation><t:ConnectingSID><t:PrimarySmtpAddress>{mailbox}\
                     </t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
                )
            })
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope {NAMESPACES}><soap:Header>\
             <t:RequestServerVersion Version=\"Exchange2013_SP1\"/>{impersonation}</soap:Header>\
             <soap:Body>{body}</soap:Body></soap:Envelope>"
        )
    }

    /// An answer: status, headers and body text.
    #[derive(Debug)]
    pub struct Answer {
        /// The HTTP status.
        pub status: StatusCode,
        /// The response headers.
        pub headers: HeaderMap,
        /// The body.
        pub body: String,
    }

    /// Posts SOAP requests to one simulator.
    #[derive(Debug, Clone)]
    pub struct Ews {
        http: reqwest::Client,
        url: String,
    }

    impl Ews {
        /// A client for the EWS URL.
        pub fn new(url: String) -> Self {
            Self {
                http: reqwest::Client::new(),
                url,
            }
        }

        /// Posts `body` (the operation element) with extra headers.
        pub async fn call(
            &self,
            mailbox: Option<&str>,
            headers: &[(&str, &str)],
            body: &str,
        ) -> Answer {
            let mut request = self
                .http
                .post(&self.url)
                .header("Content-Type", "text/xml; charset=utf-8")
                .body(envelope(mailbox, body));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.expect("the simulator answers");
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.text().await.unwrap_or_default();
            Answer {
                status,
                headers,
                body,
            }
        }
    }

    /// The text between `open` and the next `close`, e.g. an element's content.
    pub fn between(text: &str, open: &str, close: &str) -> Option<String> {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].to_owned())
    }

    /// The Subscribe request for a mailbox's calendar (streaming).
    pub fn streaming_subscribe() -> &'static str {
        "<m:Subscribe><m:StreamingSubscriptionRequest><t:FolderIds>\
         <t:DistinguishedFolderId Id=\"calendar\"/></t:FolderIds><t:EventTypes>\
         <t:EventType>CreatedEvent</t:EventType><t:EventType>ModifiedEvent</t:EventType>\
         <t:EventType>DeletedEvent</t:EventType><t:EventType>MovedEvent</t:EventType>\
         </t:EventTypes></m:StreamingSubscriptionRequest></m:Subscribe>"
    }

    /// A GetStreamingEvents request.
    pub fn get_streaming_events(ids: &[String], minutes: u32) -> String {
        let ids: String = ids
            .iter()
            .map(|id| format!("<t:SubscriptionId>{id}</t:SubscriptionId>"))
            .collect();
        format!(
            "<m:GetStreamingEvents><m:SubscriptionIds>{ids}</m:SubscriptionIds>\
             <m:ConnectionTimeout>{minutes}</m:ConnectionTimeout></m:GetStreamingEvents>"
        )
    }

    /// The subscription id of a Subscribe answer.
    pub fn subscription_id(body: &str) -> String {
        let start =
            body.find("SubscriptionId>").expect("a subscription id") + "SubscriptionId>".len();
        let end = body[start..].find('<').expect("end of the id") + start;
        body[start..end].to_owned()
    }
}

pub(crate) const ROOM: &str = "room-001@contoso.example";
pub(crate) const OTHER_ROOM: &str = "room-002@contoso.example";

/// A simulator with short clocks for tests.
pub(crate) async fn start(config: SimConfig) -> SimHandle {
    Simulator::start(SimConfig {
        rooms: 3,
        users: 2,
        minute: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(500),
        ..config
    })
    .await
    .expect("simulator starts")
}

pub(crate) fn appointment(subject: &str, hour: u32) -> NewAppointment {
    let start = Utc
        .with_ymd_and_hms(2026, 6, 1, hour, 0, 0)
        .single()
        .expect("valid time");
    NewAppointment {
        subject: subject.to_owned(),
        start,
        end: start + chrono::Duration::hours(1),
        is_all_day: false,
        organizer: "user-001@contoso.example".to_owned(),
        attendees: vec!["user-002@contoso.example".to_owned()],
        time_zone: Some("Europe/Berlin".to_owned()),
        recurrence: None,
        location: None,
        uid: None,
    }
}

pub(crate) async fn get_json(url: &str) -> serde_json::Value {
    let text = reqwest::get(url)
        .await
        .expect("control API answers")
        .text()
        .await
        .expect("control API body");
    serde_json::from_str(&text).expect("control API JSON")
}

fn bearer_config(lifetime: Duration) -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Bearer,
        apps: vec![AppRegistration {
            client_id: "booking-sync".to_owned(),
            client_secret: "s3cret".to_owned(),
            impersonation: ImpersonationScope::Only(vec![MailboxAddress::new(ROOM)]),
        }],
        token_lifetime: lifetime,
        ..AuthConfig::default()
    }
}

async fn token(simulator: &SimHandle) -> String {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/contoso/oauth2/v2.0/token",
            simulator.base_url()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "booking-sync"),
            ("client_secret", "s3cret"),
            ("scope", "https://outlook.office365.com/.default"),
        ])
        .send()
        .await
        .expect("token endpoint answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("token body")).expect("token JSON");
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().expect("a token").to_owned()
}

const GET_CALENDAR: &str =
    "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>\
    <m:FolderIds><t:DistinguishedFolderId Id=\"calendar\"/></m:FolderIds></m:GetFolder>";

#[tokio::test]
async fn bearer_token_from_the_token_endpoint_works_until_it_expires() {
    let simulator = start(SimConfig {
        auth: bearer_config(Duration::from_secs(1)),
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());
    let token = token(&simulator).await;
    let authorization = format!("Bearer {token}");

    let fresh = ews
        .call(
            Some(ROOM),
            &[("Authorization", &authorization)],
            GET_CALENDAR,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = ews
        .call(
            Some(ROOM),
            &[("Authorization", &authorization)],
            GET_CALENDAR,
        )
        .await;
    let anonymous = ews.call(Some(ROOM), &[], GET_CALENDAR).await;

    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired
            .headers
            .get("WWW-Authenticate")
            .and_then(|value| value.to_str().ok()),
        Some("Bearer")
    );
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    simulator.shutdown().await;
}

#[tokio::test]
async fn impersonation_outside_scope_unknown_or_missing_is_a_fault() {
    let simulator = start(SimConfig {
        auth: bearer_config(Duration::from_secs(600)),
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());
    let authorization = format!("Bearer {}", token(&simulator).await);
    let headers = [("Authorization", authorization.as_str())];

    let denied = ews.call(Some(OTHER_ROOM), &headers, GET_CALENDAR).await;
    let unknown = ews
        .call(Some("ghost@contoso.example"), &headers, GET_CALENDAR)
        .await;
    let missing = ews.call(None, &headers, GET_CALENDAR).await;

    assert_eq!(denied.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        denied.body.contains("ErrorImpersonateUserDenied"),
        "{}",
        denied.body
    );
    assert!(
        unknown.body.contains("ErrorNonExistentMailbox"),
        "{}",
        unknown.body
    );
    assert!(
        missing
            .body
            .contains("ErrorInvalidExchangeImpersonationHeaderData"),
        "{}",
        missing.body
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn ews_disabled_switch_answers_forbidden() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());

    simulator.control().set_ews_disabled(true);
    let refused = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    simulator.control().set_ews_disabled(false);
    let allowed = ews.call(Some(ROOM), &[], GET_CALENDAR).await;

    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(allowed.status, StatusCode::OK);
    simulator.shutdown().await;
}

const AUTODISCOVER: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://schemas.microsoft.com/exchange/2010/Autodiscover"><soap:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users>USERS</a:Users><a:RequestedSettings><a:Setting>ExternalEwsUrl</a:Setting><a:Setting>InternalEwsUrl</a:Setting><a:Setting>GroupingInformation</a:Setting><a:Setting>EwsSupportedSchemas</a:Setting></a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></soap:Body></soap:Envelope>"#;

pub(crate) async fn autodiscover(simulator: &SimHandle, users: &[&str]) -> String {
    let users: String = users
        .iter()
        .map(|user| format!("<a:User><a:Mailbox>{user}</a:Mailbox></a:User>"))
        .collect();
    reqwest::Client::new()
        .post(format!(
            "{}/autodiscover/autodiscover.svc",
            simulator.base_url()
        ))
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(AUTODISCOVER.replace("USERS", &users))
        .send()
        .await
        .expect("autodiscover answers")
        .text()
        .await
        .expect("autodiscover body")
}

#[tokio::test]
async fn autodiscover_answers_each_user_with_its_group_and_flags_unknown_users() {
    let simulator = start(SimConfig {
        rooms: 12,
        ..SimConfig::default()
    })
    .await;
    let rooms: Vec<String> = (1..=12)
        .map(|number| format!("room-{number:03}@contoso.example"))
        .collect();
    let mut users: Vec<&str> = rooms.iter().map(String::as_str).collect();
    users.push("ghost@contoso.example");

    let body = autodiscover(&simulator, &users).await;

    let groups: std::collections::BTreeSet<String> = body
        .split("<Name>GroupingInformation</Name><Value>")
        .skip(1)
        .filter_map(|rest| rest.split('<').next().map(str::to_owned))
        .collect();
    assert_eq!(body.matches("<UserResponse>").count(), 13);
    assert!(groups.len() >= 2, "one group for twelve rooms: {groups:?}");
    assert!(body.contains(&format!("<Value>{}</Value>", simulator.ews_url())));
    assert!(body.contains("<ErrorCode>InvalidUser</ErrorCode>"));
    assert!(body.contains("Exchange2013_SP1"));
    simulator.shutdown().await;
}

#[tokio::test]
async fn resolve_names_maps_an_alias_to_the_primary_address() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());

    let answer = ews
        .call(
            Some(ROOM),
            &[],
            "<m:ResolveNames ReturnFullContactData=\"false\"><m:UnresolvedEntry>u001@contoso.example</m:UnresolvedEntry></m:ResolveNames>",
        )
        .await;

    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer
            .body
            .contains("<t:EmailAddress>user-001@contoso.example</t:EmailAddress>"),
        "{}",
        answer.body
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn get_rooms_lists_every_room_of_the_single_room_list() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());

    let lists = ews.call(Some(ROOM), &[], "<m:GetRoomLists/>").await;
    let address = between(&lists.body, "<t:EmailAddress>", "<").expect("a room list");
    let rooms = ews
        .call(
            Some(ROOM),
            &[],
            &format!("<m:GetRooms><m:RoomList><t:EmailAddress>{address}</t:EmailAddress></m:RoomList></m:GetRooms>"),
        )
        .await;

    assert!(lists.body.contains("All Rooms"), "{}", lists.body);
    assert_eq!(rooms.body.matches("<t:Room>").count(), 3, "{}", rooms.body);
    assert!(!rooms.body.contains("user-001"));
    simulator.shutdown().await;
}

#[tokio::test]
async fn sent_mail_is_recorded_and_listed_by_the_control_api() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());

    let answer = ews
        .call(
            Some(ROOM),
            &[],
            "<m:CreateItem MessageDisposition=\"SendOnly\"><m:Items><t:Message><t:Subject>Declined</t:Subject>\
             <t:Body BodyType=\"Text\">Room is booked</t:Body><t:ToRecipients><t:Mailbox>\
             <t:EmailAddress>user-001@contoso.example</t:EmailAddress></t:Mailbox></t:ToRecipients>\
             </t:Message></m:Items></m:CreateItem>",
        )
        .await;
    let listed = get_json(&format!("{}/_sim/sent", simulator.base_url())).await;

    assert!(answer.body.contains("NoError"), "{}", answer.body);
    let sent = simulator.control().sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, ["user-001@contoso.example"]);
    assert_eq!(sent[0].from.as_deref(), Some(ROOM));
    assert_eq!(listed[0]["subject"], "Declined");
    simulator.shutdown().await;
}

#[tokio::test]
async fn affinity_cookie_routes_the_group_and_a_wrong_backend_loses_the_subscription() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let affinity = [
        ("X-AnchorMailbox", ROOM),
        ("X-PreferServerAffinity", "true"),
    ];

    let first = ews
        .call(Some(ROOM), &affinity, client::streaming_subscribe())
        .await;
    let cookie = first
        .headers
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .expect("the first subscription of the group sets the cookie")
        .to_owned();
    let id = client::subscription_id(&first.body);
    let backend = cookie
        .split_once('=')
        .map(|(_, value)| value.to_owned())
        .unwrap_or_default();
    let wrong_cookie = (0..8)
        .map(|number| {
            format!(
                "X-BackEndOverrideCookie=SIMPR{number:02}MB{:04}.sim.example~{}",
                1000 + number,
                1_593_847_261 + number
            )
        })
        .find(|candidate| !candidate.ends_with(&backend) && *candidate != cookie)
        .expect("another back end");
    let second = ews
        .call(
            Some(OTHER_ROOM),
            &[affinity[0], affinity[1], ("Cookie", &cookie)],
            client::streaming_subscribe(),
        )
        .await;
    let misrouted = ews
        .call(
            Some(ROOM),
            &[affinity[0], affinity[1], ("Cookie", &wrong_cookie)],
            &client::get_streaming_events(std::slice::from_ref(&id), 1),
        )
        .await;

    assert!(cookie.starts_with("X-BackEndOverrideCookie="), "{cookie}");
    assert!(second.headers.get("set-cookie").is_none());
    assert!(second.body.contains("NoError"), "{}", second.body);
    assert!(
        misrouted.body.contains("ErrorSubscriptionNotFound"),
        "{}",
        misrouted.body
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn connection_and_subscription_limits_answer_their_errors() {
    let simulator = start(SimConfig {
        limits: LimitsConfig {
            hanging_connection_limit: 1,
            max_subscriptions_per_mailbox: 2,
            ..LimitsConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());
    let mut ids = Vec::new();
    for _ in 0..2 {
        let answer = ews
            .call(Some(ROOM), &[], client::streaming_subscribe())
            .await;
        ids.push(client::subscription_id(&answer.body));
    }

    let third = ews
        .call(Some(ROOM), &[], client::streaming_subscribe())
        .await;
    let first_stream = reqwest::Client::new()
        .post(simulator.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(client::envelope(
            Some(ROOM),
            &client::get_streaming_events(&ids[..1], 1),
        ))
        .send()
        .await
        .expect("first stream opens");
    let second_stream = ews
        .call(Some(ROOM), &[], &client::get_streaming_events(&ids[1..], 1))
        .await;
    drop(first_stream);

    assert!(
        third.body.contains("ErrorExceededSubscriptionCount"),
        "{}",
        third.body
    );
    assert!(
        second_stream.body.contains("ErrorExceededConnectionCount"),
        "{}",
        second_stream.body
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn spent_budget_answers_server_busy_as_fault_and_as_message() {
    let simulator = start(SimConfig {
        limits: LimitsConfig {
            request_budget: Some(RequestBudget {
                requests: 1,
                window: Duration::from_secs(60),
                backoff: Duration::from_millis(1500),
                in_message_operations: vec!["SyncFolderItems".to_owned()],
            }),
            ..LimitsConfig::default()
        },
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());

    let allowed = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    let fault = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    let in_message = ews
        .call(
            Some(ROOM),
            &[],
            "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>\
             <m:SyncFolderId><t:DistinguishedFolderId Id=\"calendar\"/></m:SyncFolderId>\
             <m:MaxChangesReturned>100</m:MaxChangesReturned></m:SyncFolderItems>",
        )
        .await;

    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(fault.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        fault
            .body
            .contains("<t:Value Name=\"BackOffMilliseconds\">1500</t:Value>"),
        "{}",
        fault.body
    );
    assert_eq!(in_message.status, StatusCode::OK);
    assert!(
        in_message.body.contains("ResponseClass=\"Error\""),
        "{}",
        in_message.body
    );
    assert!(
        in_message.body.contains("ErrorServerBusy"),
        "{}",
        in_message.body
    );
    assert!(
        in_message.body.contains("BackOffMilliseconds"),
        "{}",
        in_message.body
    );
    simulator.shutdown().await;
}

/// A push callback that records what it receives and answers a scripted status.
#[derive(Clone, Default)]
pub(crate) struct Callback {
    /// Bodies received, in order.
    pub bodies: Arc<Mutex<Vec<String>>>,
    /// After this many notifications, answer Unsubscribe.
    pub unsubscribe_after: Option<usize>,
}

async fn receive_push(
    axum::extract::State(callback): axum::extract::State<Callback>,
    body: String,
) -> String {
    let count = {
        let mut bodies = callback.bodies.lock().expect("bodies");
        bodies.push(body);
        bodies.len()
    };
    let status = if callback
        .unsubscribe_after
        .is_some_and(|after| count >= after)
    {
        "Unsubscribe"
    } else {
        "OK"
    };
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:m=\"http://schemas.microsoft.com/exchange/services/2006/messages\"><s:Body>\
         <m:SendNotificationResult><m:SubscriptionStatus>{status}</m:SubscriptionStatus>\
         </m:SendNotificationResult></s:Body></s:Envelope>"
    )
}

/// Serves `callback` on a free port and returns its URL.
pub(crate) async fn serve_callback(callback: Callback) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let app = axum::Router::new()
        .route("/push", axum::routing::post(receive_push))
        .with_state(callback);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/push")
}

pub(crate) fn push_subscribe(url: &str, frequency: u32) -> String {
    format!(
        "<m:Subscribe><m:PushSubscriptionRequest><t:FolderIds><t:DistinguishedFolderId Id=\"calendar\"/>\
         </t:FolderIds><t:EventTypes><t:EventType>CreatedEvent</t:EventType><t:EventType>ModifiedEvent</t:EventType>\
         </t:EventTypes><t:StatusFrequency>{frequency}</t:StatusFrequency><t:URL>{url}</t:URL>\
         </m:PushSubscriptionRequest></m:Subscribe>"
    )
}

pub(crate) async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..300 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn push_delivers_chained_notifications_pings_and_honours_unsubscribe() {
    let simulator = start(SimConfig {
        minute: Duration::from_millis(400),
        ..SimConfig::default()
    })
    .await;
    let ews = Ews::new(simulator.ews_url());
    let callback = Callback {
        unsubscribe_after: Some(3),
        ..Callback::default()
    };
    let url = serve_callback(callback.clone()).await;

    let answer = ews.call(Some(ROOM), &[], &push_subscribe(&url, 1)).await;
    let watermark = between(&answer.body, "Watermark>", "<").expect("a watermark");
    simulator
        .control()
        .create_appointment(ROOM, appointment("Pushed", 9))
        .expect("created");
    let bodies = Arc::clone(&callback.bodies);
    wait_until("three notifications arrived", || {
        bodies.lock().expect("bodies").len() >= 3
    })
    .await;
    wait_until("the subscription ended", || {
        simulator.control().stats().push.subscriptions_unsubscribed == 1
    })
    .await;

    let bodies = callback.bodies.lock().expect("bodies").clone();
    assert!(
        bodies[0].contains(&format!("PreviousWatermark>{watermark}<")),
        "{}",
        bodies[0]
    );
    assert!(bodies[0].contains("CreatedEvent"), "{}", bodies[0]);
    assert!(
        bodies.iter().any(|body| body.contains("StatusEvent")),
        "no status ping"
    );
    for pair in bodies.windows(2) {
        let last = pair[0]
            .rsplit("<t:Watermark>")
            .next()
            .and_then(|rest| rest.split('<').next());
        let previous = between(&pair[1], "<t:PreviousWatermark>", "<");
        assert_eq!(last.map(str::to_owned), previous, "watermarks do not chain");
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        callback.bodies.lock().expect("bodies").len(),
        3,
        "sent after Unsubscribe"
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn push_subscription_with_a_bad_url_or_frequency_is_refused() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());

    let bad_url = ews
        .call(Some(ROOM), &[], &push_subscribe("ftp://x.example/p", 1))
        .await;
    let bad_frequency = ews
        .call(
            Some(ROOM),
            &[],
            &push_subscribe("http://127.0.0.1:9/p", 1441),
        )
        .await;

    assert!(
        bad_url.body.contains("ErrorInvalidPushSubscriptionUrl"),
        "{}",
        bad_url.body
    );
    assert!(
        !bad_frequency.body.contains("NoError"),
        "{}",
        bad_frequency.body
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn unsubscribe_cannot_end_a_push_subscription() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let url = serve_callback(Callback::default()).await;
    let answer = ews.call(Some(ROOM), &[], &push_subscribe(&url, 1)).await;
    let id = client::subscription_id(&answer.body);

    let refused = ews
        .call(
            Some(ROOM),
            &[],
            &format!("<m:Unsubscribe><m:SubscriptionId>{id}</m:SubscriptionId></m:Unsubscribe>"),
        )
        .await;

    assert!(
        refused.body.contains("ErrorInvalidPullSubscriptionId"),
        "{}",
        refused.body
    );
    simulator.shutdown().await;
}

pub(crate) async fn open_stream(simulator: &SimHandle, ids: &[String]) -> reqwest::Response {
    reqwest::Client::new()
        .post(simulator.ews_url())
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(client::envelope(
            Some(ROOM),
            &client::get_streaming_events(ids, 1),
        ))
        .send()
        .await
        .expect("stream opens")
}

#[tokio::test]
async fn expire_subscriptions_fault_makes_every_subscription_unknown() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let answer = ews
        .call(Some(ROOM), &[], client::streaming_subscribe())
        .await;
    let id = client::subscription_id(&answer.body);

    let injected = reqwest::Client::new()
        .post(format!("{}/_sim/faults", simulator.base_url()))
        .header("Content-Type", "application/json")
        .body(json!({ "kind": "expire_subscriptions" }).to_string())
        .send()
        .await
        .expect("fault accepted");
    let stream = open_stream(&simulator, &[id])
        .await
        .text()
        .await
        .expect("stream body");

    assert!(injected.status().is_success());
    assert!(stream.contains("ErrorSubscriptionNotFound"), "{stream}");
    assert_eq!(simulator.control().stats().subscriptions, 0);
    simulator.shutdown().await;
}

#[tokio::test]
async fn missed_events_fault_reports_error_and_keeps_the_subscription() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let answer = ews
        .call(Some(ROOM), &[], client::streaming_subscribe())
        .await;
    let id = client::subscription_id(&answer.body);

    simulator.control().inject_fault(Fault::MissedEvents {
        mailboxes: vec![MailboxAddress::new(ROOM)],
        count: None,
    });
    let stream = open_stream(&simulator, &[id])
        .await
        .text()
        .await
        .expect("stream body");

    assert!(stream.contains("ErrorMissedNotificationEvents"), "{stream}");
    assert_eq!(simulator.control().stats().subscriptions, 1);
    simulator.shutdown().await;
}

#[tokio::test]
async fn server_busy_and_http_status_faults_hit_requests_until_healed() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let control = simulator.control();

    control.inject_fault(Fault::ServerBusy {
        backoff_ms: 5000,
        duration_s: 60,
    });
    let busy = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    control.heal();
    control.inject_fault(Fault::HttpStatus {
        status: 503,
        rate: 1.0,
        operations: vec!["GetFolder".to_owned()],
    });
    let unavailable = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    let other_operation = ews.call(Some(ROOM), &[], "<m:GetRoomLists/>").await;
    let healed = reqwest::Client::new()
        .delete(format!("{}/_sim/faults", simulator.base_url()))
        .send()
        .await
        .expect("heal accepted");
    let after = ews.call(Some(ROOM), &[], GET_CALENDAR).await;

    assert_eq!(busy.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        busy.body.contains("BackOffMilliseconds\">5000<"),
        "{}",
        busy.body
    );
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(other_operation.status, StatusCode::OK);
    assert!(healed.status().is_success());
    assert_eq!(after.status, StatusCode::OK);
    simulator.shutdown().await;
}

#[tokio::test]
async fn latency_and_truncation_faults_slow_and_cut_responses() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let control = simulator.control();

    control.inject_fault(Fault::Latency {
        ms: 300,
        operations: Vec::new(),
    });
    let started = std::time::Instant::now();
    let slow = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    let elapsed = started.elapsed();
    control.heal();
    control.inject_fault(Fault::TruncateResponses { rate: 1.0 });
    let cut = ews.call(Some(ROOM), &[], GET_CALENDAR).await;

    assert_eq!(slow.status, StatusCode::OK);
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(
        !cut.body.contains("</s:Envelope>") && !cut.body.contains("</soap:Envelope>"),
        "{}",
        cut.body
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn drop_and_stall_faults_act_on_open_streams() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let answer = ews
        .call(Some(ROOM), &[], client::streaming_subscribe())
        .await;
    let id = client::subscription_id(&answer.body);
    let control = simulator.control();

    let dropped = open_stream(&simulator, std::slice::from_ref(&id)).await;
    control.inject_fault(Fault::DropStreams);
    let dropped_body = tokio::time::timeout(Duration::from_secs(5), dropped.text()).await;
    control.inject_fault(Fault::StallStreams);
    let stalled = open_stream(&simulator, &[id]).await;
    let mut stalled_body = stalled.bytes_stream();
    let silence = tokio::time::timeout(
        Duration::from_millis(1500),
        futures::StreamExt::next(&mut stalled_body),
    )
    .await;
    control.heal();

    let ended = dropped_body.expect("a dropped stream ends at once");
    assert!(
        ended.is_err(),
        "a dropped stream must not end cleanly: {ended:?}"
    );
    assert!(
        silence.is_err(),
        "a stalled stream sent bytes (not even a heartbeat is allowed)"
    );
    simulator.shutdown().await;
}

#[tokio::test]
async fn mailbox_move_kills_subscriptions_then_blocks_then_regroups() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());
    let answer = ews
        .call(Some(ROOM), &[], client::streaming_subscribe())
        .await;
    let id = client::subscription_id(&answer.body);
    let group_before = between(
        &autodiscover(&simulator, &[ROOM]).await,
        "<Name>GroupingInformation</Name><Value>",
        "<",
    );

    let open = open_stream(&simulator, &[id]).await;
    simulator.control().inject_fault(Fault::MailboxMove {
        email: MailboxAddress::new(ROOM),
        duration_s: Some(1),
    });
    let stream = open.text().await.expect("stream body");
    let during = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    let group_after = between(
        &autodiscover(&simulator, &[ROOM]).await,
        "<Name>GroupingInformation</Name><Value>",
        "<",
    );

    assert!(stream.contains("ErrorInvalidSubscription"), "{stream}");
    assert!(stream.contains("MailboxMoveStarted"), "{stream}");
    assert!(
        during.body.contains("ErrorMailboxMoveInProgress"),
        "{}",
        during.body
    );
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    assert_ne!(group_before, group_after);
    simulator.shutdown().await;
}

#[tokio::test]
async fn stats_count_requests_by_operation_and_outcome_and_sent_mail() {
    let simulator = start(SimConfig::default()).await;
    let ews = Ews::new(simulator.ews_url());

    ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    simulator.control().inject_fault(Fault::HttpStatus {
        status: 500,
        rate: 1.0,
        operations: Vec::new(),
    });
    ews.call(Some(ROOM), &[], GET_CALENDAR).await;
    let stats = get_json(&format!("{}/_sim/stats", simulator.base_url())).await;

    assert_eq!(stats["requests"]["GetFolder/ok"], 1, "{stats}");
    assert_eq!(stats["requests"]["GetFolder/fault"], 1, "{stats}");
    assert_eq!(stats["messages_sent"], 0, "{stats}");
    assert!(
        stats["faults"]
            .as_array()
            .is_some_and(|faults| faults.len() == 1),
        "{stats}"
    );
    simulator.shutdown().await;
}
