//! User and room names: parsed once at the edge into types the hub trusts.
//!
//! Room names are free text, so they are where look-alikes hide: the same letters in composed
//! and decomposed form, an invisible zero-width space, a right-to-left override, or a Cyrillic
//! "о" in "lobby". A room name is normalized to NFC (so spellings that are one text to Unicode
//! are one room), and refused when it holds invisible or direction-changing characters, starts
//! or ends with whitespace, or mixes scripts (UTS #39 single-script rule).

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::MixedScript;

/// Longest user name, in characters (all ASCII).
pub const MAX_USER_NAME: usize = 32;
/// Longest room name, in Unicode characters.
pub const MAX_ROOM_NAME: usize = 64;
/// The room every user joins on login; it always exists.
pub const LOBBY: &str = "lobby";

/// A name that breaks its rules; the message is the text of a 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, too long, or a character outside the user name alphabet.
    #[error("Invalid user name: use 1 to {MAX_USER_NAME} of A-Z a-z 0-9 _ - .")]
    User,
    /// Empty, too long, or a control character.
    #[error("Invalid room name: use 1 to {MAX_ROOM_NAME} characters, no control characters")]
    Room,
    /// A character that is invisible or changes the text direction (Unicode format, line or
    /// paragraph separator, private use): the name would look like another.
    #[error("Invalid room name: no invisible or direction-changing characters (such as zero-width spaces or bidi controls)")]
    RoomInvisible,
    /// Leading or trailing whitespace, which nobody sees in a room list.
    #[error("Invalid room name: no whitespace at the start or end")]
    RoomEdgeSpace,
    /// Letters of several scripts, such as Latin with a Cyrillic look-alike.
    #[error("Invalid room name: letters of one script only (a Latin name with a Cyrillic or Greek look-alike letter is refused)")]
    RoomMixedScripts,
}

/// A user name that passed the rules: 1..=32 of `A-Z a-z 0-9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Checks the name rules.
    pub fn parse(name: &str) -> Result<UserName, NameError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || name.len() > MAX_USER_NAME || !name.chars().all(allowed) {
            return Err(NameError::User);
        }
        Ok(UserName(name.to_owned()))
    }

    /// The name as the user gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes "Tibi" and "tibi" the same user.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A room name that passed the rules: 1..=64 Unicode characters in NFC, no control or
/// invisible characters, no edge whitespace, one script.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Checks the name rules; the name is kept (and compared) in NFC.
    pub fn parse(name: &str) -> Result<RoomName, NameError> {
        // Every room message names its room, so the common case is fast: printable ASCII is
        // already NFC, has no control or invisible characters, and is one script (Latin and
        // Common), so only the length and the edges are left to check.
        if !name.is_empty()
            && name.len() <= MAX_ROOM_NAME
            && name.bytes().all(|b| (0x20..0x7f).contains(&b))
        {
            if name.starts_with(' ') || name.ends_with(' ') {
                return Err(NameError::RoomEdgeSpace);
            }
            return Ok(RoomName(name.to_owned()));
        }
        Self::parse_unicode(name)
    }

    /// The whole rule, for names beyond printable ASCII.
    fn parse_unicode(name: &str) -> Result<RoomName, NameError> {
        // Cheap length check first: a 60 KB name is refused without normalizing it.
        if name.is_empty() || name.chars().nth(4 * MAX_ROOM_NAME).is_some() {
            return Err(NameError::Room);
        }
        let name: String = if unicode_normalization::is_nfc(name) {
            name.to_owned()
        } else {
            name.nfc().collect()
        };
        if name.chars().count() > MAX_ROOM_NAME || name.chars().any(char::is_control) {
            return Err(NameError::Room);
        }
        if name.chars().any(is_invisible) {
            return Err(NameError::RoomInvisible);
        }
        if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
            return Err(NameError::RoomEdgeSpace);
        }
        if !name.as_str().is_single_script() {
            return Err(NameError::RoomMixedScripts);
        }
        Ok(RoomName(name))
    }

    /// The lobby's name.
    pub fn lobby() -> RoomName {
        RoomName(LOBBY.to_owned())
    }

    /// The name, compared exactly.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest tracked-part or shared-object name, in characters (all ASCII).
pub const MAX_LABEL: usize = 32;

/// The name of a tracked part (`left_hand`) or a shared object (`ball`): 1..=32 of
/// `A-Z a-z 0-9 _ - .`, the user-name alphabet, compared exactly. Held inline, so parsing a
/// 90 Hz transform with hands allocates nothing for the names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label {
    len: u8,
    bytes: [u8; MAX_LABEL],
}

impl Label {
    /// The name, if it follows the rule.
    pub fn parse(name: &str) -> Option<Label> {
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
        if name.is_empty() || name.len() > MAX_LABEL || !name.as_bytes().iter().all(allowed) {
            return None;
        }
        let mut bytes = [0; MAX_LABEL];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Some(Label {
            len: name.len() as u8, // at most MAX_LABEL, checked above
            bytes,
        })
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        // Only ASCII was copied in (checked in `parse`), so this never falls back.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl Ord for Label {
    /// Plain string order, as names are sorted everywhere else.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Debug for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Characters that draw nothing or reorder what is drawn.
fn is_invisible(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::PrivateUse
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The printable-ASCII shortcut decides as the whole rule does.
        #[test]
        fn ascii_names_take_the_shortcut_to_the_same_answer(name in "[ -~]{0,70}") {
            prop_assert_eq!(RoomName::parse(&name), RoomName::parse_unicode(&name));
        }
    }

    #[test]
    fn names() {
        assert!(UserName::parse("Tibi_1.-").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(33)] {
            assert_eq!(UserName::parse(bad), Err(NameError::User), "{bad:?}");
        }
        assert_eq!(UserName::parse("TiBi").unwrap().folded(), "tibi");
        assert!(RoomName::parse("café ☕").is_ok());
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        for bad in ["", "a\nb", "\u{7f}", &"é".repeat(65), &"x".repeat(60_000)] {
            assert_eq!(RoomName::parse(bad), Err(NameError::Room), "{bad:?}");
        }
    }

    #[test]
    fn look_alike_room_names_are_one_room_or_refused() {
        let composed = RoomName::parse("caf\u{e9}").unwrap();
        let decomposed = RoomName::parse("cafe\u{301}").unwrap();
        assert_eq!(composed, decomposed, "NFC: one room");
        assert_eq!(decomposed.as_str(), "caf\u{e9}");
        let cases = [
            ("lob\u{200b}by", NameError::RoomInvisible),
            ("\u{202e}ybbol", NameError::RoomInvisible),
            ("lobby\u{2028}", NameError::RoomInvisible),
            ("l\u{43e}bby", NameError::RoomMixedScripts),
            (" lobby", NameError::RoomEdgeSpace),
            ("lobby\u{3000}", NameError::RoomEdgeSpace),
        ];
        for (name, error) in cases {
            assert_eq!(RoomName::parse(name), Err(error), "{name:?}");
        }
        for fine in ["лобби", "ロビー 2", "東京タワー", "VR room #1", "café ☕"] {
            assert!(RoomName::parse(fine).is_ok(), "{fine:?}");
        }
    }

    #[test]
    fn labels_are_short_identifiers_in_string_order() {
        let hand = Label::parse("left_hand").unwrap();
        assert_eq!(hand.as_str(), "left_hand");
        assert_eq!(Label::parse(&"x".repeat(32)).unwrap().as_str().len(), 32);
        for bad in ["", "a b", "é", "left/hand", &"x".repeat(33)] {
            assert_eq!(Label::parse(bad), None, "{bad:?}");
        }
        let mut names: Vec<Label> = ["b", "B", "a2", "a"]
            .iter()
            .filter_map(|n| Label::parse(n))
            .collect();
        names.sort();
        let sorted: Vec<&str> = names.iter().map(Label::as_str).collect();
        assert_eq!(sorted, ["B", "a", "a2", "b"]);
        assert_eq!(serde_json::to_string(&hand).unwrap(), "\"left_hand\"");
    }

    #[test]
    fn refusals_read_as_documented() {
        assert_eq!(
            NameError::User.to_string(),
            "Invalid user name: use 1 to 32 of A-Z a-z 0-9 _ - ."
        );
        assert_eq!(
            NameError::Room.to_string(),
            "Invalid room name: use 1 to 64 characters, no control characters"
        );
    }
}
