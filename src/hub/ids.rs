//! Who is who: the ids the hub hands out and takes in, and the tables they index.
//!
//! A connection ([`ConnId`]) is a socket: it comes and goes. A session ([`SessionId`]) is a
//! logged-in user, which outlives any one connection. Room membership and the user-name index
//! are keyed by session; outputs go to connections. Every id carries a generation, so an id
//! kept past its entry's removal (a late result, a stale list) never finds the entry that
//! reused its slot: lookups by a stale id miss instead of hitting a stranger.

use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use slab::Slab;

/// A connection, as the hub knows it: never reused while the process runs.
///
/// The event loop makes these from its slab key and a serial number of its own, so a reused
/// slab key still gives a new id. Raw mio `Token`s never enter the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    serial: u64,
    slot: u32,
}

impl ConnId {
    /// The id of the connection in slot `slot` of the event loop, accepted as the
    /// `serial`-th connection of the process.
    pub fn new(slot: usize, serial: u64) -> ConnId {
        ConnId {
            serial,
            // The event loop's slab never holds anywhere near 4 billion connections.
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
        }
    }

    /// The event loop's slab key for this connection.
    pub fn slot(self) -> usize {
        self.slot as usize
    }
}

/// A slab slot and the generation of its current occupant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    slot: u32,
    generation: u32,
}

/// A logged-in user's session, whatever connection carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Key);

/// A room of the hub's room table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Key);

/// An id made of a [`Key`], so one [`Table`] type serves them all.
pub trait TableId: Copy {
    /// Wraps a key.
    fn from_key(key: Key) -> Self;
    /// The key inside.
    fn key(self) -> Key;
}

impl TableId for SessionId {
    fn from_key(key: Key) -> Self {
        SessionId(key)
    }
    fn key(self) -> Key {
        self.0
    }
}

impl TableId for RoomId {
    fn from_key(key: Key) -> Self {
        RoomId(key)
    }
    fn key(self) -> Key {
        self.0
    }
}

/// A slab whose entries are reached by generation-checked ids.
///
/// Indexing with `table[id]` is for ids the hub holds as part of its own consistent state
/// (a member's session, a session's rooms): a miss there is a bug and panics. Ids that may
/// be stale (from outside, or from a list that may lag) go through [`Table::get`].
#[derive(Debug)]
pub struct Table<I, T> {
    slab: Slab<(u32, T)>,
    /// Generation of each slot's next occupant; grows as the slab does.
    generations: Vec<u32>,
    _id: PhantomData<I>,
}

impl<I: TableId, T> Default for Table<I, T> {
    fn default() -> Self {
        Table {
            slab: Slab::new(),
            generations: Vec::new(),
            _id: PhantomData,
        }
    }
}

impl<I: TableId, T> Table<I, T> {
    /// Stores `value` under a fresh id.
    pub fn insert(&mut self, value: T) -> I {
        self.insert_with(|_| value)
    }

    /// Stores the value `make` builds from its own id.
    pub fn insert_with(&mut self, make: impl FnOnce(I) -> T) -> I {
        let entry = self.slab.vacant_entry();
        let slot = entry.key();
        if self.generations.len() <= slot {
            self.generations.resize(slot + 1, 0);
        }
        let generation = self.generations[slot];
        let id = I::from_key(Key {
            // A slab of 4 billion rooms or sessions is far beyond every configured limit.
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            generation,
        });
        entry.insert((generation, make(id)));
        id
    }

    /// The entry, if `id` is still current.
    pub fn get(&self, id: I) -> Option<&T> {
        let key = id.key();
        match self.slab.get(key.slot as usize) {
            Some((generation, value)) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// The entry, if `id` is still current.
    pub fn get_mut(&mut self, id: I) -> Option<&mut T> {
        let key = id.key();
        match self.slab.get_mut(key.slot as usize) {
            Some((generation, value)) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// Takes the entry out; its id never finds anything again.
    pub fn remove(&mut self, id: I) -> Option<T> {
        self.get(id)?;
        let slot = id.key().slot as usize;
        self.generations[slot] = self.generations[slot].wrapping_add(1);
        Some(self.slab.remove(slot).1)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every entry with its id, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (I, &T)> {
        self.slab.iter().map(|(slot, (generation, value))| {
            let key = Key {
                slot: slot as u32,
                generation: *generation,
            };
            (I::from_key(key), value)
        })
    }
}

impl<I: TableId + std::fmt::Debug, T> Index<I> for Table<I, T> {
    type Output = T;

    fn index(&self, id: I) -> &T {
        match self.get(id) {
            Some(value) => value,
            None => panic!("{id:?} is not in the table: the hub's own state is inconsistent"),
        }
    }
}

impl<I: TableId + std::fmt::Debug, T> IndexMut<I> for Table<I, T> {
    fn index_mut(&mut self, id: I) -> &mut T {
        match self.get_mut(id) {
            Some(value) => value,
            None => panic!("{id:?} is not in the table: the hub's own state is inconsistent"),
        }
    }
}

/// Per-connection state of the hub, reached in O(1) by the connection's slot and checked
/// against its serial, so a reused slot never finds the previous connection's state.
#[derive(Debug)]
pub struct ConnMap<T> {
    slots: Vec<Option<(ConnId, T)>>,
    len: usize,
}

impl<T> Default for ConnMap<T> {
    fn default() -> Self {
        ConnMap {
            slots: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ConnMap<T> {
    /// Stores `value` for `id`, replacing whatever its slot held.
    pub fn insert(&mut self, id: ConnId, value: T) {
        let slot = id.slot();
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        if self.slots[slot].replace((id, value)).is_none() {
            self.len += 1;
        }
    }

    /// The state of `id`, if it is still held.
    pub fn get(&self, id: ConnId) -> Option<&T> {
        match self.slots.get(id.slot()) {
            Some(Some((held, value))) if *held == id => Some(value),
            _ => None,
        }
    }

    /// The state of `id`, if it is still held.
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match self.slots.get_mut(id.slot()) {
            Some(Some((held, value))) if *held == id => Some(value),
            _ => None,
        }
    }

    /// Takes the state of `id` out.
    pub fn remove(&mut self, id: ConnId) -> Option<T> {
        self.get(id)?;
        self.len -= 1;
        self.slots[id.slot()].take().map(|(_, value)| value)
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No connections held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every connection with its state.
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &T)> {
        self.slots
            .iter()
            .filter_map(|slot| slot.as_ref().map(|(id, value)| (*id, value)))
    }

    /// Takes every connection out.
    pub fn drain(&mut self) -> impl Iterator<Item = (ConnId, T)> + '_ {
        self.len = 0;
        self.slots.iter_mut().filter_map(Option::take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_id_never_finds_the_entry_that_reuses_its_slot() {
        let mut table: Table<RoomId, &str> = Table::default();
        let first = table.insert("first");
        assert_eq!(table[first], "first");
        assert_eq!(table.remove(first), Some("first"));
        let second = table.insert("second");
        assert_eq!(second.key().slot, first.key().slot, "the slot is reused");
        assert_eq!(table.get(first), None);
        assert_eq!(table.remove(first), None);
        assert_eq!(table[second], "second");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn conn_ids_with_a_reused_slot_are_different_connections() {
        let mut map = ConnMap::default();
        let old = ConnId::new(3, 1);
        map.insert(old, "old");
        assert_eq!(map.remove(old), Some("old"));
        let new = ConnId::new(3, 2);
        map.insert(new, "new");
        assert_ne!(old, new);
        assert_eq!(map.get(old), None);
        assert_eq!(map.remove(old), None);
        assert_eq!(map.get(new), Some(&"new"));
        assert_eq!(map.len(), 1);
        assert_eq!(map.drain().count(), 1);
        assert!(map.is_empty());
    }
}
