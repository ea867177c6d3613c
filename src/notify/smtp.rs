//! Digests through an SMTP relay (lettre): one connection per digest, STARTTLS,
//! implicit TLS or (for a relay on this host) none, optional AUTH.
//!
//! Each email carries the digest's Internet message id as its `Message-ID`, so the
//! same digest sent twice is the same message to every mail system that deduplicates
//! by it.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::digest::Digest;
use crate::config::{SmtpConfig, SmtpTls};

/// Why an SMTP send failed.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    /// The relay's settings do not make a transport (a host that is no TLS name).
    #[error("the SMTP relay settings are unusable: {0}")]
    Setup(String),
    /// The message could not be built (an address lettre refuses).
    #[error("the digest email could not be built: {0}")]
    Build(String),
    /// The relay could not be reached or refused the message.
    #[error("the SMTP relay did not take the message")]
    Send(#[source] lettre::transport::smtp::Error),
}

/// Sends digests through one SMTP relay.
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("from", &self.from.email.to_string())
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// A sender for the relay `config` describes. Nothing is connected yet.
    ///
    /// # Errors
    ///
    /// [`SmtpError::Setup`] when the TLS parameters cannot be made for the host, or
    /// the From address is not one.
    pub fn new(config: &SmtpConfig) -> Result<Self, SmtpError> {
        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::StartTls | SmtpTls::Tls => {
                let parameters = TlsParameters::new_rustls(config.host.clone())
                    .map_err(|err| SmtpError::Setup(err.to_string()))?;
                if config.tls == SmtpTls::Tls {
                    Tls::Wrapper(parameters)
                } else {
                    Tls::Required(parameters)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host)
            .port(config.port)
            .tls(tls)
            .timeout(Some(config.timeout));
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose_secret().to_owned(),
            ));
        }
        let from = config
            .from
            .parse::<Mailbox>()
            .map_err(|err| SmtpError::Setup(format!("from address: {err}")))?;
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// The domain of the From address (for message ids).
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }

    /// Sends `digest` to `recipient` as a multipart (plain text and HTML) email whose
    /// `Message-ID` is `message_id`.
    ///
    /// # Errors
    ///
    /// [`SmtpError::Build`] for an address the message cannot carry,
    /// [`SmtpError::Send`] when the relay was unreachable or refused the message.
    pub async fn send(
        &self,
        recipient: &str,
        digest: &Digest,
        message_id: &str,
    ) -> Result<(), SmtpError> {
        let to = recipient
            .parse::<Mailbox>()
            .map_err(|err| SmtpError::Build(format!("recipient {recipient:?}: {err}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(digest.subject.clone())
            .message_id(Some(message_id.to_owned()))
            .multipart(MultiPart::alternative_plain_html(
                digest.text.clone(),
                digest.html.clone(),
            ))
            .map_err(|err| SmtpError::Build(err.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(SmtpError::Send)?;
        Ok(())
    }
}
