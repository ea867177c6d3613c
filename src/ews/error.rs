//! Errors of the EWS client, grouped by what the caller has to do about them.
//!
//! Exchange reports failures as HTTP statuses, SOAP faults and per-message response
//! codes; [`classify`] maps a response code (from a fault or a message) to the variant
//! that names the caller's decision, so callers never compare code strings.

use std::time::Duration;

/// A failed EWS call.
#[derive(Debug, thiserror::Error)]
pub enum EwsError {
    /// Exchange is throttling this account (ErrorServerBusy, HTTP 503, or a transient
    /// overload code): wait `backoff` (when Exchange names one) before the next call.
    #[error("exchange is throttling requests")]
    Throttled {
        /// Exchange's BackOffMilliseconds or Retry-After, when given.
        backoff: Option<Duration>,
    },
    /// The account holds as many concurrent connections as Exchange allows
    /// (ErrorExceededConnectionCount, the HangingConnectionLimit for streams): open
    /// fewer, or wait until one closes.
    #[error("exchange refused another concurrent connection for the account")]
    ConnectionLimit,
    /// The subscription is dead (not found, invalid, expired, or its events are lost):
    /// subscribe again and catch up with SyncFolderItems.
    #[error("subscription is gone ({code})")]
    SubscriptionGone {
        /// The EWS response code.
        code: String,
    },
    /// The stored sync state is unusable: sync again from scratch.
    #[error("sync state was rejected")]
    InvalidSyncState,
    /// The mailbox is moving or failing over: wait and retry.
    #[error("mailbox is temporarily unavailable ({code})")]
    MailboxUnavailable {
        /// The EWS response code.
        code: String,
    },
    /// The mailbox does not exist.
    #[error("mailbox does not exist")]
    MailboxNotFound,
    /// The account may not impersonate or read the mailbox.
    #[error("access to the mailbox was denied ({code})")]
    AccessDenied {
        /// The EWS response code.
        code: String,
    },
    /// HTTP 401: the credentials were not accepted.
    #[error("credentials were rejected")]
    Unauthorized,
    /// HTTP 403: EWS is blocked for this application or account.
    #[error("ews access is forbidden")]
    Forbidden,
    /// Another HTTP status without a usable SOAP body.
    #[error("unexpected http status {status}")]
    Http {
        /// The HTTP status code.
        status: u16,
    },
    /// The connection failed or broke.
    #[error("http transport failed")]
    Transport(#[source] reqwest::Error),
    /// The request did not finish within the configured timeout.
    #[error("request timed out")]
    Timeout,
    /// The response is not the XML that was expected.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The call was refused before sending: the arguments or configuration are unusable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Any other EWS response code.
    #[error("exchange answered {code}: {message}")]
    Response {
        /// The EWS response code.
        code: String,
        /// Exchange's message text.
        message: String,
    },
}

impl EwsError {
    /// Whether retrying the same call later can succeed without any other change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Throttled { .. }
            | Self::ConnectionLimit
            | Self::MailboxUnavailable { .. }
            | Self::Transport(_)
            | Self::Timeout
            | Self::Malformed(_) => true,
            Self::Http { status } => *status >= 500,
            _ => false,
        }
    }

    /// How long Exchange asked us to wait, when it did.
    pub fn backoff_hint(&self) -> Option<Duration> {
        match self {
            Self::Throttled { backoff } => *backoff,
            _ => None,
        }
    }

    /// The EWS response code behind the error, when there is one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::SubscriptionGone { code }
            | Self::MailboxUnavailable { code }
            | Self::AccessDenied { code }
            | Self::Response { code, .. } => Some(code),
            Self::InvalidSyncState => Some(codes::INVALID_SYNC_STATE),
            Self::ConnectionLimit => Some(codes::EXCEEDED_CONNECTION_COUNT),
            Self::MailboxNotFound => Some(codes::NON_EXISTENT_MAILBOX),
            _ => None,
        }
    }
}

/// Why one item of a batch could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The item no longer exists (ErrorItemNotFound).
    #[error("item not found")]
    NotFound,
    /// Exchange refused this item with another code.
    #[error("exchange answered {code}: {message}")]
    Other {
        /// The EWS response code.
        code: String,
        /// Exchange's message text.
        message: String,
    },
    /// Exchange returned the item without a field the sync needs.
    #[error("malformed item: {0}")]
    Malformed(String),
}

/// EWS response codes the client reacts to.
pub(crate) mod codes {
    pub const SERVER_BUSY: &str = "ErrorServerBusy";
    pub const INVALID_SYNC_STATE: &str = "ErrorInvalidSyncStateData";
    pub const NON_EXISTENT_MAILBOX: &str = "ErrorNonExistentMailbox";
    pub const ITEM_NOT_FOUND: &str = "ErrorItemNotFound";
    pub const SUBSCRIPTION_NOT_FOUND: &str = "ErrorSubscriptionNotFound";
    pub const TIMEOUT_EXPIRED: &str = "ErrorTimeoutExpired";
    pub const NAME_RESOLUTION_NO_RESULTS: &str = "ErrorNameResolutionNoResults";
    pub const EXCEEDED_CONNECTION_COUNT: &str = "ErrorExceededConnectionCount";

    /// Overload codes that mean "back off" even without a hint.
    pub const THROTTLING: &[&str] = &[
        SERVER_BUSY,
        "ErrorInternalServerTransientError",
        "ErrorTooManyObjectsOpened",
    ];
    /// Codes after which the subscription must be recreated.
    pub const SUBSCRIPTION_GONE: &[&str] = &[
        SUBSCRIPTION_NOT_FOUND,
        "ErrorInvalidSubscription",
        "ErrorExpiredSubscription",
        "ErrorReadEventsFailed",
        "ErrorInvalidWatermark",
        "ErrorProxyRequestNotAllowed",
        "ErrorInvalidSubscriptionRequest",
        "ErrorInvalidPullSubscriptionId",
    ];
    /// Codes that mean the mailbox is moving, failing over or out of reach for a while.
    pub const MAILBOX_UNAVAILABLE: &[&str] = &[
        "ErrorMailboxMoveInProgress",
        "ErrorMailboxStoreUnavailable",
        "ErrorMailboxFailover",
        "ErrorConnectionFailed",
        "ErrorProxiedSubscriptionCallFailure",
        "ErrorNoRespondingCASInDestinationSite",
    ];
    /// Codes that mean the account may not act on the mailbox.
    pub const ACCESS_DENIED: &[&str] = &[
        "ErrorImpersonateUserDenied",
        "ErrorImpersonationFailed",
        "ErrorAccessDenied",
        "ErrorSubscriptionAccessDenied",
        "ErrorSubscriptionDelegateAccessNotSupported",
        "ErrorInvalidImpersonationHeader",
    ];
}

/// Maps an EWS response code (from a fault or a response message) to an error.
pub(crate) fn classify(code: &str, message: &str, backoff: Option<Duration>) -> EwsError {
    let owned = || code.to_owned();
    if codes::THROTTLING.contains(&code) {
        EwsError::Throttled { backoff }
    } else if codes::SUBSCRIPTION_GONE.contains(&code) {
        EwsError::SubscriptionGone { code: owned() }
    } else if codes::MAILBOX_UNAVAILABLE.contains(&code) {
        EwsError::MailboxUnavailable { code: owned() }
    } else if codes::ACCESS_DENIED.contains(&code) {
        EwsError::AccessDenied { code: owned() }
    } else if code == codes::EXCEEDED_CONNECTION_COUNT {
        EwsError::ConnectionLimit
    } else if code == codes::INVALID_SYNC_STATE {
        EwsError::InvalidSyncState
    } else if code == codes::NON_EXISTENT_MAILBOX {
        EwsError::MailboxNotFound
    } else if code == codes::TIMEOUT_EXPIRED {
        EwsError::Timeout
    } else {
        EwsError::Response {
            code: owned(),
            message: message.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_busy_becomes_throttled_with_its_backoff() {
        let error = classify("ErrorServerBusy", "busy", Some(Duration::from_millis(5000)));

        assert!(error.is_transient());
        assert_eq!(error.backoff_hint(), Some(Duration::from_millis(5000)));
    }

    #[test]
    fn dead_subscription_codes_become_subscription_gone() {
        for code in codes::SUBSCRIPTION_GONE {
            let error = classify(code, "", None);

            assert!(matches!(error, EwsError::SubscriptionGone { .. }), "{code}");
            assert_eq!(error.code(), Some(*code));
        }
    }

    #[test]
    fn unknown_codes_keep_their_code_and_message() {
        let error = classify("ErrorSomethingNew", "text", None);

        assert!(!error.is_transient());
        assert_eq!(error.code(), Some("ErrorSomethingNew"));
    }
}
