//! The text spellings of the store's enums in SQL, and their decoding from rows.

use std::error::Error as StdError;

use tokio_postgres::types::{FromSql, Type};

use super::{InitialSync, MeetingSource, MeetingStatus};

/// Declares the SQL spelling of each variant of an enum and decodes it from `text`.
macro_rules! sql_text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The value as the database spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// Parses the database spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl<'a> FromSql<'a> for $name {
            fn from_sql(
                ty: &Type,
                raw: &'a [u8],
            ) -> Result<Self, Box<dyn StdError + Sync + Send>> {
                let text = <&str as FromSql>::from_sql(ty, raw)?;
                Self::parse(text).ok_or_else(|| {
                    format!(concat!("unknown ", stringify!($name), " {:?}"), text).into()
                })
            }

            fn accepts(ty: &Type) -> bool {
                <&str as FromSql>::accepts(ty)
            }
        }
    };
}

sql_text_enum!(InitialSync {
    Pending => "pending",
    Running => "running",
    Complete => "complete",
    Failed => "failed",
});

sql_text_enum!(MeetingStatus {
    Confirmed => "confirmed",
    Cancelled => "cancelled",
});

sql_text_enum!(MeetingSource {
    Exchange => "exchange",
    Booking => "booking",
});
