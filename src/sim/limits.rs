//! Simulated back ends, affinity, and Exchange's per-account limits.
//!
//! This module owns where each mailbox and each subscription lives (one of several
//! simulated back-end servers), the `X-BackEndOverrideCookie` affinity rule, the
//! HangingConnectionLimit (open streams per account), EWSMaxSubscriptions (per target
//! mailbox) and the per-account request budget that answers ErrorServerBusy.
//! It is pure bookkeeping: the dispatcher asks it before running an operation and
//! renders its errors with [`LimitError::code`], [`LimitError::message`] and
//! [`LimitError::backoff`]. It never sees XML.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::domain::MailboxAddress;
use crate::sim::soap::{self, Ns, SoapRequest, NS_MESSAGES, NS_TYPES};
use crate::sim::{stream, Layer, RequestContext, SimState};
use crate::sync::lock;

/// Name of the affinity cookie and header.
pub const BACKEND_COOKIE: &str = "X-BackEndOverrideCookie";
/// Header naming the mailbox a request should be routed by.
pub const ANCHOR_HEADER: &str = "X-AnchorMailbox";
/// Header asking for affinity routing of subscription requests.
pub const PREFER_AFFINITY_HEADER: &str = "X-PreferServerAffinity";

/// Default number of simulated back ends.
pub const DEFAULT_BACKENDS: u16 = 4;
/// Exchange Online's HangingConnectionLimit.
pub const DEFAULT_HANGING_CONNECTION_LIMIT: usize = 10;
/// The budget account of requests made without authentication.
const ANONYMOUS_ACCOUNT: &str = "anonymous";
/// Exchange Online's EWSMaxSubscriptions.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 20;

/// One simulated back-end (mailbox) server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(pub u16);

impl BackendId {
    /// The server's host name.
    pub fn host(self) -> String {
        format!(
            "SIMPR{:02}MB{:04}.sim.example",
            self.0,
            1000 + u32::from(self.0)
        )
    }

    /// The GroupingInformation Autodiscover reports for the server's mailboxes.
    pub fn grouping_information(self) -> String {
        format!("SIMPR{:02}", self.0)
    }

    /// The value of the affinity cookie that routes to this server.
    pub fn cookie_value(self) -> String {
        format!("{}~{}", self.host(), 1_593_847_261 + u64::from(self.0))
    }

    /// Reads a cookie value back, if it names one of `count` servers.
    pub fn from_cookie_value(value: &str, count: u16) -> Option<Self> {
        (0..count)
            .map(BackendId)
            .find(|backend| backend.cookie_value() == value.trim())
    }
}

/// A per-account request budget: at most `requests` per `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestBudget {
    /// Requests allowed per window.
    pub requests: u32,
    /// The window length.
    pub window: Duration,
    /// The back-off announced when the budget is spent (and the penalty length).
    pub backoff: Duration,
    /// Operations that report ErrorServerBusy inside their response message (like
    /// SyncFolderItems in Exchange Online) instead of as an HTTP 500 SOAP fault.
    pub in_message_operations: Vec<String>,
}

/// The simulator's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Open GetStreamingEvents connections per account.
    pub hanging_connection_limit: usize,
    /// Count streams against the authenticated account, whatever mailbox the
    /// connection impersonates (a service account without impersonation, or an
    /// Exchange that charges the caller); `false` charges the impersonated mailbox.
    pub connections_per_account: bool,
    /// Subscriptions per target mailbox.
    pub max_subscriptions_per_mailbox: usize,
    /// The per-account request budget; `None` means unlimited.
    pub request_budget: Option<RequestBudget>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            hanging_connection_limit: DEFAULT_HANGING_CONNECTION_LIMIT,
            connections_per_account: false,
            max_subscriptions_per_mailbox: DEFAULT_MAX_SUBSCRIPTIONS,
            request_budget: None,
        }
    }
}

/// A refusal by the limits layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The subscription does not live on the back end the request reached.
    #[error("subscription not found on this back end")]
    SubscriptionNotFound,
    /// Too many open streams for the account.
    #[error("too many concurrent connections")]
    ExceededConnectionCount,
    /// Too many subscriptions for the target mailbox.
    #[error("too many subscriptions")]
    ExceededSubscriptionCount,
    /// The account's budget is spent.
    #[error("server busy")]
    ServerBusy {
        /// How long the client must wait.
        backoff: Duration,
    },
}

impl LimitError {
    /// The EWS response code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SubscriptionNotFound => "ErrorSubscriptionNotFound",
            Self::ExceededConnectionCount => "ErrorExceededConnectionCount",
            Self::ExceededSubscriptionCount => "ErrorExceededSubscriptionCount",
            Self::ServerBusy { .. } => "ErrorServerBusy",
        }
    }

    /// The message text Exchange sends.
    pub fn message(&self) -> &'static str {
        match self {
            Self::SubscriptionNotFound => "The specified subscription was not found.",
            Self::ExceededConnectionCount => {
                "You have exceeded the maximum number of concurrent connections for your account."
            }
            Self::ExceededSubscriptionCount => {
                "You have exceeded the available subscriptions for your account. Remove unnecessary subscriptions and try your request again."
            }
            Self::ServerBusy { .. } => {
                "The server cannot service this request right now. Try again later."
            }
        }
    }

    /// The BackOffMilliseconds hint, for ErrorServerBusy.
    pub fn backoff(&self) -> Option<Duration> {
        match self {
            Self::ServerBusy { backoff } => Some(*backoff),
            _ => None,
        }
    }
}

/// The routing-relevant headers of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteHeaders {
    /// `X-AnchorMailbox`.
    pub anchor: Option<MailboxAddress>,
    /// `X-PreferServerAffinity: true`.
    pub prefer_affinity: bool,
    /// `X-BackEndOverrideCookie`, from the Cookie header or a plain header.
    pub cookie: Option<String>,
}

impl RouteHeaders {
    /// Reads the routing headers of a request.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let from_cookie_header = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| name.eq_ignore_ascii_case(BACKEND_COOKIE))
            .map(|(_, value)| value.to_owned());
        Self {
            anchor: text(ANCHOR_HEADER).map(MailboxAddress::new),
            prefer_affinity: text(PREFER_AFFINITY_HEADER)
                .is_some_and(|value| value.eq_ignore_ascii_case("true")),
            cookie: from_cookie_header.or_else(|| text(BACKEND_COOKIE).map(str::to_owned)),
        }
    }
}

/// Where a Subscribe landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribePlacement {
    /// The back end that holds the new subscription.
    pub backend: BackendId,
    /// A `Set-Cookie` value to send, for the first subscription of an affinity group.
    pub set_cookie: Option<String>,
}

/// An open stream counted against an account's HangingConnectionLimit; dropping it
/// closes the slot.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<Limits>,
    owner: String,
    account: String,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut state = lock(&self.limits.state);
        if let Some(count) = state.connections.get_mut(&self.owner) {
            *count = count.saturating_sub(1);
        }
        if let Some(streams) = state.accounts.get_mut(&self.account) {
            streams.open = streams.open.saturating_sub(1);
        }
    }
}

/// The limits layer: configuration and counters, shared by every request.
#[derive(Debug)]
pub struct Limits {
    backends: u16,
    config: Mutex<LimitsConfig>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    relocated: HashMap<MailboxAddress, BackendId>,
    connections: HashMap<String, usize>,
    accounts: HashMap<String, AccountStreams>,
    connection_refusals: u64,
    budgets: HashMap<String, Budget>,
}

/// Streams of one authenticated account, whatever mailboxes they impersonate.
#[derive(Debug, Default)]
struct AccountStreams {
    open: usize,
    peak: usize,
}

#[derive(Debug, Clone)]
struct Budget {
    window_start: Instant,
    used: u32,
    penalty_until: Option<Instant>,
}

impl Limits {
    /// Builds the limits layer over `backends` simulated back ends (at least one).
    pub fn new(config: LimitsConfig, backends: u16) -> Self {
        Self {
            backends: backends.max(1),
            config: Mutex::new(config),
            state: Mutex::new(State::default()),
        }
    }

    /// A copy of the configuration.
    pub fn config(&self) -> LimitsConfig {
        lock(&self.config).clone()
    }

    /// Replaces the request budget (`None` removes it) and forgets spent budgets.
    pub fn set_request_budget(&self, budget: Option<RequestBudget>) {
        lock(&self.config).request_budget = budget;
        lock(&self.state).budgets.clear();
    }

    /// The back end a mailbox lives on.
    pub fn home(&self, mailbox: &MailboxAddress) -> BackendId {
        if let Some(backend) = lock(&self.state).relocated.get(mailbox) {
            return *backend;
        }
        let count = self.backend_count();
        let digest = Sha256::digest(mailbox.as_str().as_bytes());
        BackendId(u16::from_be_bytes([digest[0], digest[1]]) % count)
    }

    /// Moves a mailbox to another back end (a mailbox move) and returns the new one.
    pub fn relocate(&self, mailbox: &MailboxAddress) -> BackendId {
        let count = self.backend_count();
        let next = BackendId((self.home(mailbox).0 + 1) % count);
        lock(&self.state).relocated.insert(mailbox.clone(), next);
        next
    }

    /// The back end a request reaches: the cookie's when it is valid, else the anchor
    /// mailbox's, else the acting mailbox's, else `None` (any back end).
    pub fn route(
        &self,
        headers: &RouteHeaders,
        acting: Option<&MailboxAddress>,
    ) -> Option<BackendId> {
        let count = self.backend_count();
        headers
            .cookie
            .as_deref()
            .and_then(|cookie| BackendId::from_cookie_value(cookie, count))
            .or_else(|| headers.anchor.as_ref().map(|anchor| self.home(anchor)))
            .or_else(|| acting.map(|mailbox| self.home(mailbox)))
    }

    /// Places a new subscription for `target`, which has `existing` subscriptions
    /// already, enforcing EWSMaxSubscriptions.
    ///
    /// # Errors
    ///
    /// [`LimitError::ExceededSubscriptionCount`] when the mailbox has too many.
    pub fn place_subscription(
        &self,
        target: &MailboxAddress,
        existing: usize,
        headers: &RouteHeaders,
    ) -> Result<SubscribePlacement, LimitError> {
        if existing >= self.config().max_subscriptions_per_mailbox {
            return Err(LimitError::ExceededSubscriptionCount);
        }
        let count = self.backend_count();
        let cookie_backend = headers
            .cookie
            .as_deref()
            .and_then(|cookie| BackendId::from_cookie_value(cookie, count));
        let backend = self
            .route(headers, Some(target))
            .unwrap_or_else(|| self.home(target));
        let set_cookie = (headers.prefer_affinity
            && headers.anchor.is_some()
            && cookie_backend.is_none())
        .then(|| {
            format!(
                "{BACKEND_COOKIE}={}; path=/; secure; HttpOnly",
                backend.cookie_value()
            )
        });
        Ok(SubscribePlacement {
            backend,
            set_cookie,
        })
    }

    /// Checks that a request about a subscription living on `holder` reached that
    /// back end. A request that names no back end at all (no cookie, anchor or acting
    /// mailbox) passes, as does a subscription placed without affinity.
    ///
    /// # Errors
    ///
    /// [`LimitError::SubscriptionNotFound`] for a request routed elsewhere.
    pub fn check_route(
        &self,
        holder: Option<BackendId>,
        headers: &RouteHeaders,
        acting: Option<&MailboxAddress>,
    ) -> Result<(), LimitError> {
        match (holder, self.route(headers, acting)) {
            (Some(holder), Some(reached)) if holder != reached => {
                Err(LimitError::SubscriptionNotFound)
            }
            _ => Ok(()),
        }
    }

    /// Takes one of the streaming connection slots of `owner` (the impersonated
    /// mailbox, or the account) for a stream opened by the authenticated `account`,
    /// whose concurrent streams are counted for [`Limits::peak_streams`].
    ///
    /// # Errors
    ///
    /// [`LimitError::ExceededConnectionCount`] when every slot is taken.
    pub fn open_stream(
        self: &Arc<Self>,
        owner: &str,
        account: &str,
    ) -> Result<ConnectionPermit, LimitError> {
        let config = self.config();
        let owner = if config.connections_per_account {
            account
        } else {
            owner
        };
        let mut state = lock(&self.state);
        let count = state.connections.entry(owner.to_owned()).or_insert(0);
        if *count >= config.hanging_connection_limit {
            state.connection_refusals += 1;
            return Err(LimitError::ExceededConnectionCount);
        }
        *count += 1;
        let streams = state.accounts.entry(account.to_owned()).or_default();
        streams.open += 1;
        streams.peak = streams.peak.max(streams.open);
        Ok(ConnectionPermit {
            limits: Arc::clone(self),
            owner: owner.to_owned(),
            account: account.to_owned(),
        })
    }

    /// How many streams `owner` has open.
    pub fn open_streams(&self, owner: &str) -> usize {
        lock(&self.state)
            .connections
            .get(owner)
            .copied()
            .unwrap_or(0)
    }

    /// The most streams each authenticated account held open at once.
    pub fn peak_streams(&self) -> BTreeMap<String, usize> {
        lock(&self.state)
            .accounts
            .iter()
            .map(|(account, streams)| (account.clone(), streams.peak))
            .collect()
    }

    /// GetStreamingEvents requests refused with ErrorExceededConnectionCount.
    pub fn connection_refusals(&self) -> u64 {
        lock(&self.state).connection_refusals
    }

    /// Charges one request to `account`'s budget.
    ///
    /// A request inside the penalty period restarts the penalty, so a client that
    /// retries early waits longer.
    ///
    /// # Errors
    ///
    /// [`LimitError::ServerBusy`] when the budget is spent or the penalty still runs.
    pub fn charge(&self, account: &str) -> Result<(), LimitError> {
        let Some(budget) = self.config().request_budget else {
            return Ok(());
        };
        let now = Instant::now();
        let mut state = lock(&self.state);
        let entry = state.budgets.entry(account.to_owned()).or_insert(Budget {
            window_start: now,
            used: 0,
            penalty_until: None,
        });
        if let Some(until) = entry.penalty_until {
            if now < until {
                entry.penalty_until = Some(now + budget.backoff);
                return Err(LimitError::ServerBusy {
                    backoff: budget.backoff,
                });
            }
            entry.penalty_until = None;
            entry.window_start = now;
            entry.used = 0;
        }
        if now.duration_since(entry.window_start) >= budget.window {
            entry.window_start = now;
            entry.used = 0;
        }
        if entry.used >= budget.requests {
            entry.penalty_until = Some(now + budget.backoff);
            return Err(LimitError::ServerBusy {
                backoff: budget.backoff,
            });
        }
        entry.used += 1;
        Ok(())
    }

    /// Whether `operation` reports ErrorServerBusy inside its response message.
    pub fn busy_in_message(&self, operation: &str) -> bool {
        self.config().request_budget.is_some_and(|budget| {
            budget
                .in_message_operations
                .iter()
                .any(|op| op == operation)
        })
    }

    /// The number of simulated back ends.
    pub fn backend_count(&self) -> u16 {
        self.backends
    }
}

/// The request layer for budgets, affinity and connection limits.
///
/// Every request is charged to its account's budget. Subscribe is placed on a back end
/// (and may set the affinity cookie or hit EWSMaxSubscriptions); GetStreamingEvents and
/// Unsubscribe that carry affinity headers must reach the subscription's back end; a
/// stream takes one of its owner's connection slots until its body ends.
pub fn layer() -> Layer {
    Arc::new(
        |state: Arc<SimState>, mut context: RequestContext, request: Arc<SoapRequest>| {
            Box::pin(async move {
                let account = context
                    .principal
                    .clone()
                    .unwrap_or_else(|| ANONYMOUS_ACCOUNT.to_owned());
                if let Err(busy) = state.limits.charge(&account) {
                    return Err(busy_response(&state, &context.operation, &busy));
                }
                let headers = RouteHeaders::from_headers(&context.headers);
                let refusal = match context.operation.as_str() {
                    "Subscribe" => place(&state, &mut context, &headers),
                    "Unsubscribe" => crate::sim::push::unsubscribe_refusal(&state, &request)
                        .or_else(|| check_routes(&state, &context, &request, &headers)),
                    "GetStreamingEvents" => check_routes(&state, &context, &request, &headers),
                    _ => None,
                };
                if let Some(refusal) = refusal {
                    return Err(refusal);
                }
                if context.operation == "GetStreamingEvents" {
                    let owner = context
                        .mailbox
                        .as_ref()
                        .map_or_else(|| account.clone(), ToString::to_string);
                    let permit = state
                        .limits
                        .open_stream(&owner, &account)
                        .map_err(|err| message_response("GetStreamingEvents", &err))?;
                    context.body_guard = Some(Arc::new(permit));
                }
                Ok(context)
            })
        },
    )
}

/// Keeps `guard` alive until the response body has been sent or dropped.
pub fn hold_until_body_ends(response: Response, guard: Arc<dyn Any + Send + Sync>) -> Response {
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            let _held = &guard;
            chunk
        }))
    })
}

/// Places a Subscribe on a back end; returns the refusal to send, if any.
fn place(
    state: &SimState,
    context: &mut RequestContext,
    headers: &RouteHeaders,
) -> Option<Response> {
    let target = context.mailbox.clone().or_else(|| headers.anchor.clone())?;
    let existing = state.subscriptions.of_mailbox(&target).len() + state.push.count_for(&target);
    match state.limits.place_subscription(&target, existing, headers) {
        Ok(placement) => {
            context.backend = Some(usize::from(placement.backend.0));
            if let Some(cookie) = placement
                .set_cookie
                .and_then(|cookie| HeaderValue::from_str(&cookie).ok())
            {
                context.response_headers.append(header::SET_COOKIE, cookie);
            }
            None
        }
        Err(err) => Some(message_response("Subscribe", &err)),
    }
}

/// Checks that subscription requests reach their subscriptions' back end; returns
/// the refusal to send, if any.
fn check_routes(
    state: &SimState,
    context: &RequestContext,
    request: &SoapRequest,
    headers: &RouteHeaders,
) -> Option<Response> {
    if headers.cookie.is_none() && headers.anchor.is_none() {
        // Without affinity headers the front end picks the back end from the
        // subscription itself, as a single-server deployment would.
        return None;
    }
    let operation = &request.operation;
    let ids: Vec<String> = match context.operation.as_str() {
        "Unsubscribe" => operation
            .child(Ns::Messages, "SubscriptionId")
            .map(|id| vec![id.text.clone()])
            .unwrap_or_default(),
        _ => operation
            .child(Ns::Messages, "SubscriptionIds")
            .map(|list| {
                list.children_named(Ns::Types, "SubscriptionId")
                    .map(|id| id.text.clone())
                    .collect()
            })
            .unwrap_or_default(),
    };
    let misrouted: Vec<String> = ids
        .into_iter()
        .filter(|id| {
            state.subscriptions.get(id).is_some_and(|subscription| {
                let holder = subscription
                    .backend
                    .and_then(|backend| u16::try_from(backend).ok())
                    .map(BackendId);
                state
                    .limits
                    .check_route(holder, headers, context.mailbox.as_ref())
                    .is_err()
            })
        })
        .collect();
    if misrouted.is_empty() {
        return None;
    }
    let err = LimitError::SubscriptionNotFound;
    Some(match context.operation.as_str() {
        "Unsubscribe" => message_response("Unsubscribe", &err),
        _ => stream_error(&err, &misrouted),
    })
}

/// ErrorServerBusy, as an HTTP 500 fault or inside a response message.
fn busy_response(state: &SimState, operation: &str, busy: &LimitError) -> Response {
    if state.limits.busy_in_message(operation) {
        message_response(operation, busy)
    } else {
        let backoff = busy
            .backoff()
            .map(|backoff| u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX));
        soap::fault_response(busy.code(), busy.message(), backoff)
    }
}

/// An HTTP 200 answer with one Error response message for `operation`, carrying
/// BackOffMilliseconds in `m:MessageXml` for ErrorServerBusy.
fn message_response(operation: &str, err: &LimitError) -> Response {
    let message_xml = err.backoff().map_or_else(String::new, |backoff| {
        format!(
            "<m:MessageXml><t:Value Name=\"BackOffMilliseconds\">{}</t:Value></m:MessageXml>",
            backoff.as_millis()
        )
    });
    let body = format!(
        "<m:{operation}Response xmlns:m=\"{NS_MESSAGES}\" xmlns:t=\"{NS_TYPES}\"><m:ResponseMessages>\
         <m:{operation}ResponseMessage ResponseClass=\"Error\"><m:MessageText>{}</m:MessageText>\
         <m:ResponseCode>{}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{message_xml}\
         </m:{operation}ResponseMessage></m:ResponseMessages></m:{operation}Response>",
        err.message(),
        err.code()
    );
    soap::xml_response(crate::sim::directory::wrap(&body))
}

/// A GetStreamingEvents answer holding one Error message.
fn stream_error(err: &LimitError, ids: &[String]) -> Response {
    let mut first = true;
    soap::xml_response(stream::error_envelope(
        &mut first,
        err.code(),
        err.message(),
        ids,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mailbox(name: &str) -> MailboxAddress {
        MailboxAddress::new(&format!("{name}@sim.example"))
    }

    fn anchored(anchor: &MailboxAddress) -> RouteHeaders {
        RouteHeaders {
            anchor: Some(anchor.clone()),
            prefer_affinity: true,
            cookie: None,
        }
    }

    #[test]
    fn first_anchored_subscribe_sets_the_cookie_and_later_ones_follow_it() {
        let limits = Limits::new(LimitsConfig::default(), DEFAULT_BACKENDS);
        let anchor = mailbox("room-1");

        let first = limits
            .place_subscription(&anchor, 0, &anchored(&anchor))
            .expect("first subscription");
        let cookie = first
            .set_cookie
            .as_deref()
            .and_then(|header| header.split(';').next())
            .and_then(|pair| pair.split_once('='))
            .map(|(_, value)| value.to_owned());
        let with_cookie = RouteHeaders {
            cookie: cookie.clone(),
            ..anchored(&anchor)
        };
        let second = limits
            .place_subscription(&mailbox("room-2"), 0, &with_cookie)
            .expect("second subscription");

        assert_eq!(first.backend, limits.home(&anchor));
        assert!(cookie.is_some());
        assert_eq!(second.backend, first.backend);
        assert_eq!(second.set_cookie, None);
    }

    #[test]
    fn request_routed_to_the_wrong_backend_does_not_find_the_subscription() {
        let limits = Limits::new(LimitsConfig::default(), DEFAULT_BACKENDS);
        let anchor = mailbox("room-1");
        let placement = limits
            .place_subscription(&anchor, 0, &anchored(&anchor))
            .expect("subscription");
        let elsewhere = BackendId((placement.backend.0 + 1) % DEFAULT_BACKENDS);
        let wrong = RouteHeaders {
            cookie: Some(elsewhere.cookie_value()),
            ..anchored(&anchor)
        };

        assert_eq!(
            limits.check_route(Some(placement.backend), &anchored(&anchor), None),
            Ok(())
        );
        assert_eq!(
            limits.check_route(Some(placement.backend), &wrong, None),
            Err(LimitError::SubscriptionNotFound)
        );
    }

    #[test]
    fn subscriptions_per_mailbox_are_capped() {
        let limits = Limits::new(
            LimitsConfig {
                max_subscriptions_per_mailbox: 2,
                ..LimitsConfig::default()
            },
            DEFAULT_BACKENDS,
        );
        let target = mailbox("room-1");
        let headers = RouteHeaders::default();

        assert!(limits.place_subscription(&target, 1, &headers).is_ok());
        assert_eq!(
            limits.place_subscription(&target, 2, &headers),
            Err(LimitError::ExceededSubscriptionCount)
        );
    }

    #[test]
    fn connection_slots_are_returned_when_the_permit_drops() {
        let limits = Arc::new(Limits::new(
            LimitsConfig {
                hanging_connection_limit: 1,
                ..LimitsConfig::default()
            },
            DEFAULT_BACKENDS,
        ));

        let permit = limits.open_stream("svc", "svc").expect("first stream");
        let refused = limits.open_stream("svc", "svc").map(|_| ());
        drop(permit);

        assert_eq!(refused, Err(LimitError::ExceededConnectionCount));
        assert!(limits.open_stream("svc", "svc").is_ok());
        assert_eq!(limits.connection_refusals(), 1);
    }

    #[test]
    fn streams_count_per_impersonated_mailbox_unless_told_per_account() {
        let config = |connections_per_account| LimitsConfig {
            hanging_connection_limit: 1,
            connections_per_account,
            ..LimitsConfig::default()
        };
        let per_mailbox = Arc::new(Limits::new(config(false), DEFAULT_BACKENDS));
        let per_account = Arc::new(Limits::new(config(true), DEFAULT_BACKENDS));

        let a = per_mailbox.open_stream("room-a", "svc").expect("room a");
        let b = per_mailbox.open_stream("room-b", "svc").expect("room b");
        let c = per_account.open_stream("room-a", "svc").expect("room a");
        let refused = per_account.open_stream("room-b", "svc").map(|_| ());
        drop((a, b, c));

        assert_eq!(refused, Err(LimitError::ExceededConnectionCount));
        assert_eq!(per_mailbox.peak_streams().get("svc"), Some(&2));
        assert_eq!(per_account.peak_streams().get("svc"), Some(&1));
        assert_eq!(per_account.connection_refusals(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn spent_budget_answers_busy_and_early_retries_extend_the_penalty() {
        let backoff = Duration::from_secs(5);
        let limits = Limits::new(
            LimitsConfig {
                request_budget: Some(RequestBudget {
                    requests: 2,
                    window: Duration::from_secs(60),
                    backoff,
                    in_message_operations: Vec::new(),
                }),
                ..LimitsConfig::default()
            },
            DEFAULT_BACKENDS,
        );

        assert!(limits.charge("svc").is_ok());
        assert!(limits.charge("svc").is_ok());
        assert_eq!(
            limits.charge("svc"),
            Err(LimitError::ServerBusy { backoff })
        );
        tokio::time::advance(Duration::from_secs(4)).await;
        let early = limits.charge("svc");
        tokio::time::advance(Duration::from_secs(4)).await;
        let still_penalised = limits.charge("svc");
        tokio::time::advance(backoff).await;
        let after_waiting = limits.charge("svc");

        assert_eq!(early, Err(LimitError::ServerBusy { backoff }));
        assert_eq!(still_penalised, Err(LimitError::ServerBusy { backoff }));
        assert_eq!(after_waiting, Ok(()));
    }
}
