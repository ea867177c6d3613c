//! Affinity of a subscription group: which backend server its subscriptions live on.
//!
//! Exchange keeps subscriptions on one mailbox server; every Subscribe,
//! GetStreamingEvents and Unsubscribe of a group must reach it. The first Subscribe
//! response names the server in an `X-BackEndOverrideCookie`, which the client keeps
//! here and sends back on every later subscription request of the group.

use std::sync::{Arc, Mutex, PoisonError};

use reqwest::header::{HeaderMap, SET_COOKIE};

use crate::domain::MailboxAddress;

/// Name of the routing cookie Exchange sets for a subscription group.
pub(crate) const BACKEND_OVERRIDE_COOKIE: &str = "X-BackEndOverrideCookie";

/// Affinity state of one subscription group (anchor = first address of the sorted group).
///
/// Cloning shares the state. The backend cookie is learnt from the Set-Cookie of a
/// Subscribe response and sent with every later subscription request of the group.
#[derive(Debug, Clone)]
pub struct Affinity {
    inner: Arc<AffinityState>,
}

#[derive(Debug)]
struct AffinityState {
    anchor: MailboxAddress,
    cookie: Mutex<Option<String>>,
}

impl Affinity {
    /// Affinity for a group anchored at `anchor`, with no cookie yet.
    pub fn new(anchor: MailboxAddress) -> Self {
        Self {
            inner: Arc::new(AffinityState {
                anchor,
                cookie: Mutex::new(None),
            }),
        }
    }

    /// The group's anchor mailbox.
    pub fn anchor(&self) -> &MailboxAddress {
        &self.inner.anchor
    }

    /// Forgets the backend cookie, so the next Subscribe routes by anchor again.
    pub fn reset(&self) {
        *self.lock() = None;
    }

    /// The backend cookie currently held, if any.
    pub fn backend_cookie(&self) -> Option<String> {
        self.lock().clone()
    }

    pub(crate) fn remember(&self, headers: &HeaderMap) {
        let cookie = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(backend_cookie_value);
        if let Some(cookie) = cookie {
            *self.lock() = Some(cookie);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // The guarded value is a plain string, valid whatever a panicking holder did.
        self.inner
            .cookie
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The value of `X-BackEndOverrideCookie` in one Set-Cookie header.
fn backend_cookie_value(set_cookie: &str) -> Option<String> {
    let pair = set_cookie.split(';').next()?;
    let (name, value) = pair.split_once('=')?;
    (name.trim().eq_ignore_ascii_case(BACKEND_OVERRIDE_COOKIE) && !value.trim().is_empty())
        .then(|| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn the_backend_cookie_is_taken_from_its_own_set_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("exchangecookie=abc; path=/"),
        );
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static(
                "X-BackEndOverrideCookie=AM6PR04~1593847261; path=/; secure; HttpOnly",
            ),
        );
        let affinity = Affinity::new(MailboxAddress::new("a@contoso.example"));

        affinity.remember(&headers);

        assert_eq!(
            affinity.backend_cookie().as_deref(),
            Some("AM6PR04~1593847261")
        );
        affinity.reset();
        assert_eq!(affinity.backend_cookie(), None);
    }
}
