//! The rooms list (`{"system":"rooms"}`): rooms in name order, paged, with the first page
//! encoded once and reused until a room is created, removed, joined or left.
//!
//! The list is answered before login, so it must not be an amplifier: a page holds at most
//! [`MAX_PAGE`] rooms, and the page most clients ask for is not encoded again per request.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};

use super::ids::RoomId;

/// Rooms per page when the client names no limit.
pub const DEFAULT_PAGE: usize = 100;
/// Most rooms one page holds.
pub const MAX_PAGE: usize = 500;

/// Room names in order, and the cached first page.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    order: BTreeMap<String, RoomId>,
    first_page: Option<Box<RawValue>>,
}

#[derive(Serialize)]
struct Page<'a> {
    rooms: Vec<Entry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<&'a str>,
}

#[derive(Serialize)]
struct Entry<'a> {
    room: &'a str,
    users: usize,
}

impl Directory {
    pub fn insert(&mut self, name: &str, id: RoomId) {
        self.order.insert(name.to_owned(), id);
        self.changed();
    }

    pub fn remove(&mut self, name: &str) {
        self.order.remove(name);
        self.changed();
    }

    /// A member count changed.
    pub fn changed(&mut self) {
        self.first_page = None;
    }

    /// The page of rooms after `after` (exclusive), at most `limit` of them, as the reply's
    /// detail: `{"rooms":[{"room":R,"users":N}..],"next":R}`, `next` present when more follow.
    pub fn page(
        &mut self,
        after: Option<&str>,
        limit: Option<usize>,
        users: impl Fn(RoomId) -> usize,
    ) -> Box<RawValue> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let cacheable = after.is_none() && limit == DEFAULT_PAGE;
        if cacheable {
            if let Some(page) = &self.first_page {
                return page.clone();
            }
        }
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut range = self.order.range::<str, _>((start, Bound::Unbounded));
        let rooms: Vec<Entry<'_>> = range
            .by_ref()
            .take(limit)
            .map(|(name, &id)| Entry {
                room: name,
                users: users(id),
            })
            .collect();
        let next = match range.next() {
            Some(_) => rooms.last().map(|entry| entry.room),
            None => None,
        };
        // Plain strings and numbers always serialize.
        let page = to_raw_value(&Page { rooms, next }).expect("a page of names serializes");
        if cacheable {
            self.first_page = Some(page.clone());
        }
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::ids::Table;
    use serde_json::{json, Value};

    #[test]
    fn pages_follow_name_order_and_say_where_to_go_on() {
        let mut ids: Table<RoomId, ()> = Table::default();
        let mut directory = Directory::default();
        for name in ["c", "a", "d", "b"] {
            directory.insert(name, ids.insert(()));
        }
        let read = |page: Box<RawValue>| serde_json::from_str::<Value>(page.get()).unwrap();
        let first = read(directory.page(None, Some(2), |_| 1));
        assert_eq!(
            first,
            json!({"rooms": [{"room": "a", "users": 1}, {"room": "b", "users": 1}], "next": "b"})
        );
        let second = read(directory.page(Some("b"), Some(2), |_| 1));
        assert_eq!(second["rooms"][0]["room"], "c");
        assert_eq!(second["next"], Value::Null, "d is the last room");
        let all = read(directory.page(None, None, |_| 0));
        assert_eq!(all["rooms"].as_array().unwrap().len(), 4);
        assert!(all.get("next").is_none());
    }

    #[test]
    fn the_first_page_is_encoded_once_until_something_changes() {
        let mut ids: Table<RoomId, ()> = Table::default();
        let mut directory = Directory::default();
        directory.insert("lobby", ids.insert(()));
        let one = directory.page(None, None, |_| 1);
        let cached = directory.page(None, None, |_| 99);
        assert_eq!(one.get(), cached.get(), "served from the cache");
        directory.changed();
        let fresh = directory.page(None, None, |_| 2);
        assert!(fresh.get().contains("\"users\":2"));
    }
}
