//! Shared objects: what `claim`, `release` and `object` messages carry, validated at the edge.
//!
//! An object is named per room (a [`Label`]: `ball`, `door-2`). A member claims it to become its
//! only owner, optionally for a `ttl`; only the owner sends its pose and state; a release gives
//! it up. The rules live in the hub (`hub/objects.rs`); this file only reads the messages.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::names::{Label, MAX_LABEL};
use super::pose::{fields_of, Pose, PoseError, Subject};
use super::request::{brief, check_portable, one_line, present};

/// Longest claim TTL, in seconds: a day. Keeps `now + ttl` far from any overflow, and a claim
/// that should outlive a day can be refreshed.
pub const MAX_TTL_SECS: f64 = 86_400.0;

/// A claim, release or object message whose data cannot be used; the text of a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadObject {
    /// `data` is not an object with an `object` name.
    #[error("Invalid {kind}: data must be an object with \"object\": NAME.")]
    Shape {
        /// claim, release or object.
        kind: &'static str,
    },
    /// `data.object` is not an object name.
    #[error(
        "Invalid {kind}: data.object must be an object name: 1 to {MAX_LABEL} of A-Z a-z 0-9 _ - ."
    )]
    Name {
        /// claim, release or object.
        kind: &'static str,
    },
    /// `data.ttl` is not a number of seconds in range.
    #[error(
        "Invalid claim: data.ttl must be a number of seconds above 0 and at most {MAX_TTL_SECS}."
    )]
    Ttl,
    /// `data.remove` is not a boolean.
    #[error("Invalid release: data.remove must be true or false.")]
    Remove,
    /// An object update with nothing to update.
    #[error("Invalid object: data needs \"pos\" and \"rot\", or \"state\", or all three.")]
    Empty,
    /// `data.pos` or `data.rot` is not a pose.
    #[error(transparent)]
    Pose(#[from] PoseError),
    /// `data.state` is JSON some client could not read (as for msg data).
    #[error("Invalid object: data.state is not portable JSON: {0}.")]
    Portable(String),
    /// `data.state` is over `--max-object-state`.
    #[error("Invalid object: data.state is {size} bytes; at most {max}.")]
    StateSize {
        /// Bytes of the state as sent.
        size: usize,
        /// `--max-object-state`.
        max: usize,
    },
}

/// `{"room":R,"type":"claim","data":{"object":NAME,"ttl":SECONDS}}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Claim {
    /// The object.
    pub object: Label,
    /// Release it on its own after this long, unless claimed again (refreshed) first.
    pub ttl: Option<Duration>,
}

/// `{"room":R,"type":"release","data":{"object":NAME,"remove":BOOL}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The object.
    pub object: Label,
    /// Forget the object too (its pose and state), so it no longer counts in the room.
    pub remove: bool,
}

/// `{"room":R,"type":"object","data":{"object":NAME,"pos":..,"rot":..,"state":ANY}}`.
#[derive(Debug, Clone)]
pub struct ObjectUpdate<'a> {
    /// The object.
    pub object: Label,
    /// Its new pose, when `pos` and `rot` were sent.
    pub pose: Option<Pose>,
    /// Its new state, when sent: portable JSON, raw line breaks turned into spaces.
    pub state: Option<Cow<'a, RawValue>>,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    object: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    ttl: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    remove: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    pos: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    rot: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    state: Option<&'a RawValue>,
}

/// The data's fields and its object's name; checks run `data`, then `data.object`.
fn named<'a>(data: &'a RawValue, kind: &'static str) -> Result<(Fields<'a>, Label), BadObject> {
    let fields: Fields<'a> = fields_of(data).ok_or(BadObject::Shape { kind })?;
    let raw = fields.object.ok_or(BadObject::Shape { kind })?;
    let name = serde_json::from_str::<LabelValue>(raw.get())
        .ok()
        .and_then(|value| value.0)
        .ok_or(BadObject::Name { kind })?;
    Ok((fields, name))
}

impl Claim {
    /// Reads a claim's data.
    pub fn parse(data: &RawValue) -> Result<Claim, BadObject> {
        let (fields, object) = named(data, "claim")?;
        let ttl = match fields.ttl {
            None => None,
            Some(raw) => {
                let secs = serde_json::from_str::<f64>(raw.get())
                    .ok()
                    .filter(|secs| *secs > 0.0 && *secs <= MAX_TTL_SECS)
                    .ok_or(BadObject::Ttl)?;
                Some(Duration::from_secs_f64(secs))
            }
        };
        Ok(Claim { object, ttl })
    }
}

impl Release {
    /// Reads a release's data.
    pub fn parse(data: &RawValue) -> Result<Release, BadObject> {
        let (fields, object) = named(data, "release")?;
        let remove = match fields.remove {
            None => false,
            Some(raw) => serde_json::from_str::<bool>(raw.get()).map_err(|_| BadObject::Remove)?,
        };
        Ok(Release { object, remove })
    }
}

impl<'a> ObjectUpdate<'a> {
    /// Reads an object update's data; `state` may take at most `max_state` bytes as sent.
    /// Checks run `data`, `data.object`, the pose (when `pos` or `rot` is there, both must be,
    /// as in a transform), then `data.state`.
    pub fn parse(data: &'a RawValue, max_state: usize) -> Result<ObjectUpdate<'a>, BadObject> {
        let (fields, object) = named(data, "object")?;
        let pose = match fields.pos.is_some() || fields.rot.is_some() {
            true => Some(Pose::parse_in(data, Subject::Object)?),
            false => None,
        };
        let state = match fields.state {
            None => None,
            Some(raw) => {
                if raw.get().len() > max_state {
                    return Err(BadObject::StateSize {
                        size: raw.get().len(),
                        max: max_state,
                    });
                }
                check_portable(raw).map_err(|err| BadObject::Portable(brief(&err)))?;
                Some(one_line(raw))
            }
        };
        if pose.is_none() && state.is_none() {
            return Err(BadObject::Empty);
        }
        Ok(ObjectUpdate {
            object,
            pose,
            state,
        })
    }
}

/// A JSON string read as a [`Label`] (`None` when it is a string but not a name).
struct LabelValue(Option<Label>);

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = LabelValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object name")
            }

            fn visit_str<E>(self, name: &str) -> Result<LabelValue, E> {
                Ok(LabelValue(Label::parse(name)))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn claims_and_releases() {
        let claim = Claim::parse(&raw(r#"{"object":"ball","ttl":2.5,"x":1e999}"#)).unwrap();
        assert_eq!(claim.object.as_str(), "ball");
        assert_eq!(claim.ttl, Some(Duration::from_millis(2500)));
        assert_eq!(
            Claim::parse(&raw(r#"{"object":"ball"}"#)).unwrap().ttl,
            None
        );
        for bad in ["0", "-1", "\"5\"", "1e999", "86401", "null"] {
            let data = raw(&format!(r#"{{"object":"ball","ttl":{bad}}}"#));
            assert_eq!(Claim::parse(&data), Err(BadObject::Ttl), "{bad}");
        }
        let release = Release::parse(&raw(r#"{"object":"ball","remove":true}"#)).unwrap();
        assert!(release.remove);
        assert!(!Release::parse(&raw(r#"{"object":"b"}"#)).unwrap().remove);
        assert_eq!(
            Release::parse(&raw(r#"{"object":"b","remove":1}"#)),
            Err(BadObject::Remove)
        );
    }

    #[test]
    fn names_and_shapes_are_checked_first() {
        for (data, error) in [
            ("[1]", BadObject::Shape { kind: "claim" }),
            ("{}", BadObject::Shape { kind: "claim" }),
            (r#"{"object":5}"#, BadObject::Name { kind: "claim" }),
            (r#"{"object":"a b"}"#, BadObject::Name { kind: "claim" }),
            (
                r#"{"object":"","ttl":-1}"#,
                BadObject::Name { kind: "claim" },
            ),
        ] {
            assert_eq!(Claim::parse(&raw(data)), Err(error), "{data}");
        }
        assert_eq!(
            BadObject::Name { kind: "release" }.to_string(),
            "Invalid release: data.object must be an object name: 1 to 32 of A-Z a-z 0-9 _ - ."
        );
    }

    #[test]
    fn object_updates() {
        let data = raw(
            r#"{"object":"ball","pos":{"x":1,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0,"w":1},"state":{"held":
true}}"#,
        );
        let update = ObjectUpdate::parse(&data, 1024).unwrap();
        assert_eq!(update.pose.unwrap().pos.z, 3.0);
        assert_eq!(update.state.unwrap().get(), r#"{"held": true}"#);
        let data = raw(r#"{"object":"door","state":"open"}"#);
        assert_eq!(ObjectUpdate::parse(&data, 1024).unwrap().pose, None);
        let text = |data: &str| ObjectUpdate::parse(&raw(data), 16).unwrap_err().to_string();
        assert_eq!(
            text(r#"{"object":"ball"}"#),
            r#"Invalid object: data needs "pos" and "rot", or "state", or all three."#
        );
        assert_eq!(
            text(r#"{"object":"ball","pos":{"x":1,"y":2,"z":3}}"#),
            "Invalid object: data.rot must be an object with x, y, z."
        );
        assert_eq!(
            text(r#"{"object":"ball","pos":{"x":1,"y":2,"z":"3"},"rot":{"x":0,"y":0,"z":0}}"#),
            "Invalid object: data.pos.z must be a finite number."
        );
        assert_eq!(
            text(r#"{"object":"ball","state":"0123456789abcdef"}"#),
            "Invalid object: data.state is 18 bytes; at most 16."
        );
        assert!(text(r#"{"object":"ball","state":1e999}"#).contains("not portable JSON"));
    }
}
