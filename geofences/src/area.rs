//! Areas and their GeoJSON form.

use geojson::{Feature, JsonObject, JsonValue, feature::Id};

use crate::AreaId;
use crate::error::AreaError;
use crate::level::{AreaKind, SecurityLevel};
use crate::shape::Shape;

/// A named area with a shape, a kind, an optional security level and validity window.
#[derive(Clone, Debug, PartialEq)]
pub struct Area {
    /// The server's database id.
    pub id: AreaId,
    /// Shown to people ("Nairobi", "Jonglei state").
    pub name: String,
    /// Country, security area, premises, …
    pub kind: AreaKind,
    /// UN security level; `None` for areas that carry none (premises, assembly points).
    pub level: Option<SecurityLevel>,
    /// The enclosing area (country → security area); informational, not checked geometrically.
    pub parent: Option<AreaId>,
    /// First moment the area applies, Unix ms, inclusive; `None` = always has.
    pub valid_from: Option<i64>,
    /// Moment the area stops applying, Unix ms, exclusive; `None` = never.
    pub valid_until: Option<i64>,
    /// The outline.
    pub shape: Shape,
}

impl Area {
    /// Whether the area applies at `at_ms`: `valid_from <= at_ms < valid_until`.
    pub fn is_valid_at(&self, at_ms: i64) -> bool {
        window_contains(self.valid_from, self.valid_until, at_ms)
    }

    /// Reads an area from a GeoJSON feature.
    ///
    /// Geometry: Polygon or MultiPolygon, or a Point with property `radius_m` (a circle).
    /// Properties: `name` and `kind` (required), `security_level` (1–6), `parent_id`,
    /// `valid_from`, `valid_until` (Unix ms). The feature's own `id` is ignored: `id` is the
    /// server's.
    pub fn from_feature(id: AreaId, feature: &Feature) -> Result<Area, AreaError> {
        let empty = JsonObject::new();
        let props = feature.properties.as_ref().unwrap_or(&empty);
        let geometry = feature
            .geometry
            .as_ref()
            .ok_or(AreaError::MissingGeometry)?;
        let radius_m = opt_f64(props, "radius_m")?;
        let shape = Shape::from_geometry(geometry, radius_m)?;
        let name = match props.get("name") {
            Some(JsonValue::String(s)) => s.clone(),
            None | Some(JsonValue::Null) => return Err(AreaError::MissingProperty("name")),
            Some(other) => return Err(bad("name", format!("expected a string, got {other}"))),
        };
        let kind = match props.get("kind") {
            Some(JsonValue::String(s)) => AreaKind::parse(s).ok_or_else(|| {
                bad(
                    "kind",
                    format!(
                        "unknown kind {s:?}; expected one of country, security_area, duty_station, premises, assembly_point, ad_hoc"
                    ),
                )
            })?,
            None | Some(JsonValue::Null) => return Err(AreaError::MissingProperty("kind")),
            Some(other) => return Err(bad("kind", format!("expected a string, got {other}"))),
        };
        let level = opt_i64(props, "security_level")?
            .map(|n| SecurityLevel::try_from(n).map_err(|e| bad("security_level", e.to_string())))
            .transpose()?;
        let area = Area {
            id,
            name,
            kind,
            level,
            parent: opt_i64(props, "parent_id")?,
            valid_from: opt_i64(props, "valid_from")?,
            valid_until: opt_i64(props, "valid_until")?,
            shape,
        };
        area.check_window()?;
        Ok(area)
    }

    /// Checks that the validity window is not empty.
    pub fn check_window(&self) -> Result<(), AreaError> {
        match (self.valid_from, self.valid_until) {
            (Some(from), Some(until)) if until <= from => {
                Err(AreaError::EmptyWindow { from, until })
            }
            _ => Ok(()),
        }
    }

    /// Writes the area as a GeoJSON feature (the inverse of [`Area::from_feature`]).
    pub fn to_feature(&self) -> Feature {
        let mut props = JsonObject::new();
        props.insert("name".into(), self.name.clone().into());
        props.insert("kind".into(), self.kind.as_str().into());
        if let Some(level) = self.level {
            props.insert("security_level".into(), level.as_i64().into());
        }
        if let Some(parent) = self.parent {
            props.insert("parent_id".into(), parent.into());
        }
        if let Some(t) = self.valid_from {
            props.insert("valid_from".into(), t.into());
        }
        if let Some(t) = self.valid_until {
            props.insert("valid_until".into(), t.into());
        }
        if let Some(r) = self.shape.radius_m() {
            props.insert("radius_m".into(), r.into());
        }
        Feature {
            bbox: None,
            geometry: Some(self.shape.to_geometry()),
            id: Some(Id::Number(self.id.into())),
            properties: Some(props),
            foreign_members: None,
        }
    }
}

pub(crate) fn window_contains(from: Option<i64>, until: Option<i64>, at_ms: i64) -> bool {
    from.is_none_or(|f| at_ms >= f) && until.is_none_or(|u| at_ms < u)
}

fn bad(name: &'static str, problem: String) -> AreaError {
    AreaError::BadProperty { name, problem }
}

fn opt_i64(props: &JsonObject, name: &'static str) -> Result<Option<i64>, AreaError> {
    match props.get(name) {
        None | Some(JsonValue::Null) => Ok(None),
        Some(JsonValue::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(name, format!("expected an integer, got {n}"))),
        Some(other) => Err(bad(name, format!("expected an integer, got {other}"))),
    }
}

fn opt_f64(props: &JsonObject, name: &'static str) -> Result<Option<f64>, AreaError> {
    match props.get(name) {
        None | Some(JsonValue::Null) => Ok(None),
        Some(JsonValue::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(name, format!("expected a number, got {n}"))),
        Some(other) => Err(bad(name, format!("expected a number, got {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(json: &str) -> Feature {
        serde_json::from_str(json).expect("feature json")
    }

    #[test]
    fn polygon_feature_round_trips() {
        let f = feature(
            r#"{"type":"Feature","properties":{"name":"Juba","kind":"security_area","security_level":5,
                "parent_id":728,"valid_from":1000,"valid_until":2000},
                "geometry":{"type":"Polygon","coordinates":[[[31.5,4.8],[31.7,4.8],[31.7,4.9],[31.5,4.8]]]}}"#,
        );
        let a = Area::from_feature(7, &f).expect("valid");
        assert_eq!(a.level, Some(SecurityLevel::High));
        assert_eq!(a.parent, Some(728));
        assert!(a.is_valid_at(1000) && !a.is_valid_at(2000));
        let back = Area::from_feature(7, &a.to_feature()).expect("round trip");
        assert_eq!(a, back);
    }

    #[test]
    fn circle_feature_round_trips() {
        let f = feature(
            r#"{"type":"Feature","properties":{"name":"Gate","kind":"assembly_point","radius_m":150},
                "geometry":{"type":"Point","coordinates":[36.8,-1.3]}}"#,
        );
        let a = Area::from_feature(1, &f).expect("valid");
        assert_eq!(a.shape.radius_m(), Some(150.0));
        assert_eq!(
            Area::from_feature(1, &a.to_feature()).expect("round trip"),
            a
        );
    }

    #[test]
    fn bad_properties_are_named() {
        let f = feature(
            r#"{"type":"Feature","properties":{"name":"X","kind":"castle"},
                "geometry":{"type":"Point","coordinates":[0,0]}}"#,
        );
        assert_eq!(Area::from_feature(1, &f), Err(AreaError::MissingRadius));
        let f = feature(
            r#"{"type":"Feature","properties":{"name":"X","kind":"castle","radius_m":5},
                "geometry":{"type":"Point","coordinates":[0,0]}}"#,
        );
        let e = Area::from_feature(1, &f).expect_err("kind");
        assert!(
            e.to_string()
                .starts_with("property `kind`: unknown kind \"castle\""),
            "{e}"
        );
        let f = feature(
            r#"{"type":"Feature","properties":{"name":"X","kind":"premises","radius_m":5,"security_level":9},
                "geometry":{"type":"Point","coordinates":[0,0]}}"#,
        );
        let e = Area::from_feature(1, &f).expect_err("level");
        assert_eq!(
            e.to_string(),
            "property `security_level`: security level 9 is not in 1..=6"
        );
        let f = feature(
            r#"{"type":"Feature","properties":{"name":"X","kind":"premises"},
                "geometry":{"type":"LineString","coordinates":[[0,0],[1,1]]}}"#,
        );
        assert_eq!(
            Area::from_feature(1, &f),
            Err(AreaError::UnsupportedGeometry("LineString"))
        );
    }
}
