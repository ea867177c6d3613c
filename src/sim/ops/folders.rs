//! GetFolder and SyncFolderItems.

use std::sync::Arc;

use axum::response::Response;

use crate::sim::model::{FolderKind, InvalidSyncState, SyncEntry, SyncResult, FOLDER_CHANGE_KEY};
use crate::sim::soap::{self, Element, MessageOutcome, Ns, XmlWriter};
use crate::sim::{RequestContext, SimState};

use super::calendar_xml::{write_calendar_item, Purpose, Shape};
use super::{folder_refs, resolve_folder, schema_fault, FolderRef};

/// Most changes one SyncFolderItems call may ask for.
const MAX_CHANGES: usize = 512;

/// GetFolder: one response message per folder id.
pub(super) fn get_folder(
    state: &Arc<SimState>,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    let folders = operation
        .child(Ns::Messages, "FolderIds")
        .map(folder_refs)
        .unwrap_or_default();
    if folders.is_empty() {
        return schema_fault("GetFolder needs FolderIds.");
    }
    let mut writer = XmlWriter::envelope(false);
    writer.open_response("GetFolderResponse");
    writer.open_m("ResponseMessages", &[]);
    for folder in &folders {
        match resolve_folder(state, context, folder) {
            Ok(resolved) => {
                writer.open_message("GetFolderResponseMessage", &MessageOutcome::Success);
                writer.open_m("Folders", &[]);
                write_folder(&mut writer, state, resolved.mailbox, resolved.kind);
                writer.close();
            }
            Err(err) => {
                writer.open_message("GetFolderResponseMessage", &err.outcome());
                writer.empty_m("Folders", &[]);
            }
        }
        writer.close();
    }
    soap::xml_response(writer.finish())
}

/// Writes one folder element (`CalendarFolder` or `Folder`) in schema order.
fn write_folder(writer: &mut XmlWriter, state: &SimState, mailbox: u32, kind: FolderKind) {
    let model = state.model();
    let (element, class, name, count) = match kind {
        FolderKind::Calendar => (
            "CalendarFolder",
            "IPF.Appointment",
            "Calendar",
            model.calendar_count(mailbox),
        ),
        FolderKind::DeletedItems => (
            "Folder",
            "IPF.Note",
            "Deleted Items",
            model.deleted_items_count(mailbox),
        ),
        FolderKind::Root => ("Folder", "IPF.Note", "Top of Information Store", 0),
    };
    let id = model.folder_id(mailbox, kind);
    let parent = model.folder_id(mailbox, FolderKind::Root);
    drop(model);
    writer.open_t(element, &[]);
    writer.empty_t("FolderId", &[("Id", &id), ("ChangeKey", FOLDER_CHANGE_KEY)]);
    if kind != FolderKind::Root {
        writer.empty_t(
            "ParentFolderId",
            &[("Id", &parent), ("ChangeKey", FOLDER_CHANGE_KEY)],
        );
    }
    writer.text_t("FolderClass", class);
    writer.text_t("DisplayName", name);
    writer.text_t("TotalCount", &count.to_string());
    // The root holds the calendar and Deleted Items; those hold no folders.
    let children = if kind == FolderKind::Root { "2" } else { "0" };
    writer.text_t("ChildFolderCount", children);
    if element == "Folder" {
        writer.text_t("UnreadCount", "0");
    }
    writer.close();
}

fn sync_response(writer: &mut XmlWriter, outcome: &MessageOutcome) {
    writer.open_response("SyncFolderItemsResponse");
    writer.open_m("ResponseMessages", &[]);
    writer.open_message("SyncFolderItemsResponseMessage", outcome);
}

/// The arguments of a SyncFolderItems request.
struct SyncArgs<'a> {
    shape: Shape,
    folder: FolderRef,
    max: usize,
    sync_state: Option<&'a str>,
    ignore: Vec<String>,
}

/// Reads and checks the SyncFolderItems children; the error is a schema fault's reason.
fn sync_args(operation: &Element) -> Result<SyncArgs<'_>, &'static str> {
    let Some(folder) = operation
        .child(Ns::Messages, "SyncFolderId")
        .map(folder_refs)
        .and_then(|folders| folders.into_iter().next())
    else {
        return Err("SyncFolderItems needs SyncFolderId.");
    };
    let Some(max) = operation
        .child(Ns::Messages, "MaxChangesReturned")
        .and_then(|max| max.text.trim().parse::<usize>().ok())
        .filter(|max| (1..=MAX_CHANGES).contains(max))
    else {
        return Err("MaxChangesReturned must be an integer from 1 to 512.");
    };
    let ignore = operation
        .child(Ns::Messages, "Ignore")
        .map(|list| {
            list.children_named(Ns::Types, "ItemId")
                .filter_map(|id| id.attr("Id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(SyncArgs {
        shape: Shape::parse(operation.child(Ns::Messages, "ItemShape")),
        folder,
        max,
        sync_state: operation
            .child(Ns::Messages, "SyncState")
            .map(|state| state.text.as_str()),
        ignore,
    })
}

/// SyncFolderItems over the calendar: Create/Update/Delete since the sync state.
pub(super) fn sync_folder_items(
    state: &Arc<SimState>,
    context: &RequestContext,
    operation: &Element,
) -> Response {
    let args = match sync_args(operation) {
        Ok(args) => args,
        Err(reason) => return schema_fault(reason),
    };
    let mut writer = XmlWriter::envelope(false);
    let result = resolve_folder(state, context, &args.folder)
        .map_err(|err| err.outcome())
        .and_then(|resolved| {
            if resolved.kind != FolderKind::Calendar {
                return Err(MessageOutcome::error(
                    "ErrorSyncFolderNotFound",
                    "The simulator synchronises calendar folders only.",
                ));
            }
            state
                .model()
                .sync(resolved.mailbox, args.sync_state, args.max, &args.ignore)
                .map_err(|InvalidSyncState| {
                    MessageOutcome::error(
                        "ErrorInvalidSyncStateData",
                        "Synchronization state data is corrupt or otherwise invalid.",
                    )
                })
        });
    match result {
        Ok(result) => {
            sync_response(&mut writer, &MessageOutcome::Success);
            write_changes(&mut writer, &result, &args.shape);
        }
        Err(outcome) => sync_response(&mut writer, &outcome),
    }
    soap::xml_response(writer.finish())
}

/// Writes SyncState, IncludesLastItemInRange and Changes.
fn write_changes(writer: &mut XmlWriter, result: &SyncResult, shape: &Shape) {
    writer.text_m("SyncState", &result.sync_state);
    let last = if result.includes_last_item_in_range {
        "true"
    } else {
        "false"
    };
    writer.text_m("IncludesLastItemInRange", last);
    writer.open_m("Changes", &[]);
    for change in &result.changes {
        match change {
            SyncEntry::Create(item) => {
                writer.open_t("Create", &[]);
                write_calendar_item(writer, item, shape, Purpose::List);
                writer.close();
            }
            SyncEntry::Update(item) => {
                writer.open_t("Update", &[]);
                write_calendar_item(writer, item, shape, Purpose::List);
                writer.close();
            }
            SyncEntry::Delete {
                item_id,
                change_key,
            } => {
                writer.open_t("Delete", &[]);
                writer.empty_t("ItemId", &[("Id", item_id), ("ChangeKey", change_key)]);
                writer.close();
            }
        }
    }
    writer.close();
}
