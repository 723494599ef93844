//! Shared objects and their ownership: a room's named objects (a ball, a door, a held tool),
//! who holds each, for how long, and their latest pose and state.
//!
//! The server decides conflicts, so clients need no protocol of their own: a claim of an
//! object nobody holds makes the claimant its only owner (a `claim` event); a claim of one
//! someone else holds is refused with 409 naming the owner; only the owner may send the
//! object's pose and state (403 for others), and those updates are coalesced on the room's
//! tick like poses, latest-wins. Ownership ends with a `release` event: when the owner
//! releases it, when its claim's TTL runs out, or when the owner leaves the room or its session
//! ends (a session whose connection dropped is only detached: it keeps its objects through the
//! resume grace). Claim and release events are history events, numbered and kept, so a resume
//! replays them. Objects outlive their owners: a released ball keeps its last pose and state,
//! and joiners receive every object at their first tick, with its owner.
//!
//! Bounded: objects per room (`--max-objects`), objects one user holds in a room
//! (`--max-claims`), and bytes of state (`--max-object-state`, checked at parsing).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use super::ids::{RoomId, SessionId};
use super::{Hub, Refusal};
use crate::protocol::{encode_event, Claim, Label, ObjectUpdate, Pose, Release, UserName};

/// Why an object's ownership ended, as its `release` event says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Reason {
    /// The owner sent `release`.
    Release,
    /// The owner left the room, or its session ended.
    Leave,
    /// The claim's TTL ran out.
    Expired,
}

/// One shared object.
#[derive(Debug)]
struct Object {
    owner: Option<SessionId>,
    /// The current owner's name or, once released, the last owner's: the `user` of its events.
    holder: UserName,
    /// When the claim runs out, if it was made with a TTL.
    expires: Option<Instant>,
    pose: Option<Pose>,
    state: Option<Box<RawValue>>,
    /// Updated since the last tick.
    changed: bool,
}

/// What a claim did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claimed {
    /// The claimant is the new owner: every member gets a `claim` event.
    Granted,
    /// The claimant already held it: its TTL was renewed (or dropped), silently.
    Refreshed,
}

/// The limits a room's objects are held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Objects in the room.
    pub objects: usize,
    /// Objects one user holds in the room.
    pub claims: usize,
}

/// A room's objects, by name.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    by_name: BTreeMap<Label, Object>,
}

impl Objects {
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// `session` (named `user`) claims `claim.object` at `now`.
    pub fn claim(
        &mut self,
        session: SessionId,
        user: &UserName,
        claim: Claim,
        now: Instant,
        limits: Limits,
    ) -> Result<Claimed, Refusal> {
        let expires = claim.ttl.map(|ttl| now + ttl);
        if let Some(object) = self.by_name.get_mut(&claim.object) {
            match object.owner {
                Some(owner) if owner == session => {
                    object.expires = expires;
                    return Ok(Claimed::Refreshed);
                }
                Some(_) => {
                    return Err(Refusal::ObjectHeld {
                        object: claim.object,
                        owner: object.holder.as_str().to_owned(),
                    })
                }
                None => {}
            }
        }
        let held = self.held_by(session);
        if held >= limits.claims {
            return Err(Refusal::TooManyClaims { max: limits.claims });
        }
        let object = match self.by_name.get_mut(&claim.object) {
            Some(object) => object,
            None => {
                if self.by_name.len() >= limits.objects {
                    return Err(Refusal::TooManyObjects {
                        max: limits.objects,
                    });
                }
                self.by_name.entry(claim.object).or_insert(Object {
                    owner: None,
                    holder: user.clone(),
                    expires: None,
                    pose: None,
                    state: None,
                    changed: false,
                })
            }
        };
        object.owner = Some(session);
        object.holder = user.clone();
        object.expires = expires;
        Ok(Claimed::Granted)
    }

    /// The owner gives `release.object` up (and forgets it, when asked).
    pub fn release(&mut self, session: SessionId, release: Release) -> Result<(), Refusal> {
        let object = self.owned(session, release.object)?;
        object.owner = None;
        object.expires = None;
        if release.remove {
            self.by_name.remove(&release.object);
        }
        Ok(())
    }

    /// The owner's new pose and state; true when something changed (the room needs a tick).
    pub fn update(
        &mut self,
        session: SessionId,
        update: ObjectUpdate<'_>,
    ) -> Result<bool, Refusal> {
        let object = self.owned(session, update.object)?;
        let mut changed = false;
        if let Some(pose) = update.pose {
            changed |= object.pose.replace(pose) != Some(pose);
        }
        if let Some(state) = update.state {
            if object.state.as_deref().map(RawValue::get) != Some(state.get()) {
                object.state = Some(state.into_owned());
                changed = true;
            }
        }
        object.changed |= changed;
        Ok(changed)
    }

    /// Ends every claim of `session` (it left the room, or its session ended); the objects it
    /// held, in name order.
    pub fn release_all_of(&mut self, session: SessionId) -> Vec<Label> {
        let mut released = Vec::new();
        for (name, object) in &mut self.by_name {
            if object.owner == Some(session) {
                object.owner = None;
                object.expires = None;
                released.push(*name);
            }
        }
        released
    }

    /// Ends the claims whose TTL ran out by `now`: each object with its last owner's name.
    pub fn expire(&mut self, now: Instant) -> Vec<(Label, UserName)> {
        let mut expired = Vec::new();
        for (name, object) in &mut self.by_name {
            if object.expires.is_some_and(|at| at <= now) {
                object.owner = None;
                object.expires = None;
                expired.push((*name, object.holder.clone()));
            }
        }
        expired
    }

    /// When the next claim runs out.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_name.values().filter_map(|o| o.expires).min()
    }

    /// One `object` event per object updated since the last tick, encoded once; clears the
    /// marks.
    pub fn changes(&mut self, time: f64) -> Vec<Bytes> {
        let mut events = Vec::new();
        for (name, object) in &mut self.by_name {
            if std::mem::take(&mut object.changed) {
                events.push(object.event(time, name));
            }
        }
        events
    }

    /// One `object` event per object, for a joiner's snapshot.
    pub fn snapshot(&self, time: f64) -> Vec<Bytes> {
        self.by_name
            .iter()
            .map(|(name, object)| object.event(time, name))
            .collect()
    }

    /// Objects `session` holds here.
    fn held_by(&self, session: SessionId) -> usize {
        self.by_name
            .values()
            .filter(|o| o.owner == Some(session))
            .count()
    }

    /// The object, if `session` holds it; 403 otherwise (naming the owner, if any).
    fn owned(&mut self, session: SessionId, name: Label) -> Result<&mut Object, Refusal> {
        match self.by_name.get_mut(&name) {
            Some(object) if object.owner == Some(session) => Ok(object),
            other => Err(Refusal::NotHolder {
                object: name,
                owner: other
                    .filter(|o| o.owner.is_some())
                    .map(|o| o.holder.as_str().to_owned()),
            }),
        }
    }

    /// Who holds what, for the model-based tests' invariants.
    #[cfg(test)]
    pub fn owners(&self) -> Vec<(Label, Option<SessionId>)> {
        self.by_name.iter().map(|(n, o)| (*n, o.owner)).collect()
    }
}

impl Object {
    fn event(&self, time: f64, name: &Label) -> Bytes {
        let data = ObjectOut {
            object: name,
            owner: self.owner.map(|_| self.holder.as_str()),
            pos: self.pose.as_ref().map(|p| &p.pos),
            rot: self.pose.as_ref().map(|p| &p.rot),
            state: self.state.as_deref(),
        };
        encode_event(time, self.holder.as_str(), "object", data)
    }
}

/// An `object` event's data: `{"object":NAME,"owner":U or null,"pos":..,"rot":..,"state":..}`,
/// pose and state only once the object has them.
#[derive(Serialize)]
struct ObjectOut<'a> {
    object: &'a Label,
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pos: Option<&'a crate::protocol::Vec3>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rot: Option<&'a crate::protocol::Rotation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'a RawValue>,
}

/// A `claim` event's data.
#[derive(Serialize)]
struct ClaimOut {
    object: Label,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<f64>,
}

/// A `release` event's data.
#[derive(Serialize)]
struct ReleaseOut {
    object: Label,
    reason: Reason,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

/// The room-message handlers and the claim clock, as the hub's rules.
impl Hub {
    pub(super) fn claim(
        &mut self,
        now: Instant,
        room_id: RoomId,
        session: SessionId,
        user: &UserName,
        claim: Claim,
    ) -> Result<(), Refusal> {
        let limits = self.object_limits();
        let claimed = self.rooms[room_id]
            .objects_mut()
            .claim(session, user, claim, now, limits)?;
        if claimed == Claimed::Granted {
            let data = ClaimOut {
                object: claim.object,
                ttl: claim.ttl.map(|ttl| ttl.as_secs_f64()),
            };
            let time = self.time(now);
            self.publish(room_id, time, user.as_str(), "claim", data);
        }
        self.schedule_claims(room_id);
        Ok(())
    }

    pub(super) fn release(
        &mut self,
        now: Instant,
        room_id: RoomId,
        session: SessionId,
        user: &UserName,
        release: Release,
    ) -> Result<(), Refusal> {
        self.rooms[room_id]
            .objects_mut()
            .release(session, release)?;
        let data = ReleaseOut {
            object: release.object,
            reason: Reason::Release,
            removed: release.remove,
        };
        let time = self.time(now);
        self.publish(room_id, time, user.as_str(), "release", data);
        self.schedule_claims(room_id);
        Ok(())
    }

    pub(super) fn update_object(
        &mut self,
        room_id: RoomId,
        session: SessionId,
        update: ObjectUpdate<'_>,
    ) -> Result<(), Refusal> {
        if self.rooms[room_id].objects_mut().update(session, update)? {
            self.queue_tick(room_id);
        }
        Ok(())
    }

    /// A member left the room (or its session ended) holding `released`: each gets a release
    /// event, after the leave.
    pub(super) fn announce_releases(
        &mut self,
        now: Instant,
        room_id: RoomId,
        user: &UserName,
        released: Vec<Label>,
    ) {
        if released.is_empty() {
            return;
        }
        let time = self.time(now);
        for object in released {
            let data = ReleaseOut {
                object,
                reason: Reason::Leave,
                removed: false,
            };
            self.publish(room_id, time, user.as_str(), "release", data);
        }
        self.schedule_claims(room_id);
    }

    /// Claims whose TTL ran out by `now` end, with release events.
    pub(super) fn expire_claims(&mut self, now: Instant) {
        while let Some(&(at, room_id)) = self.claim_deadlines.first() {
            if at > now {
                break;
            }
            self.claim_deadlines.remove(&(at, room_id));
            let Some(room) = self.rooms.get_mut(room_id) else {
                continue; // removed with its room
            };
            room.set_claim_deadline(None);
            let expired = room.objects_mut().expire(now);
            let time = self.time(now);
            for (object, holder) in expired {
                let data = ReleaseOut {
                    object,
                    reason: Reason::Expired,
                    removed: false,
                };
                self.publish(room_id, time, holder.as_str(), "release", data);
            }
            self.schedule_claims(room_id);
        }
    }

    /// Keeps the room's entry in the claim clock at its earliest TTL (none when it has none).
    pub(super) fn schedule_claims(&mut self, room_id: RoomId) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let next = room.objects_mut().next_expiry();
        if let Some(old) = room.set_claim_deadline(next) {
            self.claim_deadlines.remove(&(old, room_id));
        }
        if let Some(at) = next {
            self.claim_deadlines.insert((at, room_id));
        }
    }

    /// An emptied room (removed, or kept dormant) has no claims left to run out: `deadline` was
    /// its entry in the claim clock.
    pub(super) fn unschedule_claims(&mut self, room_id: RoomId, deadline: Option<Instant>) {
        if let Some(at) = deadline {
            self.claim_deadlines.remove(&(at, room_id));
        }
        if let Some(room) = self.rooms.get_mut(room_id) {
            room.set_claim_deadline(None);
        }
    }

    fn object_limits(&self) -> Limits {
        Limits {
            objects: self.config.max_objects,
            claims: self.config.max_claims,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ids::Table;
    use std::time::Duration;

    fn name(text: &str) -> Label {
        Label::parse(text).unwrap()
    }

    const LIMITS: Limits = Limits {
        objects: 3,
        claims: 2,
    };

    fn sessions() -> (SessionId, SessionId) {
        let mut table: Table<SessionId, ()> = Table::default();
        (table.insert(()), table.insert(()))
    }

    #[test]
    fn one_owner_at_a_time() {
        let (a, b) = sessions();
        let (alice, bob) = (
            UserName::parse("alice").unwrap(),
            UserName::parse("bob").unwrap(),
        );
        let now = Instant::now();
        let mut objects = Objects::default();
        let ball = Claim {
            object: name("ball"),
            ttl: None,
        };
        assert_eq!(
            objects.claim(a, &alice, ball, now, LIMITS),
            Ok(Claimed::Granted)
        );
        assert_eq!(
            objects.claim(b, &bob, ball, now, LIMITS),
            Err(Refusal::ObjectHeld {
                object: name("ball"),
                owner: "alice".into()
            })
        );
        assert_eq!(
            objects.claim(a, &alice, ball, now, LIMITS),
            Ok(Claimed::Refreshed)
        );
        let release = Release {
            object: name("ball"),
            remove: false,
        };
        assert_eq!(
            objects.release(b, release),
            Err(Refusal::NotHolder {
                object: name("ball"),
                owner: Some("alice".into())
            })
        );
        assert_eq!(objects.release(a, release), Ok(()));
        assert_eq!(
            objects.release(a, release),
            Err(Refusal::NotHolder {
                object: name("ball"),
                owner: None
            })
        );
        assert_eq!(
            objects.claim(b, &bob, ball, now, LIMITS),
            Ok(Claimed::Granted)
        );
        assert_eq!(objects.owners(), [(name("ball"), Some(b))]);
    }

    #[test]
    fn limits_and_ttls() {
        let (a, b) = sessions();
        let alice = UserName::parse("alice").unwrap();
        let bob = UserName::parse("bob").unwrap();
        let now = Instant::now();
        let mut objects = Objects::default();
        let claim = |object: &str, ttl: Option<u64>| Claim {
            object: name(object),
            ttl: ttl.map(Duration::from_secs),
        };
        objects
            .claim(a, &alice, claim("x", Some(5)), now, LIMITS)
            .unwrap();
        objects
            .claim(a, &alice, claim("y", Some(2)), now, LIMITS)
            .unwrap();
        assert_eq!(
            objects.claim(a, &alice, claim("z", None), now, LIMITS),
            Err(Refusal::TooManyClaims { max: 2 })
        );
        objects
            .claim(b, &bob, claim("z", None), now, LIMITS)
            .unwrap();
        assert_eq!(
            objects.claim(b, &bob, claim("w", None), now, LIMITS),
            Err(Refusal::TooManyObjects { max: 3 })
        );
        assert_eq!(objects.next_expiry(), Some(now + Duration::from_secs(2)));
        assert!(objects.expire(now + Duration::from_secs(1)).is_empty());
        let expired = objects.expire(now + Duration::from_secs(2));
        assert_eq!(expired, [(name("y"), alice.clone())]);
        // A refresh without a TTL holds the object until it is released.
        objects
            .claim(a, &alice, claim("x", None), now, LIMITS)
            .unwrap();
        assert_eq!(objects.next_expiry(), None);
        assert_eq!(objects.release_all_of(a), [name("x")]);
        assert_eq!(objects.release_all_of(a), Vec::<Label>::new());
    }
}
