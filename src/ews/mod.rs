//! EWS client: builds SOAP requests, parses responses and the notification stream.
//!
//! This module owns the Exchange wire protocol. Callers hand it mailbox addresses, ids
//! and sync states (`crate::domain` types) and get domain values back; no XML or SOAP
//! type leaves it, and only `ews::xml` touches XML. [`EwsClient`] sends one HTTP POST
//! per operation (with impersonation, anchor-mailbox and affinity headers), caps the
//! number of non-streaming requests in flight, and turns HTTP statuses, SOAP faults and
//! error response codes into [`EwsError`] variants named after the caller's decision.
//! [`EventStream`] reads a GetStreamingEvents body incrementally, one envelope at a
//! time. Besides the calendar operations (subscriptions, streaming, SyncFolderItems,
//! GetItem, CalendarView, GetFolder) the client answers directory questions
//! (Autodiscover GetUserSettings, ResolveNames, room lists) and handles Basic, bearer
//! and OAuth client-credentials authentication.
//!
//! The client keeps the account's throttling budget: after ErrorServerBusy no request
//! starts before BackOffMilliseconds pass. Read operations are retried a few times on
//! transport failures, 5xx answers and cut-short bodies, with capped, jittered
//! exponential delays. Beyond that (and one token renewal after a 401) it does not
//! retry, log errors or keep per-mailbox state besides the affinity cookie: the
//! pipeline decides what a failure means.

mod affinity;
mod auth;
mod client;
mod config;
mod directory;
mod error;
#[doc(hidden)]
pub mod requests;
mod stream;
mod throttle;
mod types;
mod xml;

pub use self::affinity::Affinity;
pub use self::client::{
    init_metrics, EwsClient, MAX_CONNECTION_TIMEOUT_MINUTES, MAX_SUBSCRIPTIONS_PER_STREAM,
    MAX_SYNC_CHANGES,
};
pub use self::config::{
    EwsAuth, EwsConfig, DEFAULT_MAX_CONCURRENT_REQUESTS, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SERVER_VERSION,
};
pub use self::error::{EwsError, ItemError};
pub use self::requests::OutgoingMail;
pub use self::stream::{EventStream, StreamDecoder};
pub use self::types::{
    CalendarView, ConnectionStatus, FolderInfo, Notification, StreamError, StreamMessage,
    UserSettings, UserSettingsError, ViewItem,
};

/// Response parsers, exposed for benchmarks and tests only.
#[doc(hidden)]
pub mod responses {
    pub use super::xml::{
        parse_find_calendar_view, parse_find_sent_message, parse_get_folder, parse_get_item,
        parse_get_room_lists, parse_get_rooms, parse_get_user_settings, parse_resolve_names,
        parse_subscribe, parse_sync_folder_items, parse_unsubscribe,
    };
}
