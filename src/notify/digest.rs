//! Digest text: one email listing every waiting issue of one recipient, in their words.
//!
//! Each issue says what happened to which meeting and what to do about it. The same
//! content is rendered as plain text and as HTML (every value escaped).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::store::{IssueAudience, PendingIssue};

/// A rendered digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// One issue in words: what happened and what to do.
struct Paragraph {
    what: String,
    todo: String,
}

/// Renders the digest of `issues` for a recipient of `audience`.
pub fn render(audience: IssueAudience, issues: &[PendingIssue]) -> Digest {
    let count = issues.len();
    let subject = match (audience, count) {
        (IssueAudience::Admin, _) => {
            format!("Initial sync report: {count} meeting(s) need attention")
        }
        (IssueAudience::User, 1) => "A meeting needs your attention".to_owned(),
        (IssueAudience::User, _) => format!("{count} meetings need your attention"),
    };
    let intro = match audience {
        IssueAudience::Admin => "While the rooms below were synced for the first time, these \
             meetings were found where Outlook and the booking system disagree. Their \
             organizers were not emailed."
            .to_owned(),
        IssueAudience::User => "Outlook and the booking system disagree about the meetings \
             below. The booking system follows Outlook, but some things need you."
            .to_owned(),
    };
    let paragraphs: Vec<(Paragraph, Option<String>)> = issues
        .iter()
        .map(|issue| {
            let organizer = (audience == IssueAudience::Admin)
                .then(|| text_of(&issue.details, "organizer_email"))
                .flatten();
            (paragraph(&issue.rule, &issue.details), organizer)
        })
        .collect();
    let mut text = format!("{intro}\n");
    let mut html = format!("<p>{}</p>\n<ol>\n", escape(&intro));
    for (paragraph, organizer) in &paragraphs {
        let who = organizer
            .as_ref()
            .map(|email| format!(" (organizer: {email})"))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n- {}{who}\n  What to do: {}\n",
            paragraph.what, paragraph.todo
        ));
        html.push_str(&format!(
            "<li><p>{}{}</p><p><b>What to do:</b> {}</p></li>\n",
            escape(&paragraph.what),
            escape(&who),
            escape(&paragraph.todo)
        ));
    }
    html.push_str("</ol>\n");
    Digest {
        subject,
        text,
        html,
    }
}

fn paragraph(rule: &str, details: &Value) -> Paragraph {
    let subject = text_of(details, "subject").unwrap_or_default();
    let meeting = format!("\u{201c}{subject}\u{201d}");
    let room = room_name(&details["room"]);
    let when = time_of(details, "starts_at");
    let now = &details["now"];
    let services = services_of(details);
    match rule {
        "time_changed_with_services" => Paragraph {
            what: format!(
                "{meeting} in {room} moved from {when} to {}. It has {services} booked.",
                time_of(now, "starts_at")
            ),
            todo: format!("check that {services} still fit the new time{}.", deadline_of(details)),
        },
        "room_changed_with_services" => Paragraph {
            what: format!(
                "{meeting} on {when} moved from {room} to {}. The {services} booked for {room} did not move with it.",
                room_name(&now["room"])
            ),
            todo: format!("move or rebook {services} for the new room{}.", deadline_of(details)),
        },
        "cancelled_with_services" => Paragraph {
            what: format!(
                "{meeting} on {when} in {room} was cancelled in Outlook, but {services} are still booked."
            ),
            todo: format!("cancel {services} if you no longer need them{}.", deadline_of(details)),
        },
        "booking_missing_in_exchange" => Paragraph {
            what: format!(
                "Your booking {meeting} on {when} in {room} has no matching meeting in the room's Outlook calendar: it was removed there, or is at another time."
            ),
            todo: "book the room again in Outlook at the right time, or cancel the booking.".to_owned(),
        },
        _ => Paragraph {
            what: format!(
                "{meeting} on {when} in {room} was organized by {}, who is not a user of the booking system. The meeting is in the booking system all the same.",
                text_of(details, "organizer_email").unwrap_or_else(|| "someone unknown".to_owned())
            ),
            todo: "add the organizer as a user, or take the meeting over.".to_owned(),
        },
    }
}

fn text_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn room_name(room: &Value) -> String {
    text_of(room, "name")
        .or_else(|| text_of(room, "email"))
        .unwrap_or_else(|| "the room".to_owned())
}

fn time_of(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<DateTime<Utc>>().ok())
        .map_or_else(
            || "an unknown time".to_owned(),
            |time| time.format("%a %-d %b %Y %H:%M UTC").to_string(),
        )
}

fn services_of(details: &Value) -> String {
    let names: Vec<String> = details["services"]
        .as_array()
        .map(|services| {
            services
                .iter()
                .map(|service| {
                    let kind = text_of(service, "kind").unwrap_or_default();
                    match text_of(service, "description").filter(|text| !text.is_empty()) {
                        Some(description) => format!("{kind} ({description})"),
                        None => kind,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        "services".to_owned()
    } else {
        names.join(", ")
    }
}

fn deadline_of(details: &Value) -> String {
    details["services"]
        .as_array()
        .and_then(|services| {
            services
                .iter()
                .filter_map(|service| service.get("deadline").and_then(Value::as_str))
                .filter_map(|text| text.parse::<DateTime<Utc>>().ok())
                .min()
        })
        .map(|deadline| format!(" before {}", deadline.format("%a %-d %b %Y %H:%M UTC")))
        .unwrap_or_default()
}

/// Escapes `text` for HTML element content (the digest puts no value in an
/// attribute); quotes stay as they are, since `&apos;` is unknown to HTML 4 mail readers.
fn escape(text: &str) -> String {
    quick_xml::escape::partial_escape(text).into_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn issue(rule: &str) -> PendingIssue {
        PendingIssue {
            id: 1,
            rule: rule.to_owned(),
            details: json!({
                "subject": "Board <2030>",
                "starts_at": "2030-05-06T09:00:00Z",
                "organizer_email": "ann@contoso.example",
                "room": {"name": "Room 1", "email": "room-001@contoso.example"},
                "now": {"starts_at": "2030-05-06T14:00:00Z", "room": {"name": "Room 2"}},
                "services": [{"kind": "catering", "description": "Coffee", "deadline": "2030-05-05T12:00:00Z"}],
            }),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn a_moved_meeting_says_what_moved_and_what_to_do_in_both_bodies() {
        let digest = render(IssueAudience::User, &[issue("time_changed_with_services")]);

        assert_eq!(digest.subject, "A meeting needs your attention");
        assert!(digest
            .text
            .contains("moved from Mon 6 May 2030 09:00 UTC to Mon 6 May 2030 14:00 UTC"));
        assert!(digest.text.contains("What to do: check that catering (Coffee) still fit the new time before Sun 5 May 2030 12:00 UTC."));
        assert!(digest.html.contains("\u{201c}Board &lt;2030&gt;\u{201d}"));
    }

    #[test]
    fn markup_in_values_is_escaped_in_html_and_kept_in_text() {
        let mut tricky = issue("cancelled_with_services");
        tricky.details["subject"] = json!("R&D <b>\"Q3\" review</b> it's");

        let digest = render(IssueAudience::User, &[tricky]);

        assert!(digest
            .html
            .contains("R&amp;D &lt;b&gt;\"Q3\" review&lt;/b&gt; it's"));
        assert!(digest.text.contains("R&D <b>\"Q3\" review</b> it's"));
    }

    #[test]
    fn the_administrator_report_names_each_organizer() {
        let digest = render(
            IssueAudience::Admin,
            &[issue("cancelled_with_services"), issue("unknown_organizer")],
        );

        assert_eq!(
            digest.subject,
            "Initial sync report: 2 meeting(s) need attention"
        );
        assert_eq!(
            digest
                .text
                .matches("(organizer: ann@contoso.example)")
                .count(),
            2
        );
    }
}
