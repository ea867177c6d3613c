//! Autodiscover GetUserSettings responses.

use super::names::*;
use super::tree::{Element, Ns};
use super::{malformed, parse_envelope};
use crate::ews::error::EwsError;
use crate::ews::types::{UserSettings, UserSettingsError};

/// Reads a GetUserSettings response: one result per requested mailbox, in order.
pub fn parse_get_user_settings(
    body: &[u8],
) -> Result<Vec<Result<UserSettings, UserSettingsError>>, EwsError> {
    let root = parse_envelope(body)?;
    let response = root
        .path(Ns::Soap, &[BODY])
        .and_then(|body| body.child(Ns::Autodiscover, GET_USER_SETTINGS_RESPONSE_MESSAGE))
        .and_then(|message| message.child(Ns::Autodiscover, RESPONSE))
        .ok_or_else(|| malformed("body without GetUserSettingsResponseMessage/Response"))?;
    let code = text(response, ERROR_CODE).unwrap_or(AUTODISCOVER_NO_ERROR);
    if code != AUTODISCOVER_NO_ERROR {
        return Err(EwsError::Response {
            code: code.to_owned(),
            message: text(response, ERROR_MESSAGE).unwrap_or_default().to_owned(),
        });
    }
    let users = response
        .child(Ns::Autodiscover, USER_RESPONSES)
        .ok_or_else(|| malformed("Response without UserResponses"))?;
    Ok(users
        .children_named(Ns::Autodiscover, USER_RESPONSE)
        .map(user_settings)
        .collect())
}

fn user_settings(user: &Element) -> Result<UserSettings, UserSettingsError> {
    let code = text(user, ERROR_CODE).unwrap_or(AUTODISCOVER_NO_ERROR);
    if code != AUTODISCOVER_NO_ERROR {
        return Err(UserSettingsError {
            code: code.to_owned(),
            message: text(user, ERROR_MESSAGE)
                .filter(|message| !message.is_empty())
                .map(str::to_owned),
            redirect_target: text(user, REDIRECT_TARGET)
                .filter(|target| !target.is_empty())
                .map(str::to_owned),
        });
    }
    let setting = |name: &str| {
        user.child(Ns::Autodiscover, USER_SETTINGS)?
            .children_named(Ns::Autodiscover, USER_SETTING)
            .find(|setting| text(setting, NAME) == Some(name))
            .and_then(|setting| text(setting, VALUE))
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    Ok(UserSettings {
        external_ews_url: setting(SETTING_EXTERNAL_EWS_URL),
        internal_ews_url: setting(SETTING_INTERNAL_EWS_URL),
        grouping_information: setting(SETTING_GROUPING_INFORMATION),
    })
}

fn text<'a>(element: &'a Element, name: &str) -> Option<&'a str> {
    element.child_text(Ns::Autodiscover, name)
}
