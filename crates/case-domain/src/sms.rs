//! How many billed SMS segments a text takes (3GPP TS 23.038): a text written
//! entirely in the GSM 7-bit alphabet fits 160 characters in one segment (153 per
//! segment once split; characters of the extension table such as `[`, `]`, `{`,
//! `€` count twice); any other character (Chinese, `…`, curly quotes) makes the
//! whole text UCS-2: 70 UTF-16 units in one segment, 67 per segment once split.

/// GSM-7 characters in one segment.
pub const GSM7_SINGLE: usize = 160;
/// GSM-7 characters per segment of a split message.
pub const GSM7_PART: usize = 153;
/// UCS-2 units in one segment.
pub const UCS2_SINGLE: usize = 70;
/// UCS-2 units per segment of a split message.
pub const UCS2_PART: usize = 67;

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "^{}\\[~]|€\u{000C}";

/// The septets a character takes in GSM-7, or `None` if it is not in the alphabet.
fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// How a text is encoded and how long it is in that encoding's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// GSM 7-bit, this many septets.
    Gsm7(usize),
    /// UCS-2, this many 16-bit units.
    Ucs2(usize),
}

/// The encoding a text needs, and its length in it.
pub fn encode(text: &str) -> Encoded {
    text.chars()
        .map(gsm7_septets)
        .sum::<Option<usize>>()
        .map_or_else(|| Encoded::Ucs2(text.encode_utf16().count()), Encoded::Gsm7)
}

/// The billed segments of `text` (an empty text is one segment).
pub fn segments(text: &str) -> usize {
    let (len, single, part) = match encode(text) {
        Encoded::Gsm7(n) => (n, GSM7_SINGLE, GSM7_PART),
        Encoded::Ucs2(n) => (n, UCS2_SINGLE, UCS2_PART),
    };
    if len <= single { 1 } else { len.div_ceil(part) }
}

/// Whether `text` goes as a single segment.
pub fn fits_one(text: &str) -> bool {
    segments(text) == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_encoding() {
        let table: &[(String, Encoded, usize)] = &[
            ("".into(), Encoded::Gsm7(0), 1),
            ("a".repeat(160), Encoded::Gsm7(160), 1),
            ("a".repeat(161), Encoded::Gsm7(161), 2),
            ("a".repeat(306), Encoded::Gsm7(306), 2),
            ("a".repeat(307), Encoded::Gsm7(307), 3),
            // Extension characters count twice.
            ("[".repeat(80), Encoded::Gsm7(160), 1),
            ("[".repeat(81), Encoded::Gsm7(162), 2),
            ("复".repeat(70), Encoded::Ucs2(70), 1),
            ("复".repeat(71), Encoded::Ucs2(71), 2),
            ("复".repeat(134), Encoded::Ucs2(134), 2),
            ("复".repeat(135), Encoded::Ucs2(135), 3),
            // One non-GSM character turns the whole text into UCS-2.
            (format!("{}…", "a".repeat(69)), Encoded::Ucs2(70), 1),
            (format!("{}…", "a".repeat(70)), Encoded::Ucs2(71), 2),
            (
                "+86*******8001: (Beijing time).".into(),
                Encoded::Gsm7(31),
                1,
            ),
        ];
        for (text, encoded, n) in table {
            assert_eq!(encode(text), *encoded, "{text}");
            assert_eq!(segments(text), *n, "{text}");
        }
    }
}
