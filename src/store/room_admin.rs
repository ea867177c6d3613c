//! Room onboarding as an administrator drives it: the coexistence switch, gated on
//! a complete initial sync.
//!
//! The gate is one conditional `UPDATE`, so a room cannot slip from `complete` back
//! to another state between the check and the switch.

use super::{strip_nul, InitialSync, PgStore, StoreError};
use crate::domain::MailboxAddress;

/// What asking to switch a room's coexistence did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoexistenceChange {
    /// The switch is now in the asked position.
    Done,
    /// Refused: coexistence needs a complete initial sync, and the room is here.
    InitialSyncNotComplete(InitialSync),
    /// No room has this address.
    UnknownRoom,
}

impl PgStore {
    /// Adds a room found in Exchange's directory, not yet synchronised, or renames a
    /// known one without touching its switches. Returns `true` for a new room.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn import_room(
        &self,
        email: &MailboxAddress,
        name: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "\
            INSERT INTO rooms (email, name, sync_enabled) VALUES (lower($1), $2, false) \
            ON CONFLICT ((lower(email))) DO UPDATE \
            SET name = EXCLUDED.name, \
                updated_at = CASE WHEN rooms.name = EXCLUDED.name THEN rooms.updated_at \
                    ELSE now() END \
            RETURNING (xmax = 0)";
        let name = strip_nul(name);
        let name = name.as_str();
        let row = self
            .retrying(|client, _| async move {
                Ok(client.query_one(SQL, &[&email.as_str(), &name]).await?)
            })
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Turns coexistence of a room on or off. Turning it on is refused while the
    /// room's initial sync is not `complete`; turning it off always works.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn set_coexistence(
        &self,
        email: &MailboxAddress,
        enabled: bool,
    ) -> Result<CoexistenceChange, StoreError> {
        const SQL: &str = "\
            WITH target AS ( \
                SELECT id, initial_sync FROM rooms WHERE lower(email) = lower($1) \
            ), switched AS ( \
                UPDATE rooms r SET coexistence_enabled = $2, updated_at = now() \
                FROM target t \
                WHERE r.id = t.id AND (NOT $2 OR t.initial_sync = 'complete') \
                RETURNING r.id \
            ) \
            SELECT t.initial_sync, EXISTS (SELECT 1 FROM switched) FROM target t";
        let row = self
            .retrying(|client, _| async move {
                Ok(client.query_opt(SQL, &[&email.as_str(), &enabled]).await?)
            })
            .await?;
        let Some(row) = row else {
            return Ok(CoexistenceChange::UnknownRoom);
        };
        let state: InitialSync = row.try_get(0)?;
        let switched: bool = row.try_get(1)?;
        Ok(if switched {
            CoexistenceChange::Done
        } else {
            CoexistenceChange::InitialSyncNotComplete(state)
        })
    }
}
