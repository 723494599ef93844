//! Headset poses and tracked parts: validated field by field, so what is stored and forwarded
//! is exactly positions and rotations, nothing else the client sent.
//!
//! A transform is the head's pose and, optionally, changes to the user's other tracked parts
//! (`left_hand`, `right_hand`, a controller, a held tool) under `parts`: a part set to a pose
//! replaces that part, a part set to `null` drops it, a part left out stays as it was. So
//! coalescing is latest-wins per user and per part, and a hand that lost tracking is dropped
//! with one `null`.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::names::{Label, MAX_LABEL};
use super::request::present;
use super::Quote;

/// What a pose field belongs to, for the 422 text: a transform, or a shared object's update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// `{"type":"transform"}`.
    Transform,
    /// `{"type":"object"}`.
    Object,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Subject::Transform => "transform",
            Subject::Object => "object",
        })
    }
}

/// Where a field is: `data`, or `data.parts.NAME`, then a tail such as `.pos.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// What the message is.
    pub subject: Subject,
    /// The tracked part, when the field is inside `data.parts`.
    pub part: Option<Label>,
    /// The rest of the path: `""`, `".pos"`, `".rot.w"`.
    pub tail: &'static str,
}

impl Field {
    fn at(self, tail: &'static str) -> Field {
        Field { tail, ..self }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("data")?;
        if let Some(part) = self.part {
            write!(f, ".parts.{part}")?;
        }
        f.write_str(self.tail)
    }
}

/// A transform (or object update) whose data is not a pose; the message names the bad field
/// (for a 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoseError {
    /// The pose's object is missing or not an object.
    #[error("Invalid {}: {at} must be an object with \"pos\" and \"rot\".", .at.subject)]
    Shape {
        /// Where.
        at: Field,
    },
    /// `pos` or `rot` is missing or not an object.
    #[error("Invalid {}: {at} must be an object with x, y, z.", .at.subject)]
    Vector {
        /// Where.
        at: Field,
    },
    /// One axis is missing, not a number, or not finite.
    #[error("Invalid {}: {at} must be a finite number.", .at.subject)]
    Axis {
        /// Where, e.g. `data.pos.x`.
        at: Field,
    },
    /// `data.parts` is not an object of named parts (or names one part twice).
    #[error(
        "Invalid transform: data.parts must be an object of named parts, each a pose or null."
    )]
    Parts,
    /// A key of `data.parts` that is not a part name.
    #[error("Invalid transform: {} in data.parts is not a part name: use 1 to {MAX_LABEL} of A-Z a-z 0-9 _ - .", Quote(.name))]
    PartName {
        /// The key as sent (quoted cut in the text).
        name: String,
    },
    /// A `data.parts` naming more parts than `--max-parts` (drops included).
    #[error("Invalid transform: data.parts names {count} parts; at most {max}.")]
    PartsListed {
        /// Parts named.
        count: usize,
        /// `--max-parts`.
        max: usize,
    },
    /// More parts than `--max-parts` once applied to the user's parts.
    #[error("Invalid transform: data.parts would give you {count} tracked parts; at most {max} (drop one with null first).")]
    TooManyParts {
        /// Parts the user would have.
        count: usize,
        /// `--max-parts`.
        max: usize,
    },
}

/// A validated pose: the head's, a part's, or an object's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pose {
    /// Position.
    pub pos: Vec3,
    /// Rotation: Euler angles, or a quaternion when `w` is present.
    pub rot: Rotation,
}

/// A position or Euler rotation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Vec3 {
    /// X axis.
    pub x: f64,
    /// Y axis.
    pub y: f64,
    /// Z axis.
    pub z: f64,
}

/// Rotation as engines hand it over: x, y, z and, for a quaternion, w.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rotation {
    /// X component.
    pub x: f64,
    /// Y component.
    pub y: f64,
    /// Z component.
    pub z: f64,
    /// Quaternion scalar part, when the client sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w: Option<f64>,
}

impl Pose {
    /// Checks a transform's `data` (its head; `parts` is not read).
    pub fn parse(data: &RawValue) -> Result<Pose, PoseError> {
        Pose::parse_at(data, head(Subject::Transform))
    }

    /// Checks the `pos` and `rot` of `data`, naming fields as parts of `subject`'s data.
    pub fn parse_in(data: &RawValue, subject: Subject) -> Result<Pose, PoseError> {
        Pose::parse_at(data, head(subject))
    }

    fn parse_at(data: &RawValue, at: Field) -> Result<Pose, PoseError> {
        let fields: PoseFields<'_> = fields_of(data).ok_or(PoseError::Shape { at })?;
        Pose::from_fields(fields.pos, fields.rot, at)
    }

    fn from_fields(
        pos: Option<&RawValue>,
        rot: Option<&RawValue>,
        at: Field,
    ) -> Result<Pose, PoseError> {
        let vector = |tail| PoseError::Vector { at: at.at(tail) };
        let pos: AxisFields<'_> = pos.and_then(fields_of).ok_or_else(|| vector(".pos"))?;
        let rot: AxisFields<'_> = rot.and_then(fields_of).ok_or_else(|| vector(".rot"))?;
        Ok(Pose {
            pos: Vec3 {
                x: axis(pos.x, at.at(".pos.x"))?,
                y: axis(pos.y, at.at(".pos.y"))?,
                z: axis(pos.z, at.at(".pos.z"))?,
            },
            rot: Rotation {
                x: axis(rot.x, at.at(".rot.x"))?,
                y: axis(rot.y, at.at(".rot.y"))?,
                z: axis(rot.z, at.at(".rot.z"))?,
                w: rot.w.map(|w| axis(Some(w), at.at(".rot.w"))).transpose()?,
            },
        })
    }
}

fn head(subject: Subject) -> Field {
    Field {
        subject,
        part: None,
        tail: "",
    }
}

/// A transform's data, validated: the head's pose and the parts it sets or drops.
#[derive(Debug, Clone, PartialEq)]
pub struct Transform {
    /// The head.
    pub head: Pose,
    /// Parts set to a pose (`Some`) or dropped (`None`), in the order written; no name twice.
    pub parts: Vec<(Label, Option<Pose>)>,
}

impl Transform {
    /// Checks a transform's `data`: the head as [`Pose::parse`], then `parts`, which may name
    /// at most `max_parts` parts. Checks run in this order: `data`, the head's fields, then
    /// `data.parts`, its size, and each part in the order written (its name, then its fields).
    pub fn parse(data: &RawValue, max_parts: usize) -> Result<Transform, PoseError> {
        let at = head(Subject::Transform);
        let fields: TransformFields<'_> = fields_of(data).ok_or(PoseError::Shape { at })?;
        let head = Pose::from_fields(fields.pos, fields.rot, at)?;
        let Some(raw_parts) = fields.parts else {
            return Ok(Transform {
                head,
                parts: Vec::new(),
            });
        };
        if !raw_parts.get().starts_with('{') {
            return Err(PoseError::Parts);
        }
        let written: PartsWritten<'_> =
            serde_json::from_str(raw_parts.get()).map_err(|_| PoseError::Parts)?;
        if written.0.len() > max_parts {
            return Err(PoseError::PartsListed {
                count: written.0.len(),
                max: max_parts,
            });
        }
        let mut parts: Vec<(Label, Option<Pose>)> = Vec::with_capacity(written.0.len());
        for (name, value) in written.0 {
            let name = name.map_err(|name| PoseError::PartName { name })?;
            if parts.iter().any(|(seen, _)| *seen == name) {
                return Err(PoseError::Parts);
            }
            let pose = match value.get() {
                "null" => None,
                _ => Some(Pose::parse_at(
                    value,
                    Field {
                        subject: Subject::Transform,
                        part: Some(name),
                        tail: "",
                    },
                )?),
            };
            parts.push((name, pose));
        }
        Ok(Transform { head, parts })
    }

    /// A head-only transform.
    pub fn head(pose: Pose) -> Transform {
        Transform {
            head: pose,
            parts: Vec::new(),
        }
    }
}

impl Serialize for Transform {
    /// `{"pos":..,"rot":..,"parts":{NAME: POSE or null}}`, `parts` only when it names any.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("pos", &self.head.pos)?;
        map.serialize_entry("rot", &self.head.rot)?;
        if !self.parts.is_empty() {
            map.serialize_entry("parts", &PartsOut(&self.parts))?;
        }
        map.end()
    }
}

/// What members receive as a transform event's data: a user's head and every part it tracks.
/// Without parts it is exactly the head pose, as before parts existed.
#[derive(Debug, Clone, Copy)]
pub struct Avatar<'a> {
    /// The head.
    pub head: &'a Pose,
    /// The tracked parts, in name order.
    pub parts: &'a [(Label, Pose)],
}

impl Serialize for Avatar<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.parts.is_empty() {
            return self.head.serialize(serializer);
        }
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("pos", &self.head.pos)?;
        map.serialize_entry("rot", &self.head.rot)?;
        map.serialize_entry("parts", &PartsOut(self.parts))?;
        map.end()
    }
}

/// A list of named parts written as a JSON object.
struct PartsOut<'a, P>(&'a [(Label, P)]);

impl<P: Serialize> Serialize for PartsOut<'_, P> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, pose) in self.0 {
            map.serialize_entry(name.as_str(), pose)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
struct PoseFields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    pos: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    rot: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TransformFields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    pos: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    rot: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    parts: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AxisFields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    x: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    y: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    z: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    w: Option<&'a RawValue>,
}

/// The entries of `data.parts` as written: each key a part name (or the key that is not one),
/// each value still raw.
struct PartsWritten<'a>(Vec<(Result<Label, String>, &'a RawValue)>);

impl<'de> Deserialize<'de> for PartsWritten<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = PartsWritten<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of named parts")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<PartKey>()? {
                    let value: &'de RawValue = map.next_value()?;
                    entries.push((key.0, value));
                }
                Ok(PartsWritten(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// A key of `data.parts`, unescaped: a part name, or what was written instead.
struct PartKey(Result<Label, String>);

impl<'de> Deserialize<'de> for PartKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Key;
        impl Visitor<'_> for Key {
            type Value = PartKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a part name")
            }

            fn visit_str<E>(self, name: &str) -> Result<PartKey, E> {
                // Only a refused name is copied, and only as much as the 422 quotes.
                Ok(PartKey(Label::parse(name).ok_or_else(|| super::echo(name))))
            }
        }
        deserializer.deserialize_str(Key)
    }
}

/// An object's known fields, each still raw; `None` unless `raw` is a JSON object.
pub(crate) fn fields_of<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    if !raw.get().starts_with('{') {
        return None; // serde would also read an array as a struct, by position
    }
    serde_json::from_str(raw.get()).ok()
}

fn axis(raw: Option<&RawValue>, at: Field) -> Result<f64, PoseError> {
    raw.and_then(|raw| serde_json::from_str::<f64>(raw.get()).ok())
        .filter(|value| value.is_finite())
        .ok_or(PoseError::Axis { at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    const HEAD: &str = r#""pos":{"x":1,"y":1.6,"z":0},"rot":{"x":0,"y":0,"z":0,"w":1}"#;

    #[test]
    fn poses_are_validated_field_by_field() {
        let pose = Pose::parse(&raw(
            r#"{"pos":{"x":1,"y":2.5,"z":-3},"rot":{"x":0,"y":0,"z":0,"w":1},"extra":true}"#,
        ))
        .unwrap();
        assert_eq!(pose.rot.w, Some(1.0));
        assert_eq!(
            serde_json::to_string(&pose).unwrap(),
            r#"{"pos":{"x":1.0,"y":2.5,"z":-3.0},"rot":{"x":0.0,"y":0.0,"z":0.0,"w":1.0}}"#
        );
        let cases = [
            (
                r#"{"pos":{"x":1,"y":2},"rot":{"x":0,"y":0,"z":0}}"#,
                "data.pos.z",
            ),
            (
                r#"{"pos":{"x":1,"y":2,"z":"3"},"rot":{"x":0,"y":0,"z":0}}"#,
                "data.pos.z",
            ),
            (r#"{"pos":{"x":1,"y":2,"z":3}}"#, "data.rot"),
            (
                r#"{"pos":{"x":1,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0,"w":null}}"#,
                "data.rot.w",
            ),
            (
                r#"{"pos":{"x":1e999,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0}}"#,
                "data.pos.x",
            ),
            (
                r#"{"pos":{"x":1,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0},"junk":1e999}"#,
                "!ok",
            ),
            (r#"[1,2,3]"#, "data must be an object"),
        ];
        for (json, needle) in cases {
            if needle == "!ok" {
                assert!(
                    Pose::parse(&raw(json)).is_ok(),
                    "ignored keys are not read: {json}"
                );
                continue;
            }
            let err = Pose::parse(&raw(json)).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn head_errors_read_as_before_parts_existed() {
        let text = |json: &str| Pose::parse(&raw(json)).unwrap_err().to_string();
        assert_eq!(
            text("[1]"),
            r#"Invalid transform: data must be an object with "pos" and "rot"."#
        );
        assert_eq!(
            text(r#"{"pos":{"x":1,"y":2,"z":3}}"#),
            "Invalid transform: data.rot must be an object with x, y, z."
        );
        assert_eq!(
            text(r#"{"pos":{"x":1,"y":2},"rot":{"x":0,"y":0,"z":0}}"#),
            "Invalid transform: data.pos.z must be a finite number."
        );
        let object = Pose::parse_in(&raw(r#"{"pos":{"x":1,"y":2,"z":3}}"#), Subject::Object);
        assert_eq!(
            object.unwrap_err().to_string(),
            "Invalid object: data.rot must be an object with x, y, z."
        );
    }

    #[test]
    fn parts_are_set_or_dropped_by_name() {
        let data = raw(&format!(
            r#"{{{HEAD},"parts":{{"left_hand":{{"pos":{{"x":0.2,"y":1.2,"z":0.3}},"rot":{{"x":0,"y":0,"z":0,"w":1}},"junk":1e999}},"right_hand":null}}}}"#
        ));
        let transform = Transform::parse(&data, 8).unwrap();
        assert_eq!(transform.head.pos.x, 1.0);
        assert_eq!(transform.parts.len(), 2);
        let (left, pose) = &transform.parts[0];
        assert_eq!(left.as_str(), "left_hand");
        assert_eq!(pose.unwrap().pos.z, 0.3);
        assert_eq!(transform.parts[1].0.as_str(), "right_hand");
        assert_eq!(transform.parts[1].1, None, "null drops the part");
        assert_eq!(
            serde_json::to_string(&transform).unwrap(),
            r#"{"pos":{"x":1.0,"y":1.6,"z":0.0},"rot":{"x":0.0,"y":0.0,"z":0.0,"w":1.0},"parts":{"left_hand":{"pos":{"x":0.2,"y":1.2,"z":0.3},"rot":{"x":0.0,"y":0.0,"z":0.0,"w":1.0}},"right_hand":null}}"#
        );
        let head_only = Transform::parse(&raw(&format!("{{{HEAD}}}")), 8).unwrap();
        assert!(head_only.parts.is_empty());
        let escaped = raw(&format!(r#"{{{HEAD},"parts":{{"left\u005fhand":null}}}}"#));
        assert_eq!(
            Transform::parse(&escaped, 8).unwrap().parts[0].0.as_str(),
            "left_hand",
            "names are read unescaped"
        );
    }

    #[test]
    fn an_avatar_without_parts_is_spelled_as_the_head_pose() {
        let pose = Pose::parse(&raw(&format!("{{{HEAD}}}"))).unwrap();
        let bare = serde_json::to_string(&pose).unwrap();
        let avatar = Avatar {
            head: &pose,
            parts: &[],
        };
        assert_eq!(serde_json::to_string(&avatar).unwrap(), bare);
        let hand = Label::parse("left_hand").unwrap();
        let with_hand = Avatar {
            head: &pose,
            parts: &[(hand, pose)],
        };
        assert_eq!(
            serde_json::to_string(&with_hand).unwrap(),
            format!(
                r#"{},"parts":{{"left_hand":{bare}}}}}"#,
                &bare[..bare.len() - 1]
            )
        );
    }

    #[test]
    fn part_errors_name_the_part_and_field() {
        let text = |parts: &str, max: usize| {
            let data = raw(&format!(r#"{{{HEAD},"parts":{parts}}}"#));
            Transform::parse(&data, max).unwrap_err().to_string()
        };
        let hand =
            |x: &str| format!(r#"{{"pos":{{"x":{x},"y":1,"z":0}},"rot":{{"x":0,"y":0,"z":0}}}}"#);
        assert_eq!(
            text(&format!(r#"{{"left_hand":{}}}"#, hand("\"a\"")), 8),
            "Invalid transform: data.parts.left_hand.pos.x must be a finite number."
        );
        assert_eq!(
            text(r#"{"left_hand":{"pos":{"x":1,"y":1,"z":1}}}"#, 8),
            "Invalid transform: data.parts.left_hand.rot must be an object with x, y, z."
        );
        assert_eq!(
            text(r#"{"left_hand":[1]}"#, 8),
            r#"Invalid transform: data.parts.left_hand must be an object with "pos" and "rot"."#
        );
        assert_eq!(
            text(r#"{"left hand":null}"#, 8),
            r#"Invalid transform: "left hand" in data.parts is not a part name: use 1 to 32 of A-Z a-z 0-9 _ - ."#
        );
        for bad in ["[]", "5", r#"{"a":null,"a":null}"#] {
            assert_eq!(
                text(bad, 8),
                "Invalid transform: data.parts must be an object of named parts, each a pose or null.",
                "{bad}"
            );
        }
        assert_eq!(
            text(r#"{"a":null,"b":null,"c":null}"#, 2),
            "Invalid transform: data.parts names 3 parts; at most 2."
        );
        let long = "x".repeat(5000);
        let err = text(&format!(r#"{{"{long}":null}}"#), 8);
        assert!(err.len() < 200, "a long name is quoted cut: {err}");
        // The head is checked before the parts.
        let data = raw(r#"{"pos":{"x":1,"y":1},"rot":{"x":0,"y":0,"z":0},"parts":5}"#);
        assert!(Transform::parse(&data, 8)
            .unwrap_err()
            .to_string()
            .contains("data.pos.z"));
    }
}
