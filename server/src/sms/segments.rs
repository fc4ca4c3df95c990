//! How many SMS segments a text costs: GSM 03.38 (3GPP TS 23.038) 7-bit when every character is
//! in the default alphabet or its extension table, UCS-2 otherwise.
//!
//! Counted the way the network splits a long message: one segment holds 160 septets (GSM) or 70
//! UTF-16 code units (UCS-2); a concatenated message gives up a few to its header and holds 153
//! or 67 per segment, and a segment boundary never splits an escape sequence (an extension
//! character) or a surrogate pair (an emoji), which can cost one segment more than a plain
//! division. Gateways bill per segment, so this is the unit of cost.

use serde::Serialize;
use utoipa::ToSchema;

/// The GSM 03.38 default alphabet: one septet each. Only `Ç` (upper case) is in it: `ç`, `ê`,
/// `â`, `î`, `ô`, `û`, `ë`, `ï` and `œ` are not, so French text using them goes out as UCS-2.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                         ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table: an escape septet and the character's own, two septets each.
const GSM_EXTENSION: &str = "\u{0c}^{}\\[~]|€";

/// Septets in a single-segment GSM message.
const GSM_SINGLE: usize = 160;
/// Septets per segment of a concatenated GSM message (7 septets go to the UDH).
const GSM_MULTI: usize = 153;
/// UTF-16 code units in a single-segment UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// UTF-16 code units per segment of a concatenated UCS-2 message.
const UCS2_MULTI: usize = 67;

/// How a text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmsEncoding {
    /// The GSM 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UCS-2 (UTF-16): any other character, Arabic, emoji…
    Ucs2,
}

/// What a text costs to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct SmsSegments {
    /// The encoding the whole text needs.
    pub encoding: SmsEncoding,
    /// Septets (GSM 7-bit) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Segments billed; an empty text is still one message.
    pub segments: usize,
}

/// Septets a character takes in GSM 03.38, or `None` when it is not in the alphabet.
fn gsm_septets(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) && c != '\u{1b}' {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Counts the encoding, units and segments of `text`.
pub fn segments(text: &str) -> SmsSegments {
    let gsm: Option<Vec<usize>> = text.chars().map(gsm_septets).collect();
    let (encoding, sizes, single, multi) = match gsm {
        Some(sizes) => (SmsEncoding::Gsm7, sizes, GSM_SINGLE, GSM_MULTI),
        None => (
            SmsEncoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            UCS2_SINGLE,
            UCS2_MULTI,
        ),
    };
    let units = sizes.iter().sum();
    SmsSegments {
        encoding,
        units,
        segments: if units <= single {
            1
        } else {
            packed(&sizes, multi)
        },
    }
}

/// Segments needed when characters (each `sizes[i]` units, never split) fill segments of
/// `capacity` units in order.
fn packed(sizes: &[usize], capacity: usize) -> usize {
    let mut segments = 1;
    let mut used = 0;
    for &size in sizes {
        if used + size > capacity {
            segments += 1;
            used = 0;
        }
        used += size;
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, encoding: SmsEncoding, units: usize, segments_: usize) {
        assert_eq!(
            segments(text),
            SmsSegments {
                encoding,
                units,
                segments: segments_
            },
            "{text:?}"
        );
    }

    #[test]
    fn plain_english_is_gsm_and_splits_at_160_then_153() {
        check("", SmsEncoding::Gsm7, 0, 1);
        check("Stay indoors.", SmsEncoding::Gsm7, 13, 1);
        check(&"a".repeat(160), SmsEncoding::Gsm7, 160, 1);
        check(&"a".repeat(161), SmsEncoding::Gsm7, 161, 2);
        check(&"a".repeat(306), SmsEncoding::Gsm7, 306, 2);
        check(&"a".repeat(307), SmsEncoding::Gsm7, 307, 3);
    }

    #[test]
    fn extension_characters_take_two_septets_and_never_straddle_segments() {
        check("[€]", SmsEncoding::Gsm7, 6, 1);
        check(&"€".repeat(80), SmsEncoding::Gsm7, 160, 1);
        check(&"€".repeat(81), SmsEncoding::Gsm7, 162, 2);
        // 306 septets would fit two segments of 153, but the euro sign cannot be split after
        // septet 152, so it starts the second segment and the last "a" spills into a third.
        let straddling = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        check(&straddling, SmsEncoding::Gsm7, 306, 3);
    }

    #[test]
    fn french_accents_in_the_gsm_table_stay_gsm_and_the_others_force_ucs2() {
        // é è à ù É Ç are in the default alphabet.
        check(
            "Évacuation à 18h: région nord, sûreté",
            SmsEncoding::Ucs2,
            37,
            1,
        );
        check("Évacuation à 18h: région nord", SmsEncoding::Gsm7, 29, 1);
        check("Ça va? Où êtes-vous", SmsEncoding::Ucs2, 19, 1);
        check("Ça va? Où es-tu", SmsEncoding::Gsm7, 15, 1);
        // Lower-case ç is not (only the capital is), nor is ê.
        check("reçu", SmsEncoding::Ucs2, 4, 1);
        check("fête", SmsEncoding::Ucs2, 4, 1);
        // One such character in a long message halves what a segment holds.
        let long = format!("{}ç", "a".repeat(100));
        check(&long, SmsEncoding::Ucs2, 101, 2);
    }

    #[test]
    fn arabic_is_ucs2_at_70_then_67() {
        let arabic = "ابقوا في الداخل";
        check(arabic, SmsEncoding::Ucs2, 15, 1);
        check(&"ب".repeat(70), SmsEncoding::Ucs2, 70, 1);
        check(&"ب".repeat(71), SmsEncoding::Ucs2, 71, 2);
        check(&"ب".repeat(134), SmsEncoding::Ucs2, 134, 2);
        check(&"ب".repeat(135), SmsEncoding::Ucs2, 135, 3);
    }

    #[test]
    fn emoji_are_two_utf16_units_and_never_split() {
        check("🆘", SmsEncoding::Ucs2, 2, 1);
        check("Safe 👍", SmsEncoding::Ucs2, 7, 1);
        check(&"🙂".repeat(35), SmsEncoding::Ucs2, 70, 1);
        check(&"🙂".repeat(36), SmsEncoding::Ucs2, 72, 2);
        // 134 units fit two segments of 67 only if the emoji were cut in half.
        let straddling = format!("{}🙂{}", "ب".repeat(66), "ب".repeat(66));
        check(&straddling, SmsEncoding::Ucs2, 134, 3);
    }

    #[test]
    fn the_escape_character_itself_is_not_text() {
        check("\u{1b}", SmsEncoding::Ucs2, 1, 1);
        check("`", SmsEncoding::Ucs2, 1, 1);
    }
}
