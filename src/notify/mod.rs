//! Notifications: digests of out-of-sync issues, sent from the outbox.
//!
//! The [`Notifier`] task wakes on a timer, asks the store which recipients are due a
//! digest (interval, daily cap), renders each digest ([`digest`]) and sends it through
//! EWS CreateItem (SendOnly) as the configured sender mailbox, then records it, which
//! takes its issues out of the queue. It does not find issues (the store does, with the
//! rules, in the write that causes them) and it never runs in dry-run mode.

pub mod digest;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::NotificationsConfig;
use crate::domain::MailboxAddress;
use crate::ews::{EwsClient, EwsError, OutgoingMail};
use crate::store::{PgStore, StoreError};

/// Longest sleep between two looks at the outbox.
const MAX_TICK: Duration = Duration::from_secs(60);
/// Shortest sleep between two looks at the outbox.
const MIN_TICK: Duration = Duration::from_secs(1);

/// Sends the digests the outbox holds.
pub struct Notifier {
    /// Where the issues wait.
    pub store: PgStore,
    /// How digests leave.
    pub sender: MailSender,
    /// Interval and daily cap.
    pub settings: NotificationsConfig,
}

/// How a digest leaves.
pub enum MailSender {
    /// EWS CreateItem (SendOnly), acting as `mailbox`.
    Ews {
        /// The client.
        client: EwsClient,
        /// The mailbox the digests are sent as.
        mailbox: MailboxAddress,
    },
}

/// A failed round of sending.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The outbox could not be read or updated.
    #[error("the notification outbox failed")]
    Store(#[from] StoreError),
    /// Exchange refused or did not take a message.
    #[error("sending a digest failed")]
    Send(#[from] EwsError),
}

impl MailSender {
    /// Sends one digest to `recipient`.
    ///
    /// # Errors
    ///
    /// The transport's error.
    pub async fn send(&self, recipient: &str, digest: &digest::Digest) -> Result<(), NotifyError> {
        match self {
            Self::Ews { client, mailbox } => {
                let mail = OutgoingMail {
                    from: None,
                    to: vec![MailboxAddress::new(recipient)],
                    subject: digest.subject.clone(),
                    html_body: digest.html.clone(),
                };
                client.send_message(mailbox, &mail).await?;
            }
        }
        Ok(())
    }
}

impl Notifier {
    /// Sends due digests until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) {
        let tick = (self.settings.digest_interval / 4).clamp(MIN_TICK, MAX_TICK);
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(tick) => {}
            }
            if let Err(err) = self.send_due(Utc::now()).await {
                warn!(error = %crate::pipeline::worker::error_chain(&err), "Sending notification digests failed, retrying later");
            }
        }
    }

    /// Sends every digest due at `now`; returns how many went out.
    ///
    /// # Errors
    ///
    /// The first failure; digests sent before it stay recorded.
    pub async fn send_due(&self, now: DateTime<Utc>) -> Result<u64, NotifyError> {
        let due = self
            .store
            .due_digests(now, self.settings.digest_interval, self.settings.daily_cap)
            .await?;
        let mut sent = 0;
        for entry in due {
            if entry.issues.is_empty() {
                continue;
            }
            let rendered = digest::render(entry.audience, &entry.issues);
            self.sender.send(&entry.recipient, &rendered).await?;
            self.store
                .record_digest(&entry, &rendered.subject, now)
                .await?;
            debug!(
                issues = entry.issues.len(),
                audience = entry.audience.as_str(),
                "Sent a notification digest"
            );
            sent += 1;
        }
        Ok(sent)
    }
}
