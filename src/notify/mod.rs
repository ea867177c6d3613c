//! Notifications: digests of out-of-sync issues, sent from the outbox.
//!
//! The [`Notifier`] task wakes on a timer, asks the store which recipients are due a
//! digest (interval, daily cap), renders each digest ([`digest`]) and sends it through
//! a [`MailSender`]: EWS CreateItem as the configured sender mailbox, or an SMTP relay
//! ([`smtp`]). It does not find issues (the store does, with the rules, in the write
//! that causes them) and it never runs in dry-run mode.
//!
//! A digest is sent at most once and never lost: it is first claimed in a committed
//! row (state `sending`, with the Internet message id its email carries, its issues
//! taken), its send attempt is counted, it is sent, and then marked `sent`. A claim
//! still `sending` a minute later (the process died, or the send failed or ended in
//! doubt) is resolved before new digests go out: a claim never tried is sent; one that
//! was tried is looked up in the sender's Sent Items over EWS (where the copy carries
//! the message id) and sent again only when it is not there. An SMTP relay cannot be
//! asked, so a tried claim is sent again with the same `Message-ID`, which mail
//! systems that deduplicate by it (Exchange, Gmail) deliver once.

pub mod digest;
pub mod smtp;

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::NotificationsConfig;
use crate::domain::MailboxAddress;
use crate::ews::{EwsClient, EwsError, OutgoingMail};
use crate::store::{ClaimedDigest, PgStore, StoreError};
pub use smtp::{SmtpError, SmtpSender};

/// Longest sleep between two looks at the outbox.
const MAX_TICK: Duration = Duration::from_secs(60);
/// Shortest sleep between two looks at the outbox.
const MIN_TICK: Duration = Duration::from_secs(1);
/// How long a claim is left alone before it counts as abandoned: longer than one send
/// takes, and long enough for Exchange to file the copy in Sent Items.
pub const CLAIM_SETTLE: Duration = Duration::from_secs(60);

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
    /// EWS CreateItem (SendAndSaveCopy), acting as `mailbox`.
    Ews {
        /// The client.
        client: EwsClient,
        /// The mailbox the digests are sent as.
        mailbox: MailboxAddress,
    },
    /// An SMTP relay.
    Smtp(Box<SmtpSender>),
}

/// A failed round of sending.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The outbox could not be read or updated.
    #[error("the notification outbox failed")]
    Store(#[from] StoreError),
    /// Exchange refused or did not take a message, or could not be asked about one.
    #[error("sending a digest through EWS failed")]
    Ews(#[from] EwsError),
    /// The SMTP relay refused or did not take a message.
    #[error("sending a digest through SMTP failed")]
    Smtp(#[from] SmtpError),
}

impl MailSender {
    /// Sends one digest to `recipient`, identified by `message_id`.
    ///
    /// # Errors
    ///
    /// The transport's error.
    pub async fn send(
        &self,
        recipient: &str,
        digest: &digest::Digest,
        message_id: &str,
    ) -> Result<(), NotifyError> {
        match self {
            Self::Ews { client, mailbox } => {
                let mail = OutgoingMail {
                    from: None,
                    to: vec![MailboxAddress::new(recipient)],
                    subject: digest.subject.clone(),
                    html_body: digest.html.clone(),
                    tag: Some(message_id.to_owned()),
                };
                client.send_message(mailbox, &mail).await?;
            }
            Self::Smtp(sender) => sender.send(recipient, digest, message_id).await?,
        }
        Ok(())
    }

    /// Whether the message `message_id` went out: `Some` when the transport can tell
    /// (EWS: a copy is in Sent Items), `None` when it cannot (SMTP).
    ///
    /// # Errors
    ///
    /// The transport's error.
    pub async fn went_out(&self, message_id: &str) -> Result<Option<bool>, NotifyError> {
        match self {
            Self::Ews { client, mailbox } => {
                Ok(Some(client.find_sent_message(mailbox, message_id).await?))
            }
            Self::Smtp(_) => Ok(None),
        }
    }

    /// The domain the digests' message ids are made in.
    fn domain(&self) -> &str {
        match self {
            Self::Ews { mailbox, .. } => mailbox
                .as_str()
                .rsplit_once('@')
                .map_or("booking-sync.invalid", |(_, domain)| domain),
            Self::Smtp(sender) => sender.domain(),
        }
    }

    /// A new Internet message id for a digest.
    fn new_message_id(&self) -> String {
        format!(
            "<digest.{}@{}>",
            uuid::Uuid::new_v4().simple(),
            self.domain()
        )
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
                warn!(error = %crate::logging::error_chain(&err), "Sending notification digests failed, retrying later");
            }
        }
    }

    /// Resolves abandoned claims, then sends every digest due at `now`; returns how
    /// many emails went out. A digest whose send fails stays claimed and is resolved
    /// in a later round; the others still go.
    ///
    /// # Errors
    ///
    /// The outbox's failure; digests sent before it stay recorded.
    pub async fn send_due(&self, now: DateTime<Utc>) -> Result<u64, NotifyError> {
        let settle = chrono::Duration::from_std(CLAIM_SETTLE).unwrap_or(chrono::Duration::MAX);
        let mut sent = 0;
        for claimed in self.store.sending_digests(now - settle).await? {
            sent += u64::from(self.resolve(&claimed, now).await?);
        }
        let due = self
            .store
            .due_digests(now, self.settings.digest_interval, self.settings.daily_cap)
            .await?;
        for entry in due {
            if entry.issues.is_empty() {
                continue;
            }
            let rendered = digest::render(entry.audience, &entry.issues);
            let message_id = self.sender.new_message_id();
            let claimed = self
                .store
                .claim_digest(&entry, &rendered.subject, &message_id, now)
                .await?;
            sent += u64::from(self.attempt(&claimed, &rendered, now).await?);
        }
        Ok(sent)
    }

    /// Settles a claim left `sending`: marks it sent when its message went out, sends
    /// it otherwise. Returns whether an email was sent now.
    async fn resolve(
        &self,
        claimed: &ClaimedDigest,
        now: DateTime<Utc>,
    ) -> Result<bool, NotifyError> {
        if claimed.send_attempts > 0 {
            match self.sender.went_out(&claimed.message_id).await {
                Ok(Some(true)) => {
                    info!(
                        digest = claimed.id,
                        "A digest left sending had gone out; recorded it without sending again"
                    );
                    self.store.mark_digest_sent(claimed.id, now).await?;
                    return Ok(false);
                }
                Ok(Some(false) | None) => {}
                Err(err) => {
                    warn!(
                        digest = claimed.id,
                        error = %crate::logging::error_chain(&err),
                        "Could not ask whether a digest went out, retrying later"
                    );
                    return Ok(false);
                }
            }
        }
        let rendered = digest::render(claimed.digest.audience, &claimed.digest.issues);
        self.attempt(claimed, &rendered, now).await
    }

    /// Counts an attempt, sends, and marks the digest sent. A failed send is logged
    /// and left claimed. Returns whether the email went out.
    async fn attempt(
        &self,
        claimed: &ClaimedDigest,
        rendered: &digest::Digest,
        now: DateTime<Utc>,
    ) -> Result<bool, NotifyError> {
        self.store.count_send_attempt(claimed.id).await?;
        if let Err(err) = self
            .sender
            .send(&claimed.digest.recipient, rendered, &claimed.message_id)
            .await
        {
            warn!(
                digest = claimed.id,
                attempts = claimed.send_attempts + 1,
                error = %crate::logging::error_chain(&err),
                "Sending a notification digest failed, retrying later"
            );
            return Ok(false);
        }
        self.store.mark_digest_sent(claimed.id, now).await?;
        debug!(
            issues = claimed.digest.issues.len(),
            audience = claimed.digest.audience.as_str(),
            "Sent a notification digest"
        );
        Ok(true)
    }
}
