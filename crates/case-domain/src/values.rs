//! Small stored values of a case: its id, where it was opened, its language, how much
//! service an order restores, and the lower-case hex form of bytes. Each has one wire
//! string, parsed once; behind the `sqlx` feature they are read from and written to
//! text columns, and a stored value that does not parse is a decode error.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A value that is not one of a closed list of wire strings. The value itself is not
/// personal data (a channel, a locale, a restoration), so it is echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be one of {allowed}, not {value:?}")]
pub struct UnknownValue {
    /// What was parsed (`channel`, `locale`, `restoration`).
    pub what: &'static str,
    /// The allowed wire strings, comma-separated.
    pub allowed: &'static str,
    /// What was given.
    pub value: String,
}

/// Declares a closed enum with one wire string per variant: `as_str`, `parse`,
/// `ALL`, `Display`, `FromStr` and serde under the same strings.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $wire ),+
                }
            }

            /// Parses the wire string exactly (case-sensitive).
            pub fn parse(value: &str) -> Result<Self, UnknownValue> {
                match value {
                    $( $wire => Ok(Self::$variant), )+
                    _ => Err(UnknownValue {
                        what: $what,
                        allowed: concat!($($wire, " "),+).trim_ascii_end(),
                        value: value.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for &'static str {
            fn from(value: $name) -> Self {
                value.as_str()
            }
        }

        #[cfg(feature = "sqlx")]
        crate::values::text_column!($name, |s: &str| $name::parse(s), |v: &$name| v.as_str());
    };
}

/// Maps a type to a Postgres `text` column: encoded as its string, decoded by parsing
/// (a stored value that does not parse is an error, never a fallback).
#[cfg(feature = "sqlx")]
macro_rules! text_column {
    ($ty:ty, $parse:expr, $show:expr) => {
        impl sqlx::Type<sqlx::Postgres> for $ty {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                let show: fn(&$ty) -> &str = $show;
                <&str as sqlx::Encode<'q, sqlx::Postgres>>::encode(show(self), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $ty {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let raw = <&str as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
                let parse = $parse;
                Ok(parse(raw)?)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $ty {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
    };
}
#[cfg(feature = "sqlx")]
pub(crate) use text_column;

wire_enum! {
    /// Where a request to reactivate a number comes from.
    Channel, "channel" {
        /// The web site.
        Web => "web",
        /// The carrier's app.
        App => "app",
        /// The customer hotline.
        Hotline => "hotline",
        /// A store counter.
        Store => "store",
    }
}

wire_enum! {
    /// The language a case is handled in.
    Locale, "locale" {
        /// Simplified Chinese.
        ZhCn => "zh-CN",
        /// English.
        En => "en",
    }
}

impl Locale {
    /// Whether the case is handled in Chinese.
    pub fn is_zh(self) -> bool {
        self == Self::ZhCn
    }
}

wire_enum! {
    /// How much service a resume order restores.
    Restoration, "restoration" {
        /// Everything.
        Full => "full",
        /// Incoming calls and SMS only (半恢复); outgoing stays barred.
        InboundOnly => "inbound_only",
    }
}

/// The id of a reactivation case (a UUIDv7 chosen when it is opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[cfg_attr(feature = "sqlx", sqlx(transparent))]
pub struct CaseId(pub Uuid);

impl CaseId {
    /// A new, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(self) -> Uuid {
        self.0
    }
}

impl Default for CaseId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for CaseId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl From<CaseId> for Uuid {
    fn from(id: CaseId) -> Self {
        id.0
    }
}

impl fmt::Display for CaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for CaseId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The lower-case hexadecimal form of `bytes` (two characters a byte).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_and_unknown_ones_are_refused() {
        for c in Channel::ALL {
            assert_eq!(Channel::parse(c.as_str()), Ok(*c));
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
            assert_eq!(serde_json::from_str::<Channel>(&json).unwrap(), *c);
        }
        assert_eq!(
            Channel::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            ["web", "app", "hotline", "store"]
        );
        let err = Channel::parse("fax").unwrap_err();
        assert_eq!(err.what, "channel");
        assert_eq!(
            err.to_string(),
            "channel must be one of web app hotline store, not \"fax\""
        );
        assert!(Channel::parse("Web").is_err());
        assert!(serde_json::from_str::<Channel>("\"social\"").is_err());
    }

    #[test]
    fn locales_round_trip_and_unknown_ones_are_refused() {
        for l in Locale::ALL {
            assert_eq!(l.as_str().parse::<Locale>(), Ok(*l));
            let json = serde_json::to_value(l).unwrap();
            assert_eq!(serde_json::from_value::<Locale>(json).unwrap(), *l);
        }
        assert_eq!(Locale::parse("zh-CN"), Ok(Locale::ZhCn));
        assert_eq!(Locale::parse("en"), Ok(Locale::En));
        assert!(Locale::ZhCn.is_zh() && !Locale::En.is_zh());
        assert!(Locale::parse("zh-cn").is_err());
        assert!(Locale::parse("fr").is_err());
    }

    #[test]
    fn restorations_use_the_carrier_wire_names() {
        assert_eq!(Restoration::Full.as_str(), "full");
        assert_eq!(Restoration::InboundOnly.as_str(), "inbound_only");
        assert_eq!(
            serde_json::to_value(Restoration::InboundOnly).unwrap(),
            serde_json::json!("inbound_only")
        );
        assert_eq!(
            serde_json::from_value::<Restoration>(serde_json::json!("full")).unwrap(),
            Restoration::Full
        );
        assert!(Restoration::parse("partial").is_err());
    }

    #[test]
    fn a_case_id_is_a_uuid_on_the_wire() {
        let id = CaseId::new();
        assert_eq!(id.to_string(), id.0.to_string());
        assert_eq!(id.to_string().parse::<CaseId>().unwrap(), id);
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::json!(id.0.to_string())
        );
        assert_eq!(
            serde_json::from_value::<CaseId>(serde_json::json!(id.0.to_string())).unwrap(),
            id
        );
        assert!("not-a-uuid".parse::<CaseId>().is_err());
        assert_eq!(Uuid::from(id), id.0);
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[]), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
