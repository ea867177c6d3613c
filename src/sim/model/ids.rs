//! Minting and checking the simulator's opaque ids, change keys, UIDs and sync states.
//!
//! Every id carries a tag derived from the seed, so ids a client invents or alters
//! fail to decode (ErrorInvalidIdMalformed, ErrorInvalidSyncStateData) instead of
//! pointing at some other item. Nothing here reads the clock: a seed always yields the
//! same ids.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Datelike, Utc};

use super::{FolderKind, ItemIdParts};

/// The fixed class id that starts every Outlook global object id.
const GOID_CLASS: [u8; 16] = [
    0x04, 0x00, 0x00, 0x00, 0x82, 0x00, 0xE0, 0x00, 0x74, 0xC5, 0xB7, 0x10, 0x1A, 0x82, 0xE0, 0x08,
];
/// 2020-01-01 as seconds since 1601 (the FILETIME epoch), the base of UID creation times.
const UID_EPOCH_SECONDS: u64 = 13_222_310_400;

/// Mixes two values into a well-distributed 64-bit hash (splitmix64 finaliser).
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mints and checks ids for one seed.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdMint {
    seed: u64,
}

impl IdMint {
    pub(super) fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// A seeded hash of a text (a mailbox address).
    pub(super) fn hash(&self, text: &str) -> u64 {
        text.bytes()
            .fold(mix(self.seed, 0x5157), |h, b| mix(h, b as u64))
    }

    pub(super) fn folder_id(&self, mailbox: u32, kind: FolderKind) -> String {
        let mut bytes = vec![b'S', b'F', kind.code()];
        bytes.extend_from_slice(&mailbox.to_be_bytes());
        let tag = mix(self.seed, mailbox as u64 * 8 + kind.code() as u64) as u32;
        bytes.extend_from_slice(&tag.to_be_bytes());
        BASE64.encode(bytes)
    }

    pub(super) fn decode_folder_id(&self, id: &str) -> Option<(u32, FolderKind)> {
        let bytes = BASE64.decode(id).ok()?;
        if bytes.len() != 11 || bytes[0] != b'S' || bytes[1] != b'F' {
            return None;
        }
        let kind = match bytes[2] {
            0 => FolderKind::Root,
            1 => FolderKind::Calendar,
            2 => FolderKind::DeletedItems,
            _ => return None,
        };
        let mailbox = u32::from_be_bytes(bytes[3..7].try_into().ok()?);
        (self.folder_id(mailbox, kind) == id).then_some((mailbox, kind))
    }

    /// An item id: kind 0 calendar item, 1 occurrence (with its original start), 2 in Deleted Items.
    pub(super) fn item_id(&self, mailbox: u32, key: u64, kind: u8, original_start: i64) -> String {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(b"AAMkSIM");
        bytes.push(kind);
        bytes.extend_from_slice(&mailbox.to_be_bytes());
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.extend_from_slice(&original_start.to_be_bytes());
        let tag = mix(
            self.seed,
            mix(
                key,
                mix(mailbox as u64, original_start as u64 ^ kind as u64),
            ),
        );
        bytes.extend_from_slice(&tag.to_be_bytes()[..4]);
        BASE64.encode(bytes)
    }

    pub(super) fn decode_item_id(&self, id: &str) -> Option<ItemIdParts> {
        let bytes = BASE64.decode(id).ok()?;
        if bytes.len() != 32 || &bytes[..7] != b"AAMkSIM" {
            return None;
        }
        let parts = ItemIdParts {
            kind: bytes[7],
            mailbox: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            key: u64::from_be_bytes(bytes[12..20].try_into().ok()?),
            original_start: i64::from_be_bytes(bytes[20..28].try_into().ok()?),
        };
        (self.item_id(parts.mailbox, parts.key, parts.kind, parts.original_start) == id)
            .then_some(parts)
    }

    pub(super) fn change_key(&self, key: u64, version: u32) -> String {
        let mut bytes = Vec::with_capacity(20);
        bytes.extend_from_slice(b"DwAAABYA");
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.extend_from_slice(&version.to_be_bytes());
        BASE64.encode(bytes)
    }

    /// The change key of the exception of series `key` at `original_start` (Unix
    /// seconds) in `version`: another key than the master's at the same version.
    pub(super) fn exception_change_key(
        &self,
        key: u64,
        original_start: i64,
        version: u32,
    ) -> String {
        let mut bytes = Vec::with_capacity(28);
        bytes.extend_from_slice(b"EwAAABYA");
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.extend_from_slice(&original_start.to_be_bytes());
        bytes.extend_from_slice(&version.to_be_bytes());
        BASE64.encode(bytes)
    }

    /// An Outlook-style UID (hex of a global object id) for the item with this key.
    pub(super) fn uid(&self, key: u64) -> String {
        let mut data = Vec::with_capacity(56);
        data.extend_from_slice(&GOID_CLASS);
        data.extend_from_slice(&[0, 0, 0, 0]);
        // The creation time inside the id comes from the key, not the clock.
        let filetime = (UID_EPOCH_SECONDS + key) * 10_000_000;
        data.extend_from_slice(&filetime.to_le_bytes());
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(&16u32.to_le_bytes());
        data.extend_from_slice(&mix(self.seed, key).to_be_bytes());
        data.extend_from_slice(&mix(key, self.seed ^ 0xA5A5).to_be_bytes());
        data.iter().map(|b| format!("{b:02X}")).collect()
    }

    pub(super) fn sync_state(&self, mailbox_hash: u64, seq: u64) -> String {
        let mut bytes = Vec::with_capacity(26);
        bytes.extend_from_slice(b"SS");
        bytes.extend_from_slice(&mailbox_hash.to_be_bytes());
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&mix(self.seed, mix(mailbox_hash, seq)).to_be_bytes());
        BASE64.encode(bytes)
    }

    /// The sequence number in a sync state of this mailbox, if the state verifies.
    pub(super) fn decode_sync_state(&self, mailbox_hash: u64, state: &str) -> Option<u64> {
        let bytes = BASE64.decode(state.trim()).ok()?;
        if bytes.len() != 26 || &bytes[..2] != b"SS" {
            return None;
        }
        let hash = u64::from_be_bytes(bytes[2..10].try_into().ok()?);
        let seq = u64::from_be_bytes(bytes[10..18].try_into().ok()?);
        let check = u64::from_be_bytes(bytes[18..26].try_into().ok()?);
        (hash == mailbox_hash && check == mix(self.seed, mix(hash, seq))).then_some(seq)
    }
}

/// The Outlook global object id of a meeting (with the instance date of an occurrence).
pub(super) fn goid_bytes(uid: &str, instance: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..uid.len() / 2)
        .filter_map(|i| u8::from_str_radix(uid.get(i * 2..i * 2 + 2)?, 16).ok())
        .collect();
    if bytes.len() < 20 || bytes[..16] != GOID_CLASS {
        // A foreign UID (not an Outlook one) is wrapped the way Outlook wraps iCalendar UIDs.
        let mut wrapped = GOID_CLASS.to_vec();
        wrapped.extend_from_slice(&[0; 16]);
        wrapped.extend_from_slice(&(uid.len() as u32 + 12).to_le_bytes());
        wrapped.extend_from_slice(b"vCal-Uid\x01\x00\x00\x00");
        wrapped.extend_from_slice(uid.as_bytes());
        bytes = wrapped;
    }
    if let Some(date) = instance {
        let year = date.year() as u16;
        bytes[16] = (year >> 8) as u8;
        bytes[17] = (year & 0xFF) as u8;
        bytes[18] = date.month() as u8;
        bytes[19] = date.day() as u8;
    }
    bytes
}
