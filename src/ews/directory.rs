//! Directory lookups: Autodiscover settings, name resolution and room lists.
//!
//! These calls describe the organisation rather than one mailbox's calendar; the
//! `rooms` and `check` commands and the grouping of mailboxes for affinity use them.

use super::client::{EwsClient, Operation, Route};
use super::error::EwsError;
use super::requests::{self, OutgoingMail};
use super::types::{UserSettings, UserSettingsError};
use super::xml;
use crate::domain::{MailboxAddress, Person};

impl EwsClient {
    /// Directory entries matching `entry` (an address, an alias or a name); an address
    /// that is an alias resolves to the primary one. Empty when nothing matches.
    /// `acting_as` is the mailbox the request impersonates (app-only access needs one).
    ///
    /// # Errors
    ///
    /// Any [`EwsError`].
    pub async fn resolve_name(
        &self,
        acting_as: &MailboxAddress,
        entry: &str,
    ) -> Result<Vec<Person>, EwsError> {
        let body = requests::resolve_names(&self.context(acting_as), entry);
        self.call(
            Operation::ResolveNames,
            body,
            self.mailbox_route(acting_as),
            xml::parse_resolve_names,
        )
        .await
    }

    /// Sends a mail (CreateItem) as `acting_as` when impersonation is on, else as the
    /// service account; `mail.from` names another sender. A mail with a tag keeps a
    /// copy in `acting_as`'s Sent Items ([`Self::find_sent_message`] finds it).
    ///
    /// # Errors
    ///
    /// Any [`EwsError`]; the response's error when Exchange refused the message.
    pub async fn send_message(
        &self,
        acting_as: &MailboxAddress,
        mail: &OutgoingMail,
    ) -> Result<(), EwsError> {
        let body = requests::send_message(&self.context(acting_as), mail);
        self.call(
            Operation::CreateItem,
            body,
            self.mailbox_route(acting_as),
            xml::parse_create_item,
        )
        .await
    }

    /// Whether `acting_as`'s Sent Items hold a message sent with `tag`
    /// ([`OutgoingMail::tag`]).
    ///
    /// # Errors
    ///
    /// Any [`EwsError`].
    pub async fn find_sent_message(
        &self,
        acting_as: &MailboxAddress,
        tag: &str,
    ) -> Result<bool, EwsError> {
        let body = requests::find_sent_message(&self.context(acting_as), tag);
        self.call(
            Operation::FindItem,
            body,
            self.mailbox_route(acting_as),
            xml::parse_find_sent_message,
        )
        .await
    }

    /// The organisation's room lists.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`].
    pub async fn get_room_lists(
        &self,
        acting_as: &MailboxAddress,
    ) -> Result<Vec<Person>, EwsError> {
        let body = requests::get_room_lists(&self.context(acting_as));
        self.call(
            Operation::GetRoomLists,
            body,
            self.mailbox_route(acting_as),
            xml::parse_get_room_lists,
        )
        .await
    }

    /// The rooms of one room list; every entry has an email address.
    ///
    /// # Errors
    ///
    /// Any [`EwsError`]; `Malformed` when a room comes without an address.
    pub async fn get_rooms(
        &self,
        acting_as: &MailboxAddress,
        room_list: &MailboxAddress,
    ) -> Result<Vec<Person>, EwsError> {
        let body = requests::get_rooms(&self.context(acting_as), room_list);
        self.call(
            Operation::GetRooms,
            body,
            self.mailbox_route(acting_as),
            xml::parse_get_rooms,
        )
        .await
    }

    /// Asks SOAP Autodiscover at `autodiscover_url` for the EWS URLs and grouping
    /// information of `mailboxes` in one request (keep batches modest). Redirects are
    /// reported per mailbox, not followed.
    ///
    /// Credentials are sent as configured, so pass only an HTTPS URL you trust (or the
    /// bundled simulator's).
    ///
    /// # Errors
    ///
    /// Any [`EwsError`] of the HTTP exchange; `Response` for an error of the whole
    /// request (its Autodiscover error code), `Malformed` when the number of answers
    /// differs from the number of mailboxes.
    pub async fn get_user_settings(
        &self,
        autodiscover_url: &str,
        mailboxes: &[MailboxAddress],
    ) -> Result<Vec<Result<UserSettings, UserSettingsError>>, EwsError> {
        if mailboxes.is_empty() {
            return Ok(Vec::new());
        }
        reqwest::Url::parse(autodiscover_url)
            .map_err(|err| EwsError::InvalidArgument(format!("invalid autodiscover url: {err}")))?;
        let body = requests::get_user_settings(autodiscover_url, mailboxes);
        let route = Route {
            url: autodiscover_url,
            anchor: None,
            affinity: None,
        };
        let results = self
            .call(
                Operation::GetUserSettings,
                body,
                route,
                xml::parse_get_user_settings,
            )
            .await?;
        if results.len() != mailboxes.len() {
            return Err(EwsError::Malformed(format!(
                "{} autodiscover answers for {} mailboxes",
                results.len(),
                mailboxes.len()
            )));
        }
        Ok(results)
    }
}
