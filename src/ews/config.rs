//! Settings of the EWS client, filled in by the application's configuration loader.

use std::time::Duration;

use secrecy::SecretString;

/// Default `RequestServerVersion`: safe for Exchange Online, 2016, 2019 and SE.
pub const DEFAULT_SERVER_VERSION: &str = "Exchange2013_SP1";
/// Default cap on concurrent non-streaming requests (Exchange's EWSMaxConcurrency is 27).
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 10;
/// Default timeout of one non-streaming request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How the client connects to Exchange.
#[derive(Debug, Clone)]
pub struct EwsConfig {
    /// The EWS endpoint, e.g. `https://mail.contoso.example/EWS/Exchange.asmx`.
    pub url: String,
    /// Credentials sent with every request.
    pub auth: EwsAuth,
    /// Act as each mailbox (`ExchangeImpersonation`) rather than by delegate access.
    pub impersonation: bool,
    /// `RequestServerVersion` sent in every request.
    pub server_version: String,
    /// Time limit of a non-streaming request, and of opening a stream.
    pub request_timeout: Duration,
    /// How many non-streaming requests may be in flight at once (at least 1).
    pub max_concurrent_requests: usize,
    /// `User-Agent` header; keep it stable, Exchange admins allow-list it.
    pub user_agent: String,
}

/// Credentials for EWS.
#[derive(Debug, Clone)]
pub enum EwsAuth {
    /// No credentials (the bundled simulator, or a proxy that adds them).
    None,
    /// HTTP Basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password; never logged.
        password: SecretString,
    },
    /// A fixed OAuth bearer token, managed outside the service.
    Bearer {
        /// The access token; never logged.
        token: SecretString,
    },
    /// OAuth 2.0 client credentials (app-only access, e.g. Microsoft Entra ID with
    /// `full_access_as_app`): the client fetches, caches and renews the token itself.
    OAuthClientCredentials {
        /// Token endpoint, e.g. `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
        token_url: String,
        /// Application (client) id.
        client_id: String,
        /// Client secret; never logged.
        client_secret: SecretString,
        /// Requested scope, e.g. `https://outlook.office365.com/.default`.
        scope: String,
    },
}
