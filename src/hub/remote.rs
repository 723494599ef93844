//! A room's members on other nodes (cluster mode, `--redis`): their names, for `list`, and
//! their latest poses, merged into this node's ticks.
//!
//! Nothing here is decided locally: the set follows the join and leave events this node sees
//! on the room's channel (after the room's sync gave the starting set), and each pose is the
//! transform event the member's own node encoded at its tick, forwarded as bytes. Bounded by
//! the room: a remote member comes with a join event, at most `--max-room-members` of them.

use std::collections::BTreeMap;

use bytes::Bytes;

/// One member of the room on another node.
#[derive(Debug, Clone, Default)]
struct Remote {
    /// The node it is on.
    node: String,
    /// Its latest transform event, as its node encoded it.
    pose: Option<Bytes>,
    /// Changed since this node's last tick.
    changed: bool,
}

/// The room's members on other nodes, by name.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    by_name: BTreeMap<String, Remote>,
}

impl Remotes {
    /// `user` is in the room, on `node`.
    pub fn insert(&mut self, user: &str, node: &str) {
        let entry = self.by_name.entry(user.to_owned()).or_default();
        entry.node = node.to_owned();
    }

    /// `user` left the room (or went away): its pose goes with it. True if it was known.
    pub fn remove(&mut self, user: &str) -> bool {
        self.by_name.remove(user).is_some()
    }

    /// `user` went away: it stays a member but has no pose until it is back.
    pub fn drop_pose(&mut self, user: &str) {
        if let Some(remote) = self.by_name.get_mut(user) {
            remote.pose = None;
            remote.changed = false;
        }
    }

    /// Forgets everyone (a fresh sync replaces the set).
    pub fn clear(&mut self) {
        self.by_name.clear();
    }

    pub fn contains(&self, user: &str) -> bool {
        self.by_name.contains_key(user)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Names, in plain string order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// A pose of `user` from its node; ignored for a user not known as a member here (a pose
    /// cannot overtake its member's join: one Redis connection delivers both in publish
    /// order). True when it changed something.
    pub fn set_pose(&mut self, user: &str, node: &str, event: Bytes) -> bool {
        match self.by_name.get_mut(user) {
            Some(remote) if remote.node == node => {
                if remote.pose.as_ref() == Some(&event) {
                    return false;
                }
                remote.pose = Some(event);
                remote.changed = true;
                true
            }
            _ => false,
        }
    }

    /// Whether any remote member has a pose (a joiner's snapshot has something to show).
    pub fn has_poses(&self) -> bool {
        self.by_name.values().any(|r| r.pose.is_some())
    }

    /// The poses that changed since the last tick (clearing the marks), and, when `all`, every
    /// pose (for a snapshot).
    pub fn take_changes(&mut self, all: bool) -> (Vec<Bytes>, Vec<Bytes>) {
        let mut changed = Vec::new();
        let mut every = Vec::new();
        for remote in self.by_name.values_mut() {
            let Some(pose) = &remote.pose else {
                continue;
            };
            if std::mem::take(&mut remote.changed) {
                changed.push(pose.clone());
            }
            if all {
                every.push(pose.clone());
            }
        }
        (changed, every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poses_follow_membership_and_changes_are_taken_once() {
        let mut remotes = Remotes::default();
        assert!(!remotes.set_pose("bob", "n2", Bytes::from("p1")), "unknown");
        remotes.insert("bob", "n2");
        assert!(
            !remotes.set_pose("bob", "n3", Bytes::from("p1")),
            "wrong node"
        );
        assert!(remotes.set_pose("bob", "n2", Bytes::from("p1")));
        assert!(
            !remotes.set_pose("bob", "n2", Bytes::from("p1")),
            "same pose"
        );
        let (changed, all) = remotes.take_changes(true);
        assert_eq!((changed.len(), all.len()), (1, 1));
        let (changed, all) = remotes.take_changes(false);
        assert_eq!((changed.len(), all.len()), (0, 0));
        remotes.drop_pose("bob");
        assert!(!remotes.has_poses());
        assert!(remotes.contains("bob"));
        assert!(remotes.remove("bob"));
        assert!(remotes.is_empty());
    }
}
