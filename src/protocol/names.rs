//! User and room names: parsed once at the edge into types the hub trusts.

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

/// A room name that passed the rules: 1..=64 Unicode characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Checks the name rules.
    pub fn parse(name: &str) -> Result<RoomName, NameError> {
        let count = name.chars().count();
        if count == 0 || count > MAX_ROOM_NAME || name.chars().any(char::is_control) {
            return Err(NameError::Room);
        }
        Ok(RoomName(name.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(UserName::parse("Tibi_1.-").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(33)] {
            assert_eq!(UserName::parse(bad), Err(NameError::User), "{bad:?}");
        }
        assert_eq!(UserName::parse("TiBi").unwrap().folded(), "tibi");
        assert!(RoomName::parse("café ☕").is_ok());
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        for bad in ["", "a\nb", "\u{7f}", &"é".repeat(65)] {
            assert_eq!(RoomName::parse(bad), Err(NameError::Room), "{bad:?}");
        }
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
