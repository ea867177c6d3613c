//! Who is calling the simulator, and whom they may act as.
//!
//! This module owns the simulator's identity rules: the authentication mode (none,
//! Basic with configured accounts, or Bearer tokens issued by a fake Entra ID token
//! endpoint), the token store, the "EWS disabled" switch and the impersonation check.
//! It does not parse SOAP: the dispatcher hands it the `Authorization` header value and
//! the impersonated address it read from the SOAP header, and renders the errors this
//! module returns (HTTP 401/403, or a SOAP fault carrying [`AuthFault::code`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::domain::MailboxAddress;
use crate::sim::soap;
use crate::sim::{Layer, RequestContext, SimControl, SimState};
use crate::sync::lock;

/// Default lifetime of an issued access token (Entra ID issues about an hour).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The path of the token endpoint, with the tenant as a path parameter.
pub const TOKEN_PATH: &str = "/{tenant}/oauth2/v2.0/token";

const BEARER_CHALLENGE: &str = "Bearer";
const BASIC_CHALLENGE: &str = "Basic realm=\"simulator\"";

/// How the simulator authenticates EWS requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every request is accepted as an anonymous caller that may act as any mailbox.
    #[default]
    None,
    /// `Authorization: Basic` with one of the configured accounts.
    Basic,
    /// `Authorization: Bearer` with a token from the simulator's token endpoint.
    Bearer,
}

/// Which mailboxes a caller may impersonate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImpersonationScope {
    /// No impersonation right at all.
    #[default]
    Nobody,
    /// Any mailbox of the simulated organisation.
    Everyone,
    /// Exactly these mailboxes.
    Only(Vec<MailboxAddress>),
}

impl ImpersonationScope {
    /// Whether the scope includes `mailbox`.
    pub fn allows(&self, mailbox: &MailboxAddress) -> bool {
        match self {
            Self::Nobody => false,
            Self::Everyone => true,
            Self::Only(mailboxes) => mailboxes.contains(mailbox),
        }
    }
}

/// A Basic-auth service account. `Debug` hides the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAccount {
    /// The user name (a UPN or an SMTP address).
    pub username: String,
    /// The password, in clear: this is a simulator.
    pub password: String,
    /// Whom the account may impersonate.
    pub impersonation: ImpersonationScope,
}

/// An Entra ID application that obtains tokens with the client-credentials grant.
/// `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistration {
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// Whom the application may impersonate (its RBAC-for-applications scope).
    pub impersonation: ImpersonationScope,
}

impl std::fmt::Debug for BasicAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAccount")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("impersonation", &self.impersonation)
            .finish()
    }
}

impl std::fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRegistration")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("impersonation", &self.impersonation)
            .finish()
    }
}

/// The simulator's authentication settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthConfig {
    /// The authentication mode of `/EWS/Exchange.asmx`.
    pub mode: AuthMode,
    /// Accounts accepted by Basic auth.
    pub accounts: Vec<BasicAccount>,
    /// Applications accepted by the token endpoint.
    pub apps: Vec<AppRegistration>,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
    /// When set, every EWS request is refused with HTTP 403 (EWS disabled for the app).
    pub ews_disabled: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            accounts: Vec::new(),
            apps: Vec::new(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            ews_disabled: false,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account or application name (`anonymous` in mode `none`).
    pub name: String,
    /// Whether the caller is an application without a mailbox of its own (app-only token).
    pub app_only: bool,
    /// Whom the caller may impersonate.
    pub impersonation: ImpersonationScope,
}

impl Caller {
    /// The caller used in mode `none`: may act as anyone, needs no impersonation.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            app_only: false,
            impersonation: ImpersonationScope::Everyone,
        }
    }
}

/// Why a request was refused at the HTTP level, before any SOAP processing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthRejection {
    /// No or wrong credentials, or an unknown or expired token: HTTP 401.
    #[error("authentication required")]
    Unauthorized {
        /// The `WWW-Authenticate` challenge to send.
        challenge: &'static str,
    },
    /// EWS is switched off for this caller: HTTP 403.
    #[error("ews is disabled for this application")]
    EwsDisabled,
}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized { challenge } => (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                )],
            )
                .into_response(),
            Self::EwsDisabled => (
                StatusCode::FORBIDDEN,
                "EWS is disabled for this application by the organization's policy",
            )
                .into_response(),
        }
    }
}

/// Why a caller may not act as the requested mailbox: rendered as a SOAP fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFault {
    /// The impersonated address has no mailbox.
    #[error("the impersonated address has no mailbox")]
    NonExistentMailbox,
    /// The caller may not impersonate that mailbox.
    #[error("the caller may not impersonate the mailbox")]
    ImpersonateUserDenied,
    /// An app-only token was used without an ExchangeImpersonation header.
    #[error("an app-only caller must impersonate a mailbox")]
    ImpersonationHeaderRequired,
}

impl AuthFault {
    /// The EWS response code of the fault.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NonExistentMailbox => "ErrorNonExistentMailbox",
            Self::ImpersonateUserDenied => "ErrorImpersonateUserDenied",
            Self::ImpersonationHeaderRequired => "ErrorInvalidExchangeImpersonationHeaderData",
        }
    }

    /// The message text Exchange sends with the fault.
    pub fn message(&self) -> &'static str {
        match self {
            Self::NonExistentMailbox => "The SMTP address has no mailbox associated with it.",
            Self::ImpersonateUserDenied => {
                "The account does not have permission to impersonate the requested user."
            }
            Self::ImpersonationHeaderRequired => {
                "ExchangeImpersonation SOAP header must be present for this type of OAuth token."
            }
        }
    }
}

/// Decides whom a request acts as.
///
/// `impersonated` is the address from the ExchangeImpersonation header, if any, and
/// `exists` tells whether an address has a mailbox. Returns the impersonated mailbox
/// (or `None` when the caller acts as itself).
///
/// # Errors
///
/// [`AuthFault::NonExistentMailbox`] for an unknown address,
/// [`AuthFault::ImpersonateUserDenied`] for a mailbox outside the caller's scope, and
/// [`AuthFault::ImpersonationHeaderRequired`] for an app-only caller without the header.
pub fn resolve_impersonation(
    caller: &Caller,
    impersonated: Option<&MailboxAddress>,
    exists: impl Fn(&MailboxAddress) -> bool,
) -> Result<Option<MailboxAddress>, AuthFault> {
    match impersonated {
        None if caller.app_only => Err(AuthFault::ImpersonationHeaderRequired),
        None => Ok(None),
        Some(mailbox) if !exists(mailbox) => Err(AuthFault::NonExistentMailbox),
        Some(mailbox) if !caller.impersonation.allows(mailbox) => {
            Err(AuthFault::ImpersonateUserDenied)
        }
        Some(mailbox) => Ok(Some(mailbox.clone())),
    }
}

/// A token the token endpoint handed out.
#[derive(Debug, Clone)]
struct IssuedToken {
    app: usize,
    expires_at: Instant,
}

/// The authenticator: configuration plus the issued tokens.
#[derive(Debug)]
pub struct Authenticator {
    config: Mutex<AuthConfig>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
}

/// The body of a successful token response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// The client-credentials form posted to the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: Option<String>,
    /// The application id.
    pub client_id: String,
    /// The application secret.
    pub client_secret: String,
    /// The requested scope, e.g. `https://outlook.office365.com/.default`.
    pub scope: Option<String>,
}

impl Authenticator {
    /// Builds an authenticator from its configuration.
    pub fn new(config: AuthConfig) -> Self {
        Self {
            config: Mutex::new(config),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A copy of the current configuration.
    pub fn config(&self) -> AuthConfig {
        lock(&self.config).clone()
    }

    /// Switches the "EWS disabled" answer (HTTP 403) on or off.
    pub fn set_ews_disabled(&self, disabled: bool) {
        lock(&self.config).ews_disabled = disabled;
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        lock(&self.config).token_lifetime = lifetime;
    }

    /// Forgets every issued token, as a credential revocation would.
    pub fn revoke_tokens(&self) {
        lock(&self.tokens).clear();
    }

    /// Authenticates a request from its `Authorization` header value.
    ///
    /// # Errors
    ///
    /// [`AuthRejection::EwsDisabled`] when the 403 switch is on, otherwise
    /// [`AuthRejection::Unauthorized`] for missing, wrong or expired credentials.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthRejection> {
        let config = self.config();
        if config.ews_disabled {
            return Err(AuthRejection::EwsDisabled);
        }
        match config.mode {
            AuthMode::None => Ok(Caller::anonymous()),
            AuthMode::Basic => {
                basic_caller(&config, authorization).ok_or(AuthRejection::Unauthorized {
                    challenge: BASIC_CHALLENGE,
                })
            }
            AuthMode::Bearer => {
                self.bearer_caller(&config, authorization)
                    .ok_or(AuthRejection::Unauthorized {
                        challenge: BEARER_CHALLENGE,
                    })
            }
        }
    }

    /// Issues a token for a client-credentials request, or `None` for bad credentials.
    pub fn issue_token(&self, request: &TokenRequest) -> Option<TokenResponse> {
        if request
            .grant_type
            .as_deref()
            .is_some_and(|grant| grant != "client_credentials")
        {
            return None;
        }
        let config = self.config();
        let app = config.apps.iter().position(|app| {
            app.client_id == request.client_id && app.client_secret == request.client_secret
        })?;
        let access_token = format!("sim.{}", uuid::Uuid::new_v4().simple());
        lock(&self.tokens).insert(
            access_token.clone(),
            IssuedToken {
                app,
                expires_at: Instant::now() + config.token_lifetime,
            },
        );
        Some(TokenResponse {
            access_token,
            token_type: "Bearer".to_owned(),
            expires_in: config.token_lifetime.as_secs(),
        })
    }

    fn bearer_caller(&self, config: &AuthConfig, authorization: Option<&str>) -> Option<Caller> {
        let token = strip_scheme(authorization?, "Bearer")?;
        let issued = lock(&self.tokens).get(token).cloned()?;
        if Instant::now() >= issued.expires_at {
            return None;
        }
        let app = config.apps.get(issued.app)?;
        Some(Caller {
            name: app.client_id.clone(),
            app_only: true,
            impersonation: app.impersonation.clone(),
        })
    }
}

/// Handles `POST /{tenant}/oauth2/v2.0/token` (client-credentials grant).
pub async fn token_endpoint(
    State(state): State<Arc<SimState>>,
    Path(_tenant): Path<String>,
    Form(request): Form<TokenRequest>,
) -> Response {
    match state.auth.issue_token(&request) {
        Some(token) => Json(token).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
            })),
        )
            .into_response(),
    }
}

/// The request layer that authenticates every EWS request and checks impersonation.
///
/// It runs first. A rejected request gets HTTP 401/403 or a SOAP fault; an accepted one
/// carries the caller's name in [`RequestContext::principal`] (left empty in mode
/// `none`, where the caller is anonymous).
pub fn layer() -> Layer {
    Arc::new(
        |state: Arc<SimState>, mut context: RequestContext, _request| {
            Box::pin(async move {
                let caller = state
                    .auth
                    .authenticate(authorization_header(&context.headers))
                    .map_err(IntoResponse::into_response)?;
                // The dispatcher already answered ErrorNonExistentMailbox for unknown targets.
                let impersonated = context.impersonation.as_ref().and(context.mailbox.as_ref());
                resolve_impersonation(&caller, impersonated, |_| true)
                    .map_err(|fault| soap::fault_response(fault.code(), fault.message(), None))?;
                if state.auth.config().mode != AuthMode::None {
                    context.principal = Some(caller.name);
                }
                Ok(context)
            })
        },
    )
}

/// The token endpoint route.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route(TOKEN_PATH, post(token_endpoint))
}

impl SimControl {
    /// Switches the "EWS disabled" answer (HTTP 403 for every EWS request) on or off.
    pub fn set_ews_disabled(&self, disabled: bool) {
        self.state.auth.set_ews_disabled(disabled);
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.auth.set_token_lifetime(lifetime);
    }

    /// Forgets every issued token, so clients must fetch new ones.
    pub fn revoke_tokens(&self) {
        self.state.auth.revoke_tokens();
    }
}

/// The `Authorization` header of a request, as text.
pub fn authorization_header(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
}

fn basic_caller(config: &AuthConfig, authorization: Option<&str>) -> Option<Caller> {
    let encoded = strip_scheme(authorization?, "Basic")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    let account = config.accounts.iter().find(|account| {
        account.username.eq_ignore_ascii_case(username) && account.password == password
    })?;
    Some(Caller {
        name: account.username.clone(),
        app_only: false,
        impersonation: account.impersonation.clone(),
    })
}

fn strip_scheme<'a>(authorization: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = authorization.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> MailboxAddress {
        MailboxAddress::new("room-1@contoso.example")
    }

    fn bearer_config(lifetime: Duration) -> AuthConfig {
        AuthConfig {
            mode: AuthMode::Bearer,
            apps: vec![AppRegistration {
                client_id: "app".to_owned(),
                client_secret: "secret".to_owned(),
                impersonation: ImpersonationScope::Only(vec![room()]),
            }],
            token_lifetime: lifetime,
            ..AuthConfig::default()
        }
    }

    fn token_request(secret: &str) -> TokenRequest {
        TokenRequest {
            grant_type: Some("client_credentials".to_owned()),
            client_id: "app".to_owned(),
            client_secret: secret.to_owned(),
            scope: Some("https://outlook.office365.com/.default".to_owned()),
        }
    }

    #[test]
    fn basic_auth_accepts_a_configured_account_and_rejects_a_wrong_password() {
        let auth = Authenticator::new(AuthConfig {
            mode: AuthMode::Basic,
            accounts: vec![BasicAccount {
                username: "svc@contoso.example".to_owned(),
                password: "pw".to_owned(),
                impersonation: ImpersonationScope::Everyone,
            }],
            ..AuthConfig::default()
        });
        let good = base64::engine::general_purpose::STANDARD.encode("svc@contoso.example:pw");
        let bad = base64::engine::general_purpose::STANDARD.encode("svc@contoso.example:no");

        let caller = auth.authenticate(Some(&format!("Basic {good}")));
        let refused = auth.authenticate(Some(&format!("Basic {bad}")));

        assert_eq!(caller.map(|caller| caller.app_only), Ok(false));
        assert!(matches!(refused, Err(AuthRejection::Unauthorized { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn bearer_token_works_until_it_expires() {
        let auth = Authenticator::new(bearer_config(Duration::from_secs(60)));
        let token = auth
            .issue_token(&token_request("secret"))
            .map(|t| t.access_token);
        let header = format!("Bearer {}", token.unwrap_or_default());

        let fresh = auth.authenticate(Some(&header));
        tokio::time::advance(Duration::from_secs(61)).await;
        let stale = auth.authenticate(Some(&header));

        assert!(fresh.is_ok_and(|caller| caller.app_only));
        assert_eq!(
            stale,
            Err(AuthRejection::Unauthorized {
                challenge: BEARER_CHALLENGE
            })
        );
    }

    #[test]
    fn debug_output_hides_passwords_and_secrets() {
        let config = bearer_config(DEFAULT_TOKEN_LIFETIME);
        let account = BasicAccount {
            username: "svc".to_owned(),
            password: "hunter2".to_owned(),
            impersonation: ImpersonationScope::Nobody,
        };

        let printed = format!("{config:?} {account:?}");

        assert!(
            !printed.contains("secret\"") && !printed.contains("hunter2"),
            "{printed}"
        );
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn token_endpoint_refuses_a_wrong_secret() {
        let auth = Authenticator::new(bearer_config(DEFAULT_TOKEN_LIFETIME));

        assert!(auth.issue_token(&token_request("wrong")).is_none());
    }

    #[test]
    fn ews_disabled_switch_answers_forbidden() {
        let auth = Authenticator::new(AuthConfig::default());
        auth.set_ews_disabled(true);

        assert_eq!(auth.authenticate(None), Err(AuthRejection::EwsDisabled));
    }

    #[test]
    fn impersonation_distinguishes_unknown_denied_and_missing_header() {
        let app = Caller {
            name: "app".to_owned(),
            app_only: true,
            impersonation: ImpersonationScope::Only(vec![room()]),
        };
        let other = MailboxAddress::new("room-2@contoso.example");
        let ghost = MailboxAddress::new("ghost@contoso.example");
        let exists = |mailbox: &MailboxAddress| *mailbox != ghost;

        assert_eq!(
            resolve_impersonation(&app, Some(&room()), exists),
            Ok(Some(room()))
        );
        assert_eq!(
            resolve_impersonation(&app, Some(&other), exists),
            Err(AuthFault::ImpersonateUserDenied)
        );
        assert_eq!(
            resolve_impersonation(&app, Some(&ghost), exists),
            Err(AuthFault::NonExistentMailbox)
        );
        assert_eq!(
            resolve_impersonation(&app, None, exists),
            Err(AuthFault::ImpersonationHeaderRequired)
        );
    }
}
