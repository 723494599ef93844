//! The sessions table: who is logged in, under which name, in which rooms, which connection
//! carries them now, and how a lost connection is resumed (resume tokens, detached sessions).
//!
//! A session outlives its connection: when a connection ends without a logout, its session is
//! **detached** for the resume grace, holding its name, rooms and game seat, until a `resume`
//! with its token binds it to a new connection or the grace runs out. Tokens are single-use:
//! every login and resume hands out a new one and the old one stops working.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ids::{ConnId, RoomId, SessionId, Table};
use super::refusal::Refusal;
use crate::protocol::UserName;

/// A logged-in user.
#[derive(Debug)]
pub(crate) struct Session {
    pub user: UserName,
    /// Rooms joined, in join order (at most `max_rooms_per_user`).
    pub rooms: Vec<RoomId>,
    /// The connection the user speaks through; `None` while detached.
    pub conn: Option<ConnId>,
    /// The address the user logged in from, for per-address limits.
    pub ip: IpAddr,
    /// Rooms the user created and is still in.
    pub held: usize,
    /// The token that resumes this session (single-use).
    token: String,
    /// When the connection was lost, while detached.
    detached_since: Option<Instant>,
}

impl Session {
    pub fn is_in(&self, room: RoomId) -> bool {
        self.rooms.contains(&room)
    }

    /// The token of the last login or resume.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// Every session, the name and token indexes, and the detached ones in order of detaching.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    table: Table<SessionId, Session>,
    /// Sessions by ASCII-lowercased name: "Tibi" blocks "tibi".
    names: HashMap<String, SessionId>,
    tokens: HashMap<String, SessionId>,
    /// Detached sessions, oldest first; an entry whose session was resumed (or detached again
    /// later) is skipped when it comes up.
    detached: VecDeque<(Instant, SessionId)>,
    detached_count: usize,
}

impl Sessions {
    /// Starts a session for `user` on `conn`, unless the name is taken.
    pub fn login(
        &mut self,
        user: UserName,
        conn: ConnId,
        ip: IpAddr,
        token: String,
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
            conn: Some(conn),
            ip,
            held: 0,
            token: token.clone(),
            detached_since: None,
        });
        self.names.insert(folded, id);
        self.tokens.insert(token, id);
        Ok(id)
    }

    /// Ends a session: frees its name and its token.
    pub fn end(&mut self, id: SessionId) -> Option<Session> {
        let session = self.table.remove(id)?;
        self.names.remove(&session.user.folded());
        self.tokens.remove(&session.token);
        if session.detached_since.is_some() {
            self.detached_count -= 1;
        }
        Some(session)
    }

    /// The session holding a name (ASCII-lowercased), detached or not.
    pub fn by_name(&self, folded: &str) -> Option<SessionId> {
        self.names.get(folded).copied()
    }

    /// The session a resume token names, if it is current.
    pub fn by_token(&self, token: &str) -> Option<SessionId> {
        self.tokens.get(token).copied()
    }

    /// Replaces a session's token: the old one stops working.
    pub fn rotate_token(&mut self, id: SessionId, token: String) {
        let Some(session) = self.table.get_mut(id) else {
            return;
        };
        self.tokens.remove(&session.token);
        self.tokens.insert(token.clone(), id);
        session.token = token;
    }

    /// The session lost its connection at `now` and waits to be resumed.
    pub fn detach(&mut self, id: SessionId, now: Instant) {
        let Some(session) = self.table.get_mut(id) else {
            return;
        };
        session.conn = None;
        if session.detached_since.replace(now).is_none() {
            self.detached_count += 1;
        }
        self.detached.push_back((now, id));
    }

    /// The session speaks through `conn` again.
    pub fn attach(&mut self, id: SessionId, conn: ConnId) {
        let Some(session) = self.table.get_mut(id) else {
            return;
        };
        session.conn = Some(conn);
        if session.detached_since.take().is_some() {
            self.detached_count -= 1;
        }
    }

    /// Detached sessions whose grace has run out by `now`, oldest first; taken off the list
    /// (the caller ends them).
    pub fn expired(&mut self, now: Instant, grace: Duration) -> Vec<SessionId> {
        let mut expired = Vec::new();
        while let Some(&(since, id)) = self.detached.front() {
            if since + grace > now {
                break;
            }
            self.detached.pop_front();
            let still = self
                .table
                .get(id)
                .is_some_and(|s| s.detached_since == Some(since));
            if still {
                expired.push(id);
            }
        }
        expired
    }

    /// The session detached the longest ago, if any.
    pub fn oldest_detached(&mut self) -> Option<SessionId> {
        while let Some(&(since, id)) = self.detached.front() {
            let still = self
                .table
                .get(id)
                .is_some_and(|s| s.detached_since == Some(since));
            if still {
                return Some(id);
            }
            self.detached.pop_front();
        }
        None
    }

    /// Sessions detached now.
    pub fn detached_count(&self) -> usize {
        self.detached_count
    }

    pub fn get(&self, id: SessionId) -> Option<&Session> {
        self.table.get(id)
    }

    pub fn get_mut(&mut self, id: SessionId) -> Option<&mut Session> {
        self.table.get_mut(id)
    }

    /// Sessions held, detached ones included.
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
    const SECOND: Duration = Duration::from_secs(1);

    fn name(user: &str) -> UserName {
        UserName::parse(user).unwrap()
    }

    #[test]
    fn names_are_unique_ignoring_ascii_case_until_the_session_ends() {
        let mut sessions = Sessions::default();
        let tibi = sessions
            .login(name("Tibi"), ConnId::new(0, 0), LOCAL, "t1".into())
            .unwrap();
        assert_eq!(
            sessions.login(name("tibi"), ConnId::new(1, 1), LOCAL, "t2".into()),
            Err(Refusal::NameTaken {
                user: "tibi".into()
            })
        );
        assert_eq!(sessions.end(tibi).map(|s| s.user), Some(name("Tibi")));
        assert!(sessions.get(tibi).is_none());
        assert_eq!(
            sessions.by_token("t1"),
            None,
            "the token ends with the session"
        );
        let again = sessions
            .login(name("tibi"), ConnId::new(1, 1), LOCAL, "t3".into())
            .unwrap();
        assert_ne!(again, tibi, "a new session is a new id");
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn tokens_are_single_use_and_detached_sessions_expire_in_order() {
        let now = Instant::now();
        let mut sessions = Sessions::default();
        let a = sessions
            .login(name("a"), ConnId::new(0, 0), LOCAL, "ta".into())
            .unwrap();
        let b = sessions
            .login(name("b"), ConnId::new(1, 1), LOCAL, "tb".into())
            .unwrap();
        sessions.rotate_token(a, "ta2".into());
        assert_eq!(sessions.by_token("ta"), None);
        assert_eq!(sessions.by_token("ta2"), Some(a));
        sessions.detach(a, now);
        sessions.detach(b, now + SECOND);
        assert_eq!(sessions.detached_count(), 2);
        assert_eq!(sessions.oldest_detached(), Some(a));
        sessions.attach(a, ConnId::new(2, 2));
        assert_eq!(sessions.oldest_detached(), Some(b), "a resumed");
        assert_eq!(sessions.expired(now + 30 * SECOND, 30 * SECOND), []);
        assert_eq!(sessions.expired(now + 31 * SECOND, 30 * SECOND), [b]);
        assert_eq!(sessions.detached_count(), 1, "the caller ends b");
        sessions.end(b);
        assert_eq!(sessions.detached_count(), 0);
    }
}
