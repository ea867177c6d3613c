//! SOAP Autodiscover (`POST /autodiscover/autodiscover.svc`, GetUserSettings).
//!
//! Owns the Autodiscover wire format: it reads the requested users and settings from a
//! GetUserSettings request and writes the answer, one UserResponse per user in request
//! order (InvalidUser for an unknown one). It does not know where mailboxes live: the
//! caller passes a lookup that yields each mailbox's settings (EWS URL and
//! GroupingInformation, which `limits` derives from the mailbox's back end).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::domain::MailboxAddress;
use crate::sim::{soap, SimState, EWS_PATH};

/// The path Autodiscover answers on.
pub const AUTODISCOVER_PATH: &str = "/autodiscover/autodiscover.svc";

/// The schema versions the simulated server announces in `EwsSupportedSchemas`.
pub const SUPPORTED_SCHEMAS: &str = "Exchange2007, Exchange2007_SP1, Exchange2010, \
Exchange2010_SP1, Exchange2010_SP2, Exchange2013, Exchange2013_SP1, Exchange2016";

const SETTING_EXTERNAL_EWS_URL: &str = "ExternalEwsUrl";
const SETTING_INTERNAL_EWS_URL: &str = "InternalEwsUrl";
const SETTING_GROUPING_INFORMATION: &str = "GroupingInformation";
const SETTING_SUPPORTED_SCHEMAS: &str = "EwsSupportedSchemas";
const SETTING_DISPLAY_NAME: &str = "UserDisplayName";
const SETTING_DEPLOYMENT_ID: &str = "UserDeploymentId";

/// Why a GetUserSettings request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AutodiscoverError {
    /// The body is not well-formed XML.
    #[error("malformed autodiscover request")]
    Malformed(#[from] quick_xml::Error),
    /// The body is not a GetUserSettings request with at least one user.
    #[error("not a GetUserSettings request with users")]
    NotGetUserSettings,
}

/// The users and settings a GetUserSettings request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSettingsRequest {
    /// The mailboxes, in request order.
    pub mailboxes: Vec<String>,
    /// The setting names, in request order.
    pub settings: Vec<String>,
}

/// What the simulator knows about one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSettings {
    /// The display name.
    pub display_name: String,
    /// The EWS URL of the simulator (external and internal are the same).
    pub ews_url: String,
    /// The mailbox's GroupingInformation (its back end group).
    pub grouping_information: String,
}

/// Reads a GetUserSettings request.
///
/// # Errors
///
/// [`AutodiscoverError`] for malformed XML or a request without users.
pub fn parse_request(body: &str) -> Result<UserSettingsRequest, AutodiscoverError> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(true);
    let mut request = UserSettingsRequest {
        mailboxes: Vec::new(),
        settings: Vec::new(),
    };
    let mut current: Option<Vec<u8>> = None;
    let mut seen_operation = false;
    loop {
        match reader.read_event()? {
            Event::Start(start) => {
                let name = start.local_name().as_ref().to_vec();
                seen_operation |= name == b"GetUserSettingsRequestMessage";
                current = Some(name);
            }
            Event::Text(text) => {
                let value = text.unescape()?.trim().to_owned();
                match current.as_deref() {
                    Some(b"Mailbox") => request.mailboxes.push(value),
                    Some(b"Setting") => request.settings.push(value),
                    _ => {}
                }
            }
            Event::End(_) => current = None,
            Event::Eof => break,
            _ => {}
        }
    }
    if !seen_operation || request.mailboxes.is_empty() {
        return Err(AutodiscoverError::NotGetUserSettings);
    }
    Ok(request)
}

/// Writes the GetUserSettings response: one UserResponse per requested mailbox.
pub fn render_response(
    request: &UserSettingsRequest,
    lookup: impl Fn(&MailboxAddress) -> Option<MailboxSettings>,
) -> String {
    let mut users = String::new();
    for mailbox in &request.mailboxes {
        match lookup(&MailboxAddress::new(mailbox)) {
            Some(settings) => render_user(&mut users, &request.settings, &settings),
            None => render_invalid_user(&mut users, mailbox),
        }
    }
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="utf-8"?>"#,
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://www.w3.org/2005/08/addressing">"#,
            r#"<s:Header><a:Action s:mustUnderstand="1">http://schemas.microsoft.com/exchange/2010/Autodiscover/Autodiscover/GetUserSettingsResponse</a:Action>"#,
            r#"<h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/2010/Autodiscover" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
            r#"<h:MajorVersion>15</h:MajorVersion><h:MinorVersion>20</h:MinorVersion><h:MajorBuildNumber>8000</h:MajorBuildNumber>"#,
            r#"<h:MinorBuildNumber>12</h:MinorBuildNumber><h:Version>Exchange2015</h:Version></h:ServerVersionInfo></s:Header>"#,
            r#"<s:Body><GetUserSettingsResponseMessage xmlns="http://schemas.microsoft.com/exchange/2010/Autodiscover">"#,
            r#"<Response xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><ErrorCode>NoError</ErrorCode><ErrorMessage/>"#,
            r#"<UserResponses>{users}</UserResponses></Response></GetUserSettingsResponseMessage></s:Body></s:Envelope>"#,
        ),
        users = users
    )
}

/// The Autodiscover route.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new().route(AUTODISCOVER_PATH, post(handle))
}

/// Answers GetUserSettings; the EWS URL is built from the request's `Host` header, so
/// it is the address the client reached the simulator on.
async fn handle(State(state): State<Arc<SimState>>, headers: HeaderMap, body: String) -> Response {
    let request = match parse_request(&body) {
        Ok(request) => request,
        Err(err) => return (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    };
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    let ews_url = format!("http://{host}{EWS_PATH}");
    let answer = render_response(&request, |mailbox| {
        let (primary, display_name) = {
            let model = state.model();
            let primary = model.resolve(mailbox.as_str())?;
            let display_name = model.display_name(primary.as_str())?;
            (primary, display_name)
        };
        // Asking where a moved mailbox lives completes its move.
        state.faults.move_state(&primary);
        Some(MailboxSettings {
            display_name,
            ews_url: ews_url.clone(),
            grouping_information: state.limits.home(&primary).grouping_information(),
        })
    });
    soap::xml_response(answer)
}

fn render_user(out: &mut String, requested: &[String], settings: &MailboxSettings) {
    let mut values = String::new();
    let mut errors = String::new();
    for name in requested {
        let value = match name.as_str() {
            SETTING_EXTERNAL_EWS_URL | SETTING_INTERNAL_EWS_URL => Some(settings.ews_url.clone()),
            SETTING_GROUPING_INFORMATION => Some(settings.grouping_information.clone()),
            SETTING_SUPPORTED_SCHEMAS => Some(SUPPORTED_SCHEMAS.to_owned()),
            SETTING_DISPLAY_NAME => Some(settings.display_name.clone()),
            SETTING_DEPLOYMENT_ID => Some(deployment_id(&settings.grouping_information)),
            _ => None,
        };
        match value {
            Some(value) => values.push_str(&format!(
                r#"<UserSetting i:type="StringSetting"><Name>{}</Name><Value>{}</Value></UserSetting>"#,
                escape(name),
                escape(&value)
            )),
            None => errors.push_str(&format!(
                "<UserSettingError><ErrorCode>InvalidSetting</ErrorCode>\
                 <ErrorMessage>The requested setting is invalid.</ErrorMessage>\
                 <SettingName>{}</SettingName></UserSettingError>",
                escape(name)
            )),
        }
    }
    out.push_str(&format!(
        "<UserResponse><ErrorCode>NoError</ErrorCode><ErrorMessage>No error.</ErrorMessage>\
         <RedirectTarget i:nil=\"true\"/><UserSettingErrors>{errors}</UserSettingErrors>\
         <UserSettings>{values}</UserSettings></UserResponse>"
    ));
}

fn render_invalid_user(out: &mut String, mailbox: &str) {
    out.push_str(&format!(
        "<UserResponse><ErrorCode>InvalidUser</ErrorCode>\
         <ErrorMessage>Invalid user: '{}'</ErrorMessage><RedirectTarget i:nil=\"true\"/>\
         <UserSettingErrors/><UserSettings/></UserResponse>",
        escape(mailbox)
    ));
}

fn deployment_id(grouping: &str) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(grouping.as_bytes());
    let bytes: [u8; 16] = digest[..16].try_into().unwrap_or([0; 16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

fn escape(text: &str) -> String {
    quick_xml::escape::escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:a="http://schemas.microsoft.com/exchange/2010/Autodiscover"><soap:Body><a:GetUserSettingsRequestMessage><a:Request><a:Users><a:User><a:Mailbox>Room-1@contoso.example</a:Mailbox></a:User><a:User><a:Mailbox>ghost@contoso.example</a:Mailbox></a:User></a:Users><a:RequestedSettings><a:Setting>ExternalEwsUrl</a:Setting><a:Setting>GroupingInformation</a:Setting><a:Setting>Bogus</a:Setting></a:RequestedSettings></a:Request></a:GetUserSettingsRequestMessage></soap:Body></soap:Envelope>"#;

    #[test]
    fn parser_reads_users_and_settings_in_order() {
        let request = parse_request(REQUEST).expect("valid request");

        assert_eq!(
            request.mailboxes,
            ["Room-1@contoso.example", "ghost@contoso.example"]
        );
        assert_eq!(
            request.settings,
            ["ExternalEwsUrl", "GroupingInformation", "Bogus"]
        );
    }

    #[test]
    fn response_answers_known_users_and_flags_unknown_ones() {
        let request = parse_request(REQUEST).expect("valid request");
        let known = MailboxAddress::new("room-1@contoso.example");

        let body = render_response(&request, |mailbox| {
            (*mailbox == known).then(|| MailboxSettings {
                display_name: "Room 1".to_owned(),
                ews_url: "http://127.0.0.1:1/EWS/Exchange.asmx".to_owned(),
                grouping_information: "SIMBE01".to_owned(),
            })
        });

        assert!(body.contains("<Name>GroupingInformation</Name><Value>SIMBE01</Value>"));
        assert!(body.contains("<ErrorCode>InvalidUser</ErrorCode>"));
        assert!(body.contains("<SettingName>Bogus</SettingName>"));
        assert!(is_well_formed(&body), "{body}");
    }

    fn is_well_formed(body: &str) -> bool {
        let mut reader = Reader::from_str(body);
        loop {
            match reader.read_event() {
                Ok(Event::Eof) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn parser_rejects_a_body_without_users() {
        assert!(parse_request("<a/>").is_err());
    }
}
