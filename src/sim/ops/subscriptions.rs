//! Subscribe, Unsubscribe and GetStreamingEvents.

use std::sync::Arc;

use axum::response::Response;

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

/// Subscribe with a StreamingSubscriptionRequest on one mailbox's calendar.
pub(super) fn subscribe(
    state: &Arc<SimState>,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    let Some(request) = operation.children.first() else {
        return schema_fault("Subscribe needs a subscription request.");
    };
    if request.ns != Ns::Messages {
        return schema_fault("unexpected element in Subscribe.");
    }
    match request.name.as_str() {
        "StreamingSubscriptionRequest" => {}
        "PushSubscriptionRequest" | "PullSubscriptionRequest" => {
            // Push and pull come from extension operations when registered (see `Layers`).
            return subscribe_response(
                &MessageOutcome::error(
                    "ErrorInvalidSubscriptionRequest",
                    "This kind of subscription is not supported by the simulator core.",
                ),
                None,
            );
        }
        _ => return schema_fault("unknown subscription request."),
    }
    if !version_at_least(context, STREAMING_VERSION) {
        return soap::fault_response(
            "ErrorInvalidServerVersion",
            "Streaming subscriptions need RequestServerVersion Exchange2010_SP1 or later.",
            None,
        );
    }
    let mut mask = EventMask::default();
    if let Some(types) = request.child(Ns::Types, "EventTypes") {
        for event_type in types.children_named(Ns::Types, "EventType") {
            match EventMask::parse_kind(&event_type.text) {
                Some(kind) => mask.insert(kind),
                None => return schema_fault("unknown EventType."),
            }
        }
    }
    if mask.is_empty() {
        return schema_fault("EventTypes needs at least one EventType.");
    }
    let all_folders = request.attr("SubscribeToAllFolders") == Some("true");
    let folders = request
        .child(Ns::Types, "FolderIds")
        .map(folder_refs)
        .unwrap_or_default();
    if folders.is_empty() && !all_folders {
        return schema_fault("FolderIds or SubscribeToAllFolders is required.");
    }
    let mut mailbox = None;
    for folder in &folders {
        let resolved = match resolve_folder(state, context, folder) {
            Ok(resolved) => resolved,
            Err(err) => return subscribe_response(&err.outcome(), None),
        };
        if mailbox.as_ref().is_some_and(|m| *m != resolved.address) {
            return subscribe_response(
                &MessageOutcome::error(
                    "ErrorInvalidSubscriptionRequest",
                    "A subscription can only cover folders of one mailbox.",
                ),
                None,
            );
        }
        mailbox = Some(resolved.address);
    }
    let mailbox = match (mailbox, &context.mailbox) {
        (Some(target), Some(acting)) if target != *acting => {
            return subscribe_response(
                &MessageOutcome::error(
                    "ErrorSubscriptionDelegateAccessNotSupported",
                    "Subscriptions are not supported for delegate user access.",
                ),
                None,
            );
        }
        (Some(target), _) => target,
        (None, Some(acting)) => acting.clone(),
        (None, None) => {
            return subscribe_response(&super::FolderError::MissingMailbox.outcome(), None)
        }
    };
    let subscription = state.subscriptions.subscribe(NewSubscription {
        mailbox,
        kind: SubscriptionKind::Streaming,
        event_types: mask,
        owner: context.principal.clone(),
        backend: context.backend,
        limit: state.config.max_queued_events,
    });
    subscribe_response(&MessageOutcome::Success, Some(&subscription.id))
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
