//! Headset poses: validated field by field, so what is stored and forwarded is exactly a
//! position and a rotation, nothing else the client sent.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::request::present;

/// A transform whose data is not a pose; the message names the bad field (for a 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoseError {
    /// `data` is not an object.
    #[error("Invalid transform: data must be an object with \"pos\" and \"rot\".")]
    Shape,
    /// `data.pos` is missing or not an object.
    #[error("Invalid transform: data.pos must be an object with x, y, z.")]
    Position,
    /// `data.rot` is missing or not an object.
    #[error("Invalid transform: data.rot must be an object with x, y, z.")]
    Rotation,
    /// One axis is missing, not a number, or not finite.
    #[error("Invalid transform: {field} must be a finite number.")]
    Axis {
        /// The field's path, e.g. `data.pos.x`.
        field: &'static str,
    },
}

/// A validated headset pose.
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
    /// Checks a transform's `data`.
    pub fn parse(data: &RawValue) -> Result<Pose, PoseError> {
        let fields: PoseFields<'_> = fields_of(data).ok_or(PoseError::Shape)?;
        let pos: AxisFields<'_> = fields.pos.and_then(fields_of).ok_or(PoseError::Position)?;
        let rot: AxisFields<'_> = fields.rot.and_then(fields_of).ok_or(PoseError::Rotation)?;
        Ok(Pose {
            pos: Vec3 {
                x: axis(pos.x, "data.pos.x")?,
                y: axis(pos.y, "data.pos.y")?,
                z: axis(pos.z, "data.pos.z")?,
            },
            rot: Rotation {
                x: axis(rot.x, "data.rot.x")?,
                y: axis(rot.y, "data.rot.y")?,
                z: axis(rot.z, "data.rot.z")?,
                w: rot.w.map(|w| axis(Some(w), "data.rot.w")).transpose()?,
            },
        })
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

/// An object's known fields, each still raw; `None` unless `raw` is a JSON object.
fn fields_of<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    if !raw.get().starts_with('{') {
        return None; // serde would also read an array as a struct, by position
    }
    serde_json::from_str(raw.get()).ok()
}

fn axis(raw: Option<&RawValue>, field: &'static str) -> Result<f64, PoseError> {
    raw.and_then(|raw| serde_json::from_str::<f64>(raw.get()).ok())
        .filter(|value| value.is_finite())
        .ok_or(PoseError::Axis { field })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

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
}
