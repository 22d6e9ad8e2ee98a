//! Validated personal data. Each type is parsed once at the edge and is masked in
//! `Debug` and `Display`, so a stray `{:?}` in a log line never leaks the value.
//! The raw value is only reachable through an explicitly named method.

use std::fmt;

use chrono::NaiveDate;
use serde::Deserialize;

/// Why a piece of personal data was refused. The message is safe to show to the
/// person who typed it: it never echoes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    /// Not a mainland-China mobile number.
    #[error("msisdn must be a mainland China mobile number in E.164 form, e.g. +8613800138000")]
    Msisdn,
    /// Not 18 characters of the resident-ID shape.
    #[error("id_number must be an 18-character resident identity number")]
    ResidentIdShape,
    /// The first two digits are not a province-level region code.
    #[error("id_number has an unknown region code")]
    ResidentIdRegion,
    /// Characters 7–14 are not a real calendar date between 1900 and 2100.
    #[error("id_number does not contain a valid birth date")]
    ResidentIdBirthDate,
    /// The ISO 7064 MOD 11-2 check character does not match.
    #[error("id_number check digit is wrong")]
    ResidentIdChecksum,
    /// Empty, too long, or containing characters no name has.
    #[error("full_name must be 1 to 64 letters, spaces, '·', '-', '.' or apostrophes")]
    Name,
}

/// A mainland-China mobile number, stored in E.164 form (`+86` and 11 digits starting with 1).
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Msisdn(String);

impl Msisdn {
    /// Accepts `+8613800138000`, `8613800138000`, `008613800138000` or `13800138000`,
    /// with spaces or dashes between groups.
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let compact: String = input
            .trim()
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        let national = compact
            .strip_prefix("+86")
            .or_else(|| compact.strip_prefix("0086"))
            .or_else(|| {
                (compact.len() == 13)
                    .then(|| compact.strip_prefix("86"))
                    .flatten()
            })
            .unwrap_or(&compact);
        let bytes = national.as_bytes();
        let valid = bytes.len() == 11
            && bytes.iter().all(u8::is_ascii_digit)
            && bytes[0] == b'1'
            && (b'3'..=b'9').contains(&bytes[1]);
        if valid {
            Ok(Self(format!("+86{national}")))
        } else {
            Err(InvalidInput::Msisdn)
        }
    }

    /// The full E.164 number. Only for storage and for the carrier; never for logs.
    pub fn e164(&self) -> &str {
        &self.0
    }

    /// The form shown to people and written to logs: `+86*******8000`.
    pub fn masked(&self) -> String {
        format!("+86*******{}", &self.0[self.0.len() - 4..])
    }
}

impl TryFrom<String> for Msisdn {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

#[cfg(feature = "sqlx")]
crate::values::text_column!(Msisdn, |s: &str| Msisdn::parse(s), |v: &Msisdn| v.e164());

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Msisdn({})", self.masked())
    }
}

/// An 18-character PRC resident identity number (GB 11643-1999): six-digit region
/// code, birth date `YYYYMMDD`, three-digit sequence, ISO 7064 MOD 11-2 check character.
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ResidentId(String);

/// Province-level region codes (first two digits) in use in resident IDs.
const PROVINCE_CODES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91,
];

const CHECK_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: [u8; 11] = *b"10X98765432";

impl ResidentId {
    /// Validates shape, region, birth date and check character; a lower-case `x` is accepted.
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let id = input.trim().to_ascii_uppercase();
        let b = id.as_bytes();
        if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
            return Err(InvalidInput::ResidentIdShape);
        }
        if !(b[17].is_ascii_digit() || b[17] == b'X') {
            return Err(InvalidInput::ResidentIdShape);
        }
        let province = (b[0] - b'0') * 10 + (b[1] - b'0');
        if !PROVINCE_CODES.contains(&province) {
            return Err(InvalidInput::ResidentIdRegion);
        }
        let birth = birth_date_of(&id[6..14]).ok_or(InvalidInput::ResidentIdBirthDate)?;
        let _ = birth;
        if check_char(&b[..17]) != b[17] {
            return Err(InvalidInput::ResidentIdChecksum);
        }
        Ok(Self(id))
    }

    /// Completes 17 digits with their check character (for fixtures and demo data).
    /// `None` when the result is not a valid ID (bad region or date).
    pub fn with_check_digit(first17: &str) -> Option<String> {
        let b = first17.as_bytes();
        if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let id = format!("{first17}{}", check_char(b) as char);
        Self::parse(&id).ok().map(|_| id)
    }

    /// The full number. Only for the carrier lookup and keyed hashing; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The birth date encoded in the number.
    pub fn birth_date(&self) -> NaiveDate {
        birth_date_of(&self.0[6..14]).unwrap_or_default()
    }

    /// The last four characters, the most that is ever shown.
    pub fn last_four(&self) -> &str {
        &self.0[14..]
    }

    /// The form shown to people and written to logs: 14 stars and the last four.
    pub fn masked(&self) -> String {
        format!("**************{}", self.last_four())
    }
}

fn birth_date_of(digits: &str) -> Option<NaiveDate> {
    let year: i32 = digits.get(0..4)?.parse().ok()?;
    let month: u32 = digits.get(4..6)?.parse().ok()?;
    let day: u32 = digits.get(6..8)?.parse().ok()?;
    if !(1900..=2100).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, month, day)
}

/// ISO 7064 MOD 11-2 check character over the first 17 digits.
fn check_char(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(CHECK_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK_CHARS[(sum % 11) as usize]
}

impl TryFrom<String> for ResidentId {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResidentId({})", self.masked())
    }
}

/// A person's full name as written on the ID card (Han characters, or Latin letters
/// for foreign and minority names, with `·` between name parts).
#[derive(Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct PersonName(String);

impl PersonName {
    /// Trims, folds runs of spaces, and accepts 1–64 letters with `·`, `-`, `.`, `'` and spaces.
    pub fn parse(input: &str) -> Result<Self, InvalidInput> {
        let folded = input.split_whitespace().collect::<Vec<_>>().join(" ");
        let count = folded.chars().count();
        let allowed =
            |c: char| c.is_alphabetic() || matches!(c, ' ' | '·' | '•' | '-' | '.' | '\'');
        if count == 0 || count > 64 || !folded.chars().all(allowed) {
            return Err(InvalidInput::Name);
        }
        if !folded.chars().any(char::is_alphabetic) {
            return Err(InvalidInput::Name);
        }
        Ok(Self(folded.replace('•', "·")))
    }

    /// The name as typed (normalised). Only for the carrier lookup; never for logs.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The form shown to people and written to logs: first character, then stars.
    pub fn masked(&self) -> String {
        let mut chars = self.0.chars();
        let first = chars.next().unwrap_or('*');
        let rest = chars.count().max(1);
        format!("{first}{}", "*".repeat(rest))
    }
}

impl TryFrom<String> for PersonName {
    type Error = InvalidInput;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonName({})", self.masked())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Builds an ID from 17 digits by computing its check character (valid or not otherwise).
    fn with_check(first17: &str) -> String {
        let c = check_char(first17.as_bytes()) as char;
        format!("{first17}{c}")
    }

    #[test]
    fn with_check_digit_completes_only_valid_ids() {
        assert_eq!(
            ResidentId::with_check_digit("11010519491231002").as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(ResidentId::with_check_digit("99010519491231002"), None);
        assert_eq!(ResidentId::with_check_digit("1101051949123100"), None);
    }

    #[test]
    fn msisdn_accepts_the_usual_spellings_and_normalises_to_e164() {
        for input in [
            "+8613800138000",
            "8613800138000",
            "008613800138000",
            "13800138000",
            " +86 138-0013-8000 ",
        ] {
            assert_eq!(
                Msisdn::parse(input).map(|m| m.e164().to_owned()),
                Ok("+8613800138000".into()),
                "{input}"
            );
        }
    }

    #[test]
    fn msisdn_refuses_what_is_not_a_mainland_mobile() {
        for input in [
            "",
            "+8612800138000",  // second digit 2
            "+86138001380001", // 12 digits
            "+861380013800",   // 10 digits
            "+8523800138000",  // Hong Kong
            "+8623800138000",  // starts with 2
            "+86138a0138000",
            "+1 415 555 0100",
            "１３８００１３８０００", // full-width digits
        ] {
            assert_eq!(Msisdn::parse(input), Err(InvalidInput::Msisdn), "{input}");
        }
    }

    #[test]
    fn msisdn_is_masked_when_printed() {
        let m = Msisdn::parse("+8613800138000").unwrap();
        assert_eq!(m.to_string(), "+86*******8000");
        assert_eq!(format!("{m:?}"), "Msisdn(+86*******8000)");
        assert!(!format!("{m:?}{m}").contains("13800138000"));
    }

    #[test]
    fn resident_id_accepts_the_standard_example_and_a_lower_case_x() {
        // The worked example of GB 11643-1999.
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.expose(), "11010519491231002X");
        assert_eq!(
            id.birth_date(),
            NaiveDate::from_ymd_opt(1949, 12, 31).unwrap()
        );
        assert_eq!(
            ResidentId::parse("11010519491231002x").unwrap().expose(),
            "11010519491231002X"
        );
        assert_eq!(
            ResidentId::parse(&with_check("44030419900307123"))
                .unwrap()
                .last_four(),
            &with_check("44030419900307123")[14..]
        );
    }

    #[test]
    fn resident_id_refusals_name_the_part_that_is_wrong() {
        let cases = [
            ("1101051949123100", InvalidInput::ResidentIdShape),
            ("11010519491231002Y", InvalidInput::ResidentIdShape),
            ("1101051949123100X2", InvalidInput::ResidentIdShape),
            (
                &with_check("99010519491231002"),
                InvalidInput::ResidentIdRegion,
            ),
            (
                &with_check("00010519491231002"),
                InvalidInput::ResidentIdRegion,
            ),
            (
                &with_check("11010519490230002"),
                InvalidInput::ResidentIdBirthDate,
            ),
            (
                &with_check("11010518991231002"),
                InvalidInput::ResidentIdBirthDate,
            ),
            (
                &with_check("11010519491331002"),
                InvalidInput::ResidentIdBirthDate,
            ),
            ("110105194912310021", InvalidInput::ResidentIdChecksum),
        ];
        for (input, expected) in cases {
            assert_eq!(ResidentId::parse(input), Err(expected.clone()), "{input}");
        }
    }

    #[test]
    fn resident_id_is_masked_when_printed() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        assert_eq!(id.to_string(), "**************002X");
        assert!(!format!("{id:?}").contains("110105"));
    }

    #[test]
    fn names_are_normalised_and_masked() {
        assert_eq!(PersonName::parse("  张   三 ").unwrap().expose(), "张 三");
        assert_eq!(
            PersonName::parse("买买提•艾力").unwrap().expose(),
            "买买提·艾力"
        );
        assert_eq!(
            PersonName::parse("O'Neil Smith-Jones").unwrap().masked(),
            "O*****************"
        );
        assert_eq!(PersonName::parse("张三").unwrap().to_string(), "张*");
        assert_eq!(
            format!("{:?}", PersonName::parse("李").unwrap()),
            "PersonName(李*)"
        );
        for bad in [
            "",
            "   ",
            "张三1",
            "<script>",
            "a\u{0}b",
            "···",
            &"名".repeat(65),
        ] {
            assert_eq!(PersonName::parse(bad), Err(InvalidInput::Name), "{bad:?}");
        }
    }

    #[test]
    fn serde_refuses_invalid_values_at_the_edge() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Body {
            msisdn: Msisdn,
            id_number: ResidentId,
            full_name: PersonName,
        }
        let ok: Result<Body, _> = serde_json::from_str(
            r#"{"msisdn":"+8613800138000","id_number":"11010519491231002X","full_name":"张三"}"#,
        );
        assert!(ok.is_ok());
        let bad: Result<Body, _> = serde_json::from_str(
            r#"{"msisdn":"+8613800138000","id_number":"110105194912310021","full_name":"张三"}"#,
        );
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("check digit"), "{message}");
        assert!(!message.contains("110105194912310021"), "{message}");
    }

    proptest! {
        #[test]
        fn any_valid_id_survives_parse_and_any_changed_digit_is_caught(
            province in proptest::sample::select(PROVINCE_CODES),
            rest in 0u32..10_000,
            year in 1900i32..2100, month in 1u32..=12, day in 1u32..=28,
            seq in 0u32..1000, pos in 0usize..17, delta in 1u8..10,
        ) {
            let first17 = format!("{province:02}{rest:04}{year:04}{month:02}{day:02}{seq:03}");
            let id = with_check(&first17);
            prop_assert!(ResidentId::parse(&id).is_ok());
            // Changing one digit always breaks the checksum (MOD 11-2 detects all single errors)
            // unless it first breaks the region or the date.
            let mut bytes = id.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(ResidentId::parse(&changed).is_err());
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = Msisdn::parse(&s);
            let _ = ResidentId::parse(&s);
            let _ = PersonName::parse(&s);
        }

        #[test]
        fn any_mainland_mobile_round_trips(second in 3u8..=9, rest in 0u64..1_000_000_000) {
            let national = format!("1{second}{rest:09}");
            let m = Msisdn::parse(&national).unwrap();
            prop_assert_eq!(m.e164(), format!("+86{national}"));
            prop_assert_eq!(Msisdn::parse(m.e164()).unwrap(), m);
        }
    }
}
