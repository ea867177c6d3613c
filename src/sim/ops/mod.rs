//! The EWS endpoint: request dispatch and the calendar and notification operations.
//!
//! `POST /EWS/Exchange.asmx` parses the envelope ([`crate::sim::soap`]), checks the
//! header (RequestServerVersion required, impersonation target must exist), runs the
//! request [`Layers`](super::Layers) and dispatches on the body's first element. Whole-
//! request problems answer HTTP 500 SOAP faults; per-item problems are Error response
//! messages inside HTTP 200, as Exchange does.

mod calendar_xml;
mod folders;
mod items;
mod subscriptions;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use axum::Router;

use crate::domain::MailboxAddress;

use super::soap::{self, Element, Ns, SoapRequest};
use super::{RequestContext, SimState, EWS_PATH};

/// Text of ErrorSchemaValidation faults.
const TEXT_SCHEMA_VALIDATION: &str = "The request failed schema validation.";
/// Text of ErrorMissingEmailAddress.
const TEXT_MISSING_MAILBOX: &str = "When making a request as an account that does not have a mailbox, you must specify the mailbox primary SMTP address for any distinguished folder Ids.";

/// Server versions in order; a name not listed is treated as newer than all of them.
const VERSIONS: [&str; 7] = [
    "Exchange2007",
    "Exchange2007_SP1",
    "Exchange2010",
    "Exchange2010_SP1",
    "Exchange2010_SP2",
    "Exchange2013",
    "Exchange2013_SP1",
];

/// The EWS routes.
pub fn routes(state: Arc<SimState>) -> Router {
    Router::new()
        .route(EWS_PATH, post(handle))
        .route("/ews/exchange.asmx", post(handle))
        .with_state(state)
}

async fn handle(State(state): State<Arc<SimState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match soap::parse_request(&body) {
        Ok(request) => Arc::new(request),
        Err(err) => {
            state.stats.count_request("Invalid", "fault");
            tracing::debug!(error = %err, "Simulator rejected an unparseable request");
            return soap::fault_response("ErrorSchemaValidation", TEXT_SCHEMA_VALIDATION, None);
        }
    };
    let operation = request.operation.name.clone();
    let mut response = dispatch(state.clone(), headers, request).await;
    for layer in &state.layers.responses {
        response = layer(state.clone(), operation.clone(), response).await;
    }
    let outcome = if response.status().is_success() {
        "ok"
    } else {
        "fault"
    };
    state.stats.count_request(&operation, outcome);
    response
}

async fn dispatch(state: Arc<SimState>, headers: HeaderMap, request: Arc<SoapRequest>) -> Response {
    if request.operation.ns != Ns::Messages {
        return soap::fault_response(
            "ErrorInvalidRequest",
            "The request is invalid: the body does not hold an EWS operation.",
            None,
        );
    }
    let Some(version) = request.server_version.clone() else {
        return soap::fault_response(
            "ErrorInvalidServerVersion",
            "The specified server version is invalid: RequestServerVersion is required.",
            None,
        );
    };
    let mut context = RequestContext {
        headers,
        operation: request.operation.name.clone(),
        server_version: Some(version),
        impersonation: request.impersonation.clone(),
        ..RequestContext::default()
    };
    if let Some(target) = &request.impersonation {
        match state.model().resolve(target) {
            Some(address) => context.mailbox = Some(address),
            None => {
                return soap::fault_response(
                    "ErrorNonExistentMailbox",
                    &format!("The SMTP address has no mailbox associated with it: {target}"),
                    None,
                )
            }
        }
    }
    for layer in &state.layers.layers {
        context = match layer(state.clone(), context, request.clone()).await {
            Ok(context) => context,
            Err(response) => return response,
        };
    }
    let extra_headers = std::mem::take(&mut context.response_headers);
    let body_guard = context.body_guard.take();
    let variant = request
        .operation
        .children
        .first()
        .map(|first| format!("{}/{}", request.operation.name, first.name));
    if let Some(operation) = variant.and_then(|key| state.layers.operations.get(key.as_str())) {
        let mut response = operation(state.clone(), context, request.clone()).await;
        response.headers_mut().extend(extra_headers);
        return response;
    }
    let mut response = match request.operation.name.as_str() {
        "Subscribe" => subscriptions::subscribe(&state, &context, &request.operation),
        "Unsubscribe" => subscriptions::unsubscribe(&state, &request.operation),
        "GetStreamingEvents" => {
            subscriptions::get_streaming_events(&state, &context, &request.operation)
        }
        "GetFolder" => folders::get_folder(&state, &context, &request.operation),
        "SyncFolderItems" => folders::sync_folder_items(&state, &context, &request.operation),
        "GetItem" => items::get_item(&state, &request.operation),
        "FindItem" if crate::sim::directory::is_sent_items_search(&request.operation) => {
            crate::sim::directory::answer_find_sent(&state, &context, &request.operation)
        }
        "FindItem" => items::find_item(&state, &context, &request.operation),
        name => match state.layers.operations.get(name) {
            Some(operation) => operation(state.clone(), context, request.clone()).await,
            None => soap::fault_response(
                "ErrorInvalidRequest",
                &format!("The request is invalid: operation {name} is not supported."),
                None,
            ),
        },
    };
    response.headers_mut().extend(extra_headers);
    match body_guard {
        Some(guard) => crate::sim::limits::hold_until_body_ends(response, guard),
        None => response,
    }
}

/// Whether the request's server version is at least `minimum`.
fn version_at_least(context: &RequestContext, minimum: &str) -> bool {
    let rank = |name: &str| {
        VERSIONS
            .iter()
            .position(|version| *version == name)
            .unwrap_or(VERSIONS.len())
    };
    context
        .server_version
        .as_deref()
        .is_some_and(|version| rank(version) >= rank(minimum))
}

/// A whole-request schema fault with a reason.
fn schema_fault(reason: &str) -> Response {
    soap::fault_response(
        "ErrorSchemaValidation",
        &format!("{TEXT_SCHEMA_VALIDATION} {reason}"),
        None,
    )
}

/// A folder reference from a request: which mailbox and which folder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FolderRef {
    /// `DistinguishedFolderId Id="..."`, optionally with an explicit mailbox.
    Distinguished {
        name: String,
        mailbox: Option<String>,
    },
    /// `FolderId Id="..."`.
    Id(String),
}

/// Parses the folder ids under an element (`FolderIds`, `ParentFolderIds`, `SyncFolderId`).
fn folder_refs(parent: &Element) -> Vec<FolderRef> {
    parent
        .children
        .iter()
        .filter(|child| child.ns == Ns::Types)
        .filter_map(|child| match child.name.as_str() {
            "DistinguishedFolderId" => Some(FolderRef::Distinguished {
                name: child.attr("Id").unwrap_or_default().to_owned(),
                mailbox: child
                    .child(Ns::Types, "Mailbox")
                    .and_then(|mailbox| mailbox.child(Ns::Types, "EmailAddress"))
                    .map(|address| address.text.clone()),
            }),
            "FolderId" => Some(FolderRef::Id(
                child.attr("Id").unwrap_or_default().to_owned(),
            )),
            _ => None,
        })
        .collect()
}

/// Why a folder reference cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FolderError {
    /// No mailbox is known for a distinguished folder.
    MissingMailbox,
    /// The named mailbox does not exist.
    NoMailbox(String),
    /// Not a folder the simulator has, or not a valid id.
    NotFound,
    /// A malformed folder id.
    Malformed,
}

impl FolderError {
    fn outcome(&self) -> soap::MessageOutcome {
        match self {
            Self::MissingMailbox => {
                soap::MessageOutcome::error("ErrorMissingEmailAddress", TEXT_MISSING_MAILBOX)
            }
            Self::NoMailbox(address) => soap::MessageOutcome::error(
                "ErrorNonExistentMailbox",
                format!("The SMTP address has no mailbox associated with it: {address}"),
            ),
            Self::NotFound => soap::MessageOutcome::error(
                "ErrorFolderNotFound",
                "The specified folder could not be found in the store.",
            ),
            Self::Malformed => {
                soap::MessageOutcome::error("ErrorInvalidIdMalformed", "Id is malformed.")
            }
        }
    }
}

/// A resolved folder: mailbox index and address, and which folder.
#[derive(Debug, Clone)]
struct ResolvedFolder {
    mailbox: u32,
    address: MailboxAddress,
    kind: super::model::FolderKind,
}

/// Resolves a folder reference against the request's mailbox.
fn resolve_folder(
    state: &SimState,
    context: &RequestContext,
    folder: &FolderRef,
) -> Result<ResolvedFolder, FolderError> {
    use super::model::FolderKind;
    let model = state.model();
    match folder {
        FolderRef::Distinguished { name, mailbox } => {
            let kind = match name.as_str() {
                "calendar" => FolderKind::Calendar,
                "deleteditems" => FolderKind::DeletedItems,
                "msgfolderroot" | "root" => FolderKind::Root,
                _ => return Err(FolderError::NotFound),
            };
            let address = match mailbox {
                Some(explicit) => model
                    .resolve(explicit)
                    .ok_or_else(|| FolderError::NoMailbox(explicit.clone()))?,
                None => context
                    .mailbox
                    .clone()
                    .or_else(|| anchor_mailbox(context).and_then(|anchor| model.resolve(&anchor)))
                    .ok_or(FolderError::MissingMailbox)?,
            };
            let index = model
                .mailbox_number(address.as_str())
                .map_err(|_| FolderError::NoMailbox(address.to_string()))?;
            Ok(ResolvedFolder {
                mailbox: index,
                address,
                kind,
            })
        }
        FolderRef::Id(id) => {
            let (index, kind) = model.decode_folder_id(id).ok_or(FolderError::Malformed)?;
            let address = model.address_of(index).ok_or(FolderError::NotFound)?;
            Ok(ResolvedFolder {
                mailbox: index,
                address,
                kind,
            })
        }
    }
}

/// The `X-AnchorMailbox` header, when present.
fn anchor_mailbox(context: &RequestContext) -> Option<String> {
    context
        .headers
        .get("x-anchormailbox")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}
