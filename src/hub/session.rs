//! The sessions table: who is logged in, under which name, in which rooms, and which
//! connection carries them now.

use std::collections::HashMap;
use std::net::IpAddr;

use super::ids::{ConnId, RoomId, SessionId, Table};
use super::refusal::Refusal;
use crate::protocol::UserName;

/// A logged-in user.
#[derive(Debug)]
pub(crate) struct Session {
    pub user: UserName,
    /// Rooms joined, in join order (at most `max_rooms_per_user`).
    pub rooms: Vec<RoomId>,
    /// The connection the user speaks through.
    pub conn: ConnId,
    /// The address the user logged in from, for per-address limits.
    pub ip: IpAddr,
    /// Rooms the user created and is still in.
    pub held: usize,
}

impl Session {
    pub fn is_in(&self, room: RoomId) -> bool {
        self.rooms.contains(&room)
    }
}

/// Every session, and the name index that makes names unique ignoring ASCII case.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    table: Table<SessionId, Session>,
    /// Sessions by ASCII-lowercased name: "Tibi" blocks "tibi".
    names: HashMap<String, SessionId>,
}

impl Sessions {
    /// Starts a session for `user` on `conn`, unless the name is taken.
    pub fn login(
        &mut self,
        user: UserName,
        conn: ConnId,
        ip: IpAddr,
    ) -> Result<SessionId, Refusal> {
        let folded = user.folded();
        if self.names.contains_key(&folded) {
            return Err(Refusal::NameTaken {
                user: user.as_str().to_owned(),
            });
        }
        let id = self.table.insert(Session {
            user,
            rooms: Vec::new(),
            conn,
            ip,
            held: 0,
        });
        self.names.insert(folded, id);
        Ok(id)
    }

    /// Ends a session and frees its name.
    pub fn end(&mut self, id: SessionId) -> Option<Session> {
        let session = self.table.remove(id)?;
        self.names.remove(&session.user.folded());
        Some(session)
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.table.get(id)
    }

    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.table.get_mut(id)
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Every session with its id.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (SessionId, &Session)> {
        self.table.iter()
    }

    /// Ends every session.
    pub fn clear(&mut self) {
        *self = Sessions::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn name(user: &str) -> UserName {
        UserName::parse(user).unwrap()
    }

    #[test]
    fn names_are_unique_ignoring_ascii_case_until_the_session_ends() {
        let mut sessions = Sessions::default();
        let tibi = sessions
            .login(name("Tibi"), ConnId::new(0, 0), LOCAL)
            .unwrap();
        assert_eq!(
            sessions.login(name("tibi"), ConnId::new(1, 1), LOCAL),
            Err(Refusal::NameTaken {
                user: "tibi".into()
            })
        );
        assert_eq!(sessions.end(tibi).map(|s| s.user), Some(name("Tibi")));
        assert!(sessions.get(tibi).is_none());
        let again = sessions
            .login(name("tibi"), ConnId::new(1, 1), LOCAL)
            .unwrap();
        assert_ne!(again, tibi, "a new session is a new id");
        assert_eq!(sessions.len(), 1);
    }
}
