//! Helpers shared by the integration tests: loading the Natural Earth fixtures.
#![allow(dead_code)]

use std::path::PathBuf;

use geojson::{FeatureCollection, GeoJson};
use vigil_geofences::{Area, AreaId};

/// A fixture file under `geofences/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Every feature of a fixture as an area with its ISO 3166-1 numeric id, or the error.
pub fn load_countries(
    name: &str,
) -> Vec<(AreaId, String, Result<Area, vigil_geofences::AreaError>)> {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture readable");
    let GeoJson::FeatureCollection(FeatureCollection { features, .. }) =
        text.parse::<GeoJson>().expect("fixture is GeoJSON")
    else {
        panic!("fixture is not a FeatureCollection");
    };
    features
        .iter()
        .map(|f| {
            let id = match &f.id {
                Some(geojson::feature::Id::Number(n)) => n.as_i64().expect("integer id"),
                other => panic!("unexpected id {other:?}"),
            };
            let name = f
                .property("name")
                .and_then(|v| v.as_str())
                .expect("name")
                .to_string();
            (id, name, Area::from_feature(id, f))
        })
        .collect()
}

/// Areas of a fixture, all of which must be valid.
pub fn countries(name: &str) -> Vec<Area> {
    load_countries(name)
        .into_iter()
        .map(|(_, n, a)| a.unwrap_or_else(|e| panic!("{n}: {e}")))
        .collect()
}
