//! The HTTP side of the EWS client: one shared connection pool, headers, timeouts,
//! the concurrency cap, the account's back-off gate, retries of transient read
//! failures, and mapping of HTTP statuses to errors. The mailbox
//! operations live here; directory lookups are in `ews::directory`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, COOKIE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use super::affinity::{Affinity, BACKEND_OVERRIDE_COOKIE};
use super::auth::Credentials;
use super::config::EwsConfig;
use super::error::{EwsError, ItemError};
use super::requests::{self, RequestContext};
use super::stream::EventStream;
use super::throttle::{self, BackoffGate};
use super::types::{CalendarView, FolderInfo};
use super::xml;
use crate::domain::{CalendarItem, ItemId, MailboxAddress, SubscriptionId, SyncPage, SyncState};
use crate::metrics as m;

/// Most subscriptions one GetStreamingEvents connection may carry.
pub const MAX_SUBSCRIPTIONS_PER_STREAM: usize = 200;
/// SyncFolderItems' MaxChangesReturned range.
pub const MAX_SYNC_CHANGES: u16 = 512;
/// GetStreamingEvents' ConnectionTimeout range, in minutes.
pub const MAX_CONNECTION_TIMEOUT_MINUTES: u8 = 30;
/// Largest non-streaming response body accepted, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Attempts of a read operation (SyncFolderItems, GetItem, FindItem, GetFolder) that
/// fails transiently; the caller's own back-off takes over after the last.
const MAX_READ_ATTEMPTS: u32 = 3;

const CONTENT_TYPE_XML: &str = "text/xml; charset=utf-8";
const ACCEPT_XML: &str = "text/xml";
const SOAP_ACTION: &str = "SOAPAction";
const SOAP_ACTION_PREFIX: &str = "http://schemas.microsoft.com/exchange/services/2006/messages/";
const X_ANCHOR_MAILBOX: &str = "X-AnchorMailbox";
const X_PREFER_SERVER_AFFINITY: &str = "X-PreferServerAffinity";

/// EWS operations, for the SOAPAction header and logs.
#[derive(Debug, Clone, Copy)]
pub(super) enum Operation {
    Subscribe,
    Unsubscribe,
    GetStreamingEvents,
    SyncFolderItems,
    GetItem,
    FindItem,
    GetFolder,
    GetUserSettings,
    ResolveNames,
    GetRoomLists,
    GetRooms,
    CreateItem,
}

impl Operation {
    const ALL: [Self; 12] = [
        Self::Subscribe,
        Self::Unsubscribe,
        Self::GetStreamingEvents,
        Self::SyncFolderItems,
        Self::GetItem,
        Self::FindItem,
        Self::GetFolder,
        Self::GetUserSettings,
        Self::ResolveNames,
        Self::GetRoomLists,
        Self::GetRooms,
        Self::CreateItem,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "Subscribe",
            Self::Unsubscribe => "Unsubscribe",
            Self::GetStreamingEvents => "GetStreamingEvents",
            Self::SyncFolderItems => "SyncFolderItems",
            Self::GetItem => "GetItem",
            Self::FindItem => "FindItem",
            Self::GetFolder => "GetFolder",
            Self::GetUserSettings => "GetUserSettings",
            Self::ResolveNames => "ResolveNames",
            Self::GetRoomLists => "GetRoomLists",
            Self::GetRooms => "GetRooms",
            Self::CreateItem => "CreateItem",
        }
    }

    fn soap_action(self) -> String {
        match self {
            Self::GetUserSettings => requests::GET_USER_SETTINGS_ACTION.to_owned(),
            other => format!("{SOAP_ACTION_PREFIX}{}", other.as_str()),
        }
    }
}

/// Where a request goes and which routing headers it carries.
#[derive(Clone, Copy)]
pub(super) struct Route<'a> {
    pub url: &'a str,
    /// `X-AnchorMailbox`: the impersonated mailbox, or a subscription group's anchor.
    pub anchor: Option<&'a MailboxAddress>,
    /// Subscription requests carry the group's affinity headers and cookie.
    pub affinity: Option<&'a Affinity>,
}

/// A cheap-to-clone EWS client; every clone shares one connection pool and one cap
/// on concurrent non-streaming requests.
#[derive(Debug, Clone)]
pub struct EwsClient {
    inner: Arc<ClientState>,
}

#[derive(Debug)]
struct ClientState {
    http: reqwest::Client,
    config: EwsConfig,
    /// Created here with `max_concurrent_requests` permits; each non-streaming call
    /// holds one until its response body is read. Streams take none: their number is
    /// bounded by the listener's group count.
    permits: Semaphore,
    /// Closed while Exchange throttles the account; every request waits for it.
    gate: BackoffGate,
    credentials: Credentials,
}

impl EwsClient {
    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`EwsError::InvalidArgument`] for an unusable configuration (an invalid URL, no
    /// permits, a user agent that is not a header value), [`EwsError::Transport`] when
    /// the TLS stack cannot be set up.
    pub fn new(config: EwsConfig) -> Result<Self, EwsError> {
        if config.max_concurrent_requests == 0 {
            return Err(EwsError::InvalidArgument(
                "max_concurrent_requests must be at least 1".to_owned(),
            ));
        }
        reqwest::Url::parse(&config.url)
            .map_err(|err| EwsError::InvalidArgument(format!("invalid ews url: {err}")))?;
        HeaderValue::from_str(&config.user_agent).map_err(|_| {
            EwsError::InvalidArgument("user agent is not a valid header value".to_owned())
        })?;
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.request_timeout)
            .build()
            .map_err(EwsError::Transport)?;
        Ok(Self {
            inner: Arc::new(ClientState {
                http,
                permits: Semaphore::new(config.max_concurrent_requests),
                gate: BackoffGate::default(),
                credentials: Credentials::new(config.auth.clone()),
                config,
            }),
        })
    }

    /// Subscribes `mailbox`'s calendar for streaming notifications, as a member of the
    /// affinity group; keeps the backend cookie the response sets.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`]; notably `AccessDenied`, `MailboxNotFound`, `Throttled`.
    pub async fn subscribe_streaming(
        &self,
        mailbox: &MailboxAddress,
        affinity: &Affinity,
    ) -> Result<SubscriptionId, EwsError> {
        let body = requests::subscribe_streaming(&self.context(mailbox));
        self.call(
            Operation::Subscribe,
            body,
            self.group_route(affinity),
            xml::parse_subscribe,
        )
        .await
    }

    /// Ends a subscription; one that no longer exists counts as ended.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`] other than a missing subscription.
    pub async fn unsubscribe(
        &self,
        mailbox: &MailboxAddress,
        affinity: &Affinity,
        id: &SubscriptionId,
    ) -> Result<(), EwsError> {
        let body = requests::unsubscribe(&self.context(mailbox), id);
        self.call(
            Operation::Unsubscribe,
            body,
            self.group_route(affinity),
            xml::parse_unsubscribe,
        )
        .await
    }

    /// Opens one streaming connection for up to 200 subscriptions (impersonating the anchor).
    ///
    /// `connection_timeout_minutes` is clamped to 1..=30. The request timeout covers
    /// only the wait for the response headers; watching the open stream for silence is
    /// the caller's job.
    ///
    /// # Errors
    ///
    /// [`EwsError::InvalidArgument`] for no ids or more than 200; otherwise any
    /// [`EwsError`] of the HTTP exchange. Errors inside the stream arrive as messages.
    pub async fn get_streaming_events(
        &self,
        affinity: &Affinity,
        ids: &[SubscriptionId],
        connection_timeout_minutes: u8,
    ) -> Result<EventStream, EwsError> {
        if ids.is_empty() || ids.len() > MAX_SUBSCRIPTIONS_PER_STREAM {
            return Err(EwsError::InvalidArgument(format!(
                "a stream carries 1 to {MAX_SUBSCRIPTIONS_PER_STREAM} subscriptions, not {}",
                ids.len()
            )));
        }
        let minutes = connection_timeout_minutes.clamp(1, MAX_CONNECTION_TIMEOUT_MINUTES);
        let body = requests::get_streaming_events(&self.context(affinity.anchor()), ids, minutes);
        let timeout = self.inner.config.request_timeout;
        self.inner.gate.wait_open().await;
        let opening = self.send(
            Operation::GetStreamingEvents,
            &body,
            self.group_route(affinity),
        );
        let started = tokio::time::Instant::now();
        let result = self.open_stream(opening, timeout).await;
        record(
            Operation::GetStreamingEvents,
            started,
            result.as_ref().err(),
        );
        result
    }

    /// Waits for a GetStreamingEvents answer: the stream on 200, else the error.
    async fn open_stream(
        &self,
        opening: impl std::future::Future<Output = Result<reqwest::Response, EwsError>>,
        timeout: Duration,
    ) -> Result<EventStream, EwsError> {
        let response = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| EwsError::Timeout)??;
        if response.status() == StatusCode::OK {
            return Ok(EventStream::new(response.bytes_stream()));
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(timeout, read_body(response))
            .await
            .map_err(|_| EwsError::Timeout)??;
        let err = status_error(status, &headers, &body);
        self.note_throttle(&err);
        Err(err)
    }

    /// One page of calendar changes since `state` (`None`: everything, as creates).
    ///
    /// `max_changes` is clamped to 1..=512.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`]; `InvalidSyncState` means: start again without a state.
    pub async fn sync_folder_items(
        &self,
        mailbox: &MailboxAddress,
        state: Option<&SyncState>,
        max_changes: u16,
    ) -> Result<SyncPage, EwsError> {
        let max_changes = max_changes.clamp(1, MAX_SYNC_CHANGES);
        let body = requests::sync_folder_items(&self.context(mailbox), state, max_changes);
        self.read(
            Operation::SyncFolderItems,
            &body,
            self.mailbox_route(mailbox),
            xml::parse_sync_folder_items,
        )
        .await
    }

    /// One GetItem for all ids; one result per id, in order (ErrorItemNotFound -> Err(ItemError::NotFound)).
    ///
    /// # Errors
    ///
    /// An [`EwsError`] when the whole call failed, including a per-item code that
    /// concerns the whole request (throttling, a moving or missing mailbox), or when
    /// Exchange answered with a different number of results than ids. Any other
    /// per-item code (access denied to one item, a malformed id) fails only that item.
    pub async fn get_calendar_items(
        &self,
        mailbox: &MailboxAddress,
        ids: &[ItemId],
    ) -> Result<Vec<Result<CalendarItem, ItemError>>, EwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = requests::get_item(&self.context(mailbox), ids);
        let results = self
            .read(
                Operation::GetItem,
                &body,
                self.mailbox_route(mailbox),
                xml::parse_get_item,
            )
            .await?;
        if results.len() != ids.len() {
            return Err(EwsError::Malformed(format!(
                "{} results for {} requested items",
                results.len(),
                ids.len()
            )));
        }
        Ok(results)
    }

    /// Singles, occurrences and exceptions overlapping [`from`, `to`), at most
    /// `max_entries` of them.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`]; a window over two years is refused by Exchange
    /// (`Response` with ErrorCalendarViewRangeTooBig).
    pub async fn find_calendar_view(
        &self,
        mailbox: &MailboxAddress,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_entries: u32,
    ) -> Result<CalendarView, EwsError> {
        let body =
            requests::find_calendar_view(&self.context(mailbox), from, to, max_entries.max(1));
        self.read(
            Operation::FindItem,
            &body,
            self.mailbox_route(mailbox),
            xml::parse_find_calendar_view,
        )
        .await
    }

    /// The calendar folder's id and item count.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`].
    pub async fn get_calendar_folder(
        &self,
        mailbox: &MailboxAddress,
    ) -> Result<FolderInfo, EwsError> {
        let body = requests::get_folder(&self.context(mailbox));
        self.read(
            Operation::GetFolder,
            &body,
            self.mailbox_route(mailbox),
            xml::parse_get_folder,
        )
        .await
    }

    /// Data requests go to the EWS URL, anchored on the mailbox they read.
    pub(super) fn mailbox_route<'a>(&'a self, mailbox: &'a MailboxAddress) -> Route<'a> {
        Route {
            url: &self.inner.config.url,
            anchor: Some(mailbox),
            affinity: None,
        }
    }

    /// Subscription requests go to the EWS URL, anchored on the group's anchor.
    fn group_route<'a>(&'a self, affinity: &'a Affinity) -> Route<'a> {
        Route {
            url: &self.inner.config.url,
            anchor: Some(affinity.anchor()),
            affinity: Some(affinity),
        }
    }

    pub(super) fn context<'a>(&'a self, mailbox: &'a MailboxAddress) -> RequestContext<'a> {
        RequestContext {
            server_version: &self.inner.config.server_version,
            mailbox,
            impersonate: self.inner.config.impersonation,
        }
    }

    /// Sends one request; when EWS answers 401 and the token can be renewed, renews it
    /// and sends the request once more.
    async fn send(
        &self,
        operation: Operation,
        body: &str,
        route: Route<'_>,
    ) -> Result<reqwest::Response, EwsError> {
        let response = self.send_once(operation, body, route).await?;
        if response.status() == StatusCode::UNAUTHORIZED && self.inner.credentials.is_renewable() {
            self.inner.credentials.invalidate().await;
            return self.send_once(operation, body, route).await;
        }
        Ok(response)
    }

    async fn send_once(
        &self,
        operation: Operation,
        body: &str,
        route: Route<'_>,
    ) -> Result<reqwest::Response, EwsError> {
        let mut request = self
            .inner
            .http
            .post(route.url)
            .header(CONTENT_TYPE, CONTENT_TYPE_XML)
            .header(ACCEPT, ACCEPT_XML)
            .header(SOAP_ACTION, operation.soap_action())
            .body(body.to_owned());
        if let Some(anchor) = route.anchor {
            request = request.header(X_ANCHOR_MAILBOX, anchor.as_str());
        }
        if let Some(affinity) = route.affinity {
            request = request.header(X_PREFER_SERVER_AFFINITY, "true");
            if let Some(cookie) = affinity.backend_cookie() {
                request = request.header(COOKIE, format!("{BACKEND_OVERRIDE_COOKIE}={cookie}"));
            }
        }
        let request = self
            .inner
            .credentials
            .apply(&self.inner.http, request)
            .await?;
        let response = request.send().await.map_err(transport)?;
        if let Some(affinity) = route.affinity {
            affinity.remember(response.headers());
        }
        Ok(response)
    }

    /// Sends a non-streaming request under a permit and the request timeout, and
    /// parses the body of a 200 answer with `parse`. The request is counted by the
    /// outcome of both, so an error inside a response message (ErrorServerBusy with
    /// HTTP 200) counts as that error, not as a success.
    pub(super) async fn call<T>(
        &self,
        operation: Operation,
        body: String,
        route: Route<'_>,
        parse: impl FnOnce(&[u8]) -> Result<T, EwsError>,
    ) -> Result<T, EwsError> {
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| EwsError::InvalidArgument("client is shut down".to_owned()))?;
        self.inner.gate.wait_open().await;
        let started = tokio::time::Instant::now();
        let exchange = async {
            let response = self.send(operation, &body, route).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_body(response).await?;
            if status == StatusCode::OK {
                Ok(body)
            } else {
                Err(status_error(status, &headers, &body))
            }
        };
        let result = tokio::time::timeout(self.inner.config.request_timeout, exchange)
            .await
            .map_err(|_| EwsError::Timeout)
            .and_then(|result| result)
            .and_then(|body| parse(&body));
        record(operation, started, result.as_ref().err());
        if let Err(err) = &result {
            self.note_throttle(err);
        }
        result
    }

    /// A read operation: [`Self::call`] and `parse`, retried on transport failures,
    /// 5xx answers and cut-short or garbled bodies, at most [`MAX_READ_ATTEMPTS`]
    /// times with capped, jittered exponential delays (and never before the back-off
    /// gate opens).
    async fn read<T>(
        &self,
        operation: Operation,
        body: &str,
        route: Route<'_>,
        parse: impl Fn(&[u8]) -> Result<T, EwsError>,
    ) -> Result<T, EwsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A throttle inside a response message closes the gate as well (`call`).
            let result = self.call(operation, body.to_owned(), route, &parse).await;
            match result {
                Err(err) if attempt < MAX_READ_ATTEMPTS && retries_read(&err) => {
                    tracing::debug!(
                        operation = operation.as_str(),
                        attempt,
                        error = %err,
                        "EWS read failed, retrying"
                    );
                    tokio::time::sleep(throttle::retry_delay(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Closes the back-off gate when `err` says Exchange throttles the account.
    fn note_throttle(&self, err: &EwsError) {
        // The throttle itself is counted by `record`, per operation.
        if let EwsError::Throttled {
            backoff: Some(hint),
        } = err
        {
            let pause = self.inner.gate.close_for(*hint);
            tracing::debug!(pause = ?pause, "Exchange throttles the account, pausing requests");
        }
    }

    /// When the account's back-off gate opens again, if it is closed now.
    pub fn throttled_until(&self) -> Option<tokio::time::Instant> {
        self.inner.gate.closed_until()
    }
}

/// Whether a read is worth repeating after a short delay: the request never reached
/// a verdict (a transport failure, a cut-short or garbled body), a 5xx, or a throttle
/// without a hint. A hinted throttle closed the account's gate for longer than a
/// worker should hold a mailbox, so it goes back to the caller, and so do timeouts:
/// a black-holed server stalls a worker for one timeout, not several.
fn retries_read(err: &EwsError) -> bool {
    match err {
        EwsError::Transport(_) | EwsError::Malformed(_) => true,
        EwsError::Throttled { backoff } => backoff.is_none(),
        EwsError::ConnectionLimit => true,
        EwsError::Http { status } => *status >= 500,
        _ => false,
    }
}

/// Creates the throttling series of every operation at 0, so an alert on them sees
/// a series before the first back-off.
pub fn init_metrics() {
    for operation in Operation::ALL {
        metrics::counter!(m::EWS_THROTTLED, "operation" => operation.as_str()).absolute(0);
    }
}

/// Counts a finished request by operation and outcome, times it, and counts a
/// throttling back-off. For a stream the time is until its headers arrived.
fn record(operation: Operation, started: tokio::time::Instant, error: Option<&EwsError>) {
    let outcome = error.map_or("ok", outcome_of);
    let elapsed = started.elapsed();
    metrics::counter!(m::EWS_REQUESTS, "operation" => operation.as_str(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(m::EWS_REQUEST_DURATION, "operation" => operation.as_str())
        .record(elapsed.as_secs_f64());
    if matches!(
        error,
        Some(EwsError::Throttled { .. } | EwsError::ConnectionLimit)
    ) {
        metrics::counter!(m::EWS_THROTTLED, "operation" => operation.as_str()).increment(1);
    }
    tracing::debug!(
        operation = operation.as_str(),
        outcome,
        ?elapsed,
        "EWS request finished"
    );
}

/// The `outcome` label of an error (one of [`m::EWS_OUTCOMES`]).
fn outcome_of(error: &EwsError) -> &'static str {
    match error {
        EwsError::Throttled { .. } | EwsError::ConnectionLimit => "throttled",
        EwsError::Timeout => "timeout",
        EwsError::Transport(_) => "transport",
        EwsError::Unauthorized | EwsError::Forbidden => "unauthorized",
        EwsError::Http { .. } => "http_error",
        EwsError::SubscriptionGone { .. } => "subscription_gone",
        EwsError::InvalidSyncState => "invalid_sync_state",
        EwsError::MailboxUnavailable { .. }
        | EwsError::MailboxNotFound
        | EwsError::AccessDenied { .. } => "mailbox_error",
        EwsError::Malformed(_) => "malformed",
        EwsError::InvalidArgument(_) | EwsError::Response { .. } => "error",
    }
}

/// Reads a whole response body, refusing more than [`MAX_RESPONSE_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Bytes, EwsError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(EwsError::Malformed(format!(
                "response body exceeds {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

/// The error of a non-200 answer: a SOAP fault when there is one, else by status.
fn status_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> EwsError {
    match status {
        StatusCode::UNAUTHORIZED => EwsError::Unauthorized,
        StatusCode::FORBIDDEN => EwsError::Forbidden,
        StatusCode::SERVICE_UNAVAILABLE => EwsError::Throttled {
            backoff: retry_after(headers),
        },
        _ => xml::parse_fault(body).unwrap_or(EwsError::Http {
            status: status.as_u16(),
        }),
    }
}

/// Retry-After in delta-seconds (the form servers use for 503).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn transport(err: reqwest::Error) -> EwsError {
    if err.is_timeout() {
        EwsError::Timeout
    } else {
        EwsError::Transport(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_unavailable_becomes_throttled_with_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));

        let error = status_error(StatusCode::SERVICE_UNAVAILABLE, &headers, b"");

        assert_eq!(error.backoff_hint(), Some(Duration::from_secs(7)));
    }
}
