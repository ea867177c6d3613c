//! Subscribe, Unsubscribe and GetStreamingEvents.

use std::sync::Arc;

use axum::response::Response;

use crate::domain::MailboxAddress;
use crate::sim::soap::{self, Element, MessageOutcome, Ns, XmlWriter};
use crate::sim::stream::{
    self, EventMask, NewSubscription, SubscriptionKind, MAX_STREAM_SUBSCRIPTIONS,
    TEXT_SUBSCRIPTION_NOT_FOUND,
};
use crate::sim::{RequestContext, SimState};

use super::{folder_refs, resolve_folder, schema_fault, version_at_least};

/// The first server version with streaming notifications.
const STREAMING_VERSION: &str = "Exchange2010_SP1";

fn subscribe_response(outcome: &MessageOutcome, id: Option<&str>) -> Response {
    let mut writer = XmlWriter::envelope(false);
    writer.open_response("SubscribeResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message("SubscribeResponseMessage", outcome);
    if let Some(id) = id {
        writer.text_m("SubscriptionId", id);
    }
    soap::xml_response(writer.finish())
}

/// Why a Subscribe request is refused: a whole-request fault or an Error message.
enum Refusal {
    Fault(Box<Response>),
    Message(MessageOutcome),
}

impl Refusal {
    fn fault(response: Response) -> Self {
        Self::Fault(Box::new(response))
    }

    fn into_response(self) -> Response {
        match self {
            Self::Fault(response) => *response,
            Self::Message(outcome) => subscribe_response(&outcome, None),
        }
    }
}

/// Subscribe with a StreamingSubscriptionRequest on one mailbox's calendar.
pub(super) fn subscribe(
    state: &Arc<SimState>,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    let result = streaming_request(operation, context).and_then(|request| {
        let mask = event_mask(request)?;
        let mailbox = subscription_mailbox(state, context, request)?;
        Ok((mask, mailbox))
    });
    let (event_types, mailbox) = match result {
        Ok(values) => values,
        Err(refusal) => return refusal.into_response(),
    };
    let subscription = state.subscriptions.subscribe(NewSubscription {
        mailbox,
        kind: SubscriptionKind::Streaming,
        event_types,
        owner: context.principal.clone(),
        backend: context.backend,
        limit: state.config.max_queued_events,
    });
    subscribe_response(&MessageOutcome::Success, Some(&subscription.id))
}

/// The `StreamingSubscriptionRequest` element, once the kind and version are acceptable.
fn streaming_request<'a>(
    operation: &'a Element,
    context: &RequestContext,
) -> Result<&'a Element, Refusal> {
    let Some(request) = operation.children.first() else {
        return Err(Refusal::fault(schema_fault(
            "Subscribe needs a subscription request.",
        )));
    };
    if request.ns != Ns::Messages {
        return Err(Refusal::fault(schema_fault(
            "unexpected element in Subscribe.",
        )));
    }
    match request.name.as_str() {
        "StreamingSubscriptionRequest" => {}
        // Push and pull come from extension operations when registered (see `Layers`).
        "PushSubscriptionRequest" | "PullSubscriptionRequest" => {
            return Err(Refusal::Message(MessageOutcome::error(
                "ErrorInvalidSubscriptionRequest",
                "This kind of subscription is not supported by the simulator core.",
            )));
        }
        _ => {
            return Err(Refusal::fault(schema_fault(
                "unknown subscription request.",
            )))
        }
    }
    if !version_at_least(context, STREAMING_VERSION) {
        return Err(Refusal::fault(soap::fault_response(
            "ErrorInvalidServerVersion",
            "Streaming subscriptions need RequestServerVersion Exchange2010_SP1 or later.",
            None,
        )));
    }
    Ok(request)
}

/// The requested event kinds (at least one, all known).
fn event_mask(request: &Element) -> Result<EventMask, Refusal> {
    let mut mask = EventMask::default();
    if let Some(types) = request.child(Ns::Types, "EventTypes") {
        for event_type in types.children_named(Ns::Types, "EventType") {
            match EventMask::parse_kind(&event_type.text) {
                Some(kind) => mask.insert(kind),
                None => return Err(Refusal::fault(schema_fault("unknown EventType."))),
            }
        }
    }
    if mask.is_empty() {
        return Err(Refusal::fault(schema_fault(
            "EventTypes needs at least one EventType.",
        )));
    }
    Ok(mask)
}

/// The one mailbox the subscription covers; it must be the acting mailbox, if any.
fn subscription_mailbox(
    state: &SimState,
    context: &RequestContext,
    request: &Element,
) -> Result<MailboxAddress, Refusal> {
    let all_folders = request.attr("SubscribeToAllFolders") == Some("true");
    let folders = request
        .child(Ns::Types, "FolderIds")
        .map(folder_refs)
        .unwrap_or_default();
    if folders.is_empty() && !all_folders {
        return Err(Refusal::fault(schema_fault(
            "FolderIds or SubscribeToAllFolders is required.",
        )));
    }
    let mut mailbox: Option<MailboxAddress> = None;
    for folder in &folders {
        let resolved = resolve_folder(state, context, folder)
            .map_err(|err| Refusal::Message(err.outcome()))?;
        if mailbox.as_ref().is_some_and(|m| *m != resolved.address) {
            return Err(Refusal::Message(MessageOutcome::error(
                "ErrorInvalidSubscriptionRequest",
                "A subscription can only cover folders of one mailbox.",
            )));
        }
        mailbox = Some(resolved.address);
    }
    match (mailbox, &context.mailbox) {
        (Some(target), Some(acting)) if target != *acting => {
            Err(Refusal::Message(MessageOutcome::error(
                "ErrorSubscriptionDelegateAccessNotSupported",
                "Subscriptions are not supported for delegate user access.",
            )))
        }
        (Some(target), _) => Ok(target),
        (None, Some(acting)) => Ok(acting.clone()),
        (None, None) => Err(Refusal::Message(
            super::FolderError::MissingMailbox.outcome(),
        )),
    }
}

/// Unsubscribe: NoError once, ErrorSubscriptionNotFound afterwards.
pub(super) fn unsubscribe(state: &Arc<SimState>, operation: &Element) -> Response {
    let Some(id) = operation.child(Ns::Messages, "SubscriptionId") else {
        return schema_fault("Unsubscribe needs a SubscriptionId.");
    };
    let outcome = match state.subscriptions.get(&id.text) {
        Some(subscription) if subscription.kind == SubscriptionKind::Push => MessageOutcome::error(
            "ErrorInvalidPullSubscriptionId",
            "The subscription id is not a pull or streaming subscription.",
        ),
        Some(_) => {
            state.subscriptions.remove(&id.text);
            MessageOutcome::Success
        }
        None => MessageOutcome::error("ErrorSubscriptionNotFound", TEXT_SUBSCRIPTION_NOT_FOUND),
    };
    let mut writer = XmlWriter::envelope(false);
    writer.open_response("UnsubscribeResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message("UnsubscribeResponseMessage", &outcome);
    soap::xml_response(writer.finish())
}

/// GetStreamingEvents: validates ids (1..200) and ConnectionTimeout (1..30), then streams.
pub(super) fn get_streaming_events(
    state: &Arc<SimState>,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    if !version_at_least(context, STREAMING_VERSION) {
        return soap::fault_response(
            "ErrorInvalidServerVersion",
            "Streaming notifications need RequestServerVersion Exchange2010_SP1 or later.",
            None,
        );
    }
    let ids: Vec<String> = operation
        .child(Ns::Messages, "SubscriptionIds")
        .map(|list| {
            list.children_named(Ns::Types, "SubscriptionId")
                .map(|id| id.text.clone())
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return schema_fault("SubscriptionIds needs at least one SubscriptionId.");
    }
    let Some(timeout) = operation
        .child_mt("ConnectionTimeout")
        .and_then(|timeout| timeout.text.trim().parse::<u32>().ok())
        .filter(|minutes| (1..=30).contains(minutes))
    else {
        return schema_fault("ConnectionTimeout must be an integer from 1 to 30.");
    };
    if ids.len() > MAX_STREAM_SUBSCRIPTIONS {
        let mut writer = XmlWriter::envelope(false);
        writer.open_response("GetStreamingEventsResponse");
        writer.open_m("ResponseMessages", &[]);
        writer.open_message(
            "GetStreamingEventsResponseMessage",
            &MessageOutcome::error(
                "ErrorInvalidArgument",
                "A GetStreamingEvents request can name at most 200 subscriptions.",
            ),
        );
        return soap::xml_response(writer.finish());
    }
    stream::open_stream(state.clone(), ids, timeout)
}
