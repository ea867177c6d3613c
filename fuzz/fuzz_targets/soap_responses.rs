//! The SOAP response readers (SyncFolderItems, GetItem, FindItem, GetFolder,
//! Subscribe): any body is a value or a classified error, never a panic.

#![no_main]

use booking_sync::ews::responses as parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse::parse_sync_folder_items(data);
    let _ = parse::parse_get_item(data);
    let _ = parse::parse_find_calendar_view(data);
    let _ = parse::parse_get_folder(data);
    let _ = parse::parse_subscribe(data);
});
