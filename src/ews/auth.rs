//! Credentials for EWS requests, including a cached OAuth 2.0 client-credentials token.
//!
//! Basic and fixed bearer credentials are applied as they are. For client credentials
//! (Microsoft Entra ID app-only access, the only choice for Exchange Online) a token is
//! fetched from the token endpoint on first use, shared by every request, and renewed
//! shortly before it expires or when EWS rejects it with 401. Secrets stay in
//! `SecretString`s and are never logged or put into errors.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::EwsAuth;
use super::error::EwsError;

/// Renew a token once less than this share of its lifetime is left...
const RENEW_FRACTION: u32 = 10;
/// ...but at least this long before it expires.
const MIN_RENEW_MARGIN: Duration = Duration::from_secs(60);
const GRANT_TYPE: &str = "client_credentials";

/// A token and when to stop using it.
struct CachedToken {
    token: SecretString,
    renew_at: Instant,
}

/// The credentials of one client.
pub(crate) struct Credentials {
    auth: EwsAuth,
    /// Filled on first use by client-credentials auth; emptied by `invalidate` after a
    /// 401. The lock is held while a token is fetched, so concurrent requests wait for
    /// one fetch instead of each starting their own.
    token: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<ExpiresIn>,
}

/// `expires_in` is a number in the standard and a string in some implementations.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(u64),
    Text(String),
}

impl ExpiresIn {
    fn seconds(&self) -> Option<u64> {
        match self {
            Self::Number(seconds) => Some(*seconds),
            Self::Text(text) => text.trim().parse().ok(),
        }
    }
}

impl Credentials {
    pub fn new(auth: EwsAuth) -> Self {
        Self {
            auth,
            token: Mutex::new(None),
        }
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub fn is_renewable(&self) -> bool {
        matches!(self.auth, EwsAuth::OAuthClientCredentials { .. })
    }

    /// Drops the cached token so the next request fetches a new one.
    pub async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    /// Adds the credentials to `request`, fetching a token first if needed.
    pub async fn apply(
        &self,
        http: &reqwest::Client,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, EwsError> {
        match &self.auth {
            EwsAuth::None => Ok(request),
            EwsAuth::Basic { username, password } => {
                Ok(request.basic_auth(username, Some(password.expose_secret())))
            }
            EwsAuth::Bearer { token } => Ok(request.bearer_auth(token.expose_secret())),
            EwsAuth::OAuthClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
            } => {
                let mut cached = self.token.lock().await;
                if let Some(token) = cached
                    .as_ref()
                    .filter(|token| Instant::now() < token.renew_at)
                {
                    return Ok(request.bearer_auth(token.token.expose_secret()));
                }
                let fresh = fetch_token(http, token_url, client_id, client_secret, scope).await?;
                let request = request.bearer_auth(fresh.token.expose_secret());
                *cached = Some(fresh);
                Ok(request)
            }
        }
    }
}

async fn fetch_token(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    client_secret: &SecretString,
    scope: &str,
) -> Result<CachedToken, EwsError> {
    let form = [
        ("grant_type", GRANT_TYPE),
        ("client_id", client_id),
        ("client_secret", client_secret.expose_secret()),
        ("scope", scope),
    ];
    let response = http
        .post(token_url)
        .form(&form)
        .send()
        .await
        .map_err(EwsError::Transport)?;
    let status = response.status();
    let body = response.bytes().await.map_err(EwsError::Transport)?;
    match status {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(EwsError::Unauthorized)
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
            return Err(EwsError::Throttled { backoff: None })
        }
        other => {
            return Err(EwsError::Http {
                status: other.as_u16(),
            })
        }
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| EwsError::Malformed("token response is not the expected json".to_owned()))?;
    let lifetime = Duration::from_secs(
        parsed
            .expires_in
            .and_then(|expires_in| expires_in.seconds())
            .unwrap_or(0),
    );
    let margin = (lifetime / RENEW_FRACTION).max(MIN_RENEW_MARGIN);
    Ok(CachedToken {
        token: SecretString::from(parsed.access_token),
        renew_at: Instant::now() + lifetime.saturating_sub(margin),
    })
}
