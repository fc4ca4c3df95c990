//! Natural Earth country outlines: every country loads, and points near real borders, in
//! enclaves and across the antimeridian land in the right country.

mod common;

use std::sync::OnceLock;

use geo::{BoundingRect, Intersects, Point, Rect};
use vigil_geofences::{Area, AreaIndex, ShapeGeometry};

// ISO 3166-1 numeric codes.
const KENYA: i64 = 404;
const SOUTH_SUDAN: i64 = 728;
const SOMALIA: i64 = 706;
const UGANDA: i64 = 800;
const SOUTH_AFRICA: i64 = 710;
const LESOTHO: i64 = 426;
const SPAIN: i64 = 724;
const FRANCE: i64 = 250;
const RUSSIA: i64 = 643;
const ANTARCTICA: i64 = 10;
const FIJI: i64 = 242;

fn world() -> &'static AreaIndex {
    static WORLD: OnceLock<AreaIndex> = OnceLock::new();
    WORLD.get_or_init(|| AreaIndex::from_areas(common::countries("countries-50m.geojson")))
}

fn enclaves() -> &'static AreaIndex {
    static INDEX: OnceLock<AreaIndex> = OnceLock::new();
    INDEX.get_or_init(|| AreaIndex::from_areas(common::countries("enclaves-10m.geojson")))
}

#[test]
fn every_country_outline_is_valid() {
    let failures: Vec<String> = common::load_countries("countries-50m.geojson")
        .into_iter()
        .chain(common::load_countries("enclaves-10m.geojson"))
        .filter_map(|(id, name, r)| r.err().map(|e| format!("{id} {name}: {e}")))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    // Ids are unique, so every feature is its own area.
    assert_eq!(
        world().len(),
        common::load_countries("countries-50m.geojson").len()
    );
}

#[test]
fn capitals_are_in_their_countries() {
    let w = world();
    for (name, lon, lat, id) in [
        ("Nairobi", 36.8219, -1.2921, KENYA),
        ("Juba", 31.5825, 4.8594, SOUTH_SUDAN),
        ("Mogadishu", 45.3182, 2.0469, SOMALIA),
        ("Kampala", 32.5825, 0.3476, UGANDA),
        ("Maseru", 27.4833, -29.3167, LESOTHO),
        ("Bloemfontein", 26.2041, -29.0852, SOUTH_AFRICA),
        ("Madrid", -3.7038, 40.4168, SPAIN),
        ("Paris", 2.3522, 48.8566, FRANCE),
    ] {
        assert_eq!(w.containing(lon, lat, 0), vec![id], "{name}");
    }
    assert!(w.containing(-30.0, 0.0, 0).is_empty(), "mid-Atlantic");
}

#[test]
fn points_either_side_of_real_borders() {
    let w = world();
    // About 5 km either side of the Kenya–Uganda border at Malaba (34.21°E in the data) and
    // of the Kenya–Somalia border (40.97°E).
    assert_eq!(w.containing(34.26, 0.64, 0), vec![KENYA]);
    assert_eq!(w.containing(34.16, 0.64, 0), vec![UGANDA]);
    assert_eq!(w.containing(40.93, 0.5, 0), vec![KENYA]);
    assert_eq!(w.containing(41.06, 0.5, 0), vec![SOMALIA]);
}

#[test]
fn lesotho_is_a_hole_in_south_africa() {
    for idx in [world(), enclaves()] {
        // Maseru and the middle of Lesotho are in Lesotho only: South Africa has a hole there.
        assert_eq!(idx.containing(28.25, -29.6, 0), vec![LESOTHO]);
        // Ladybrand, 15 km from Maseru across the Caledon river, is South African.
        assert_eq!(idx.containing(27.46, -29.19, 0), vec![SOUTH_AFRICA]);
    }
}

#[test]
fn llivia_is_spanish_inside_france() {
    let idx = enclaves();
    // Llívia town centre, and the French countryside two kilometres east of it.
    assert_eq!(idx.containing(1.9806, 42.4636, 0), vec![SPAIN]);
    assert_eq!(idx.containing(2.03, 42.465, 0), vec![FRANCE]);
    // Puigcerdà (Spain proper) and Bourg-Madame (France) on either side of the main border.
    assert_eq!(idx.containing(1.9275, 42.4317, 0), vec![SPAIN]);
    assert_eq!(idx.containing(1.945, 42.437, 0), vec![FRANCE]);
}

#[test]
fn chukotka_across_the_antimeridian() {
    let w = world();
    assert_eq!(w.containing(179.9, 67.5, 0), vec![RUSSIA]);
    assert_eq!(w.containing(-179.9, 67.5, 0), vec![RUSSIA]);
    assert_eq!(w.containing(-175.0, 66.5, 0), vec![RUSSIA]);
    assert!(w.containing(-168.0, 66.0, 0).is_empty(), "Bering Strait");
}

#[test]
fn fiji_and_antarctica() {
    let w = world();
    // Vanua Levu (west of the antimeridian) and Lakeba in the Lau group (east of it).
    assert_eq!(w.containing(179.3, -16.55, 0), vec![FIJI]);
    assert_eq!(w.containing(-178.8, -18.23, 0), vec![FIJI]);
    assert_eq!(w.containing(0.0, -85.0, 0), vec![ANTARCTICA]);
    assert_eq!(w.containing(179.99, -85.0, 0), vec![ANTARCTICA]);
    assert_eq!(w.containing(-120.0, -89.9, 0), vec![ANTARCTICA]);
    assert!(w.containing(0.0, -55.0, 0).is_empty());
}

/// A country's polygons, each with its bounding box.
type Parts = Vec<(Rect<f64>, geo::Polygon<f64>)>;

/// geo's exact `Intersects` (border included) on the outline as given, per polygon.
fn oracle(parts: &[(Rect<f64>, geo::Polygon<f64>)], lon: f64, lat: f64) -> bool {
    let p = Point::new(lon, lat);
    parts
        .iter()
        .any(|(bbox, poly)| bbox.intersects(&p) && poly.intersects(&p))
}

#[test]
fn index_agrees_with_brute_force_on_a_grid() {
    let w = world();
    // Outlines that cross the antimeridian or wind round the pole mean something else to a
    // planar oracle; they have their own tests above.
    let planar: Vec<(i64, Parts)> = w
        .iter()
        .filter(|a| ![RUSSIA, FIJI, ANTARCTICA].contains(&a.id))
        .map(|a: &Area| {
            let ShapeGeometry::Polygons(mp) = a.shape.geometry() else {
                unreachable!("countries are polygons")
            };
            let parts =
                mp.0.iter()
                    .filter_map(|p| Some((p.bounding_rect()?, p.clone())))
                    .collect();
            (a.id, parts)
        })
        .collect();
    let mut checked = 0;
    let mut lat = -59.95;
    while lat < 84.0 {
        let mut lon = -179.93;
        while lon < 180.0 {
            let mut expected: Vec<i64> = planar
                .iter()
                .filter(|(_, parts)| oracle(parts, lon, lat))
                .map(|(id, _)| *id)
                .collect();
            expected.sort_unstable();
            let mut got = w.containing(lon, lat, 0);
            got.retain(|id| ![RUSSIA, FIJI, ANTARCTICA].contains(id));
            assert_eq!(got, expected, "at ({lon}, {lat})");
            checked += 1;
            lon += 0.97;
        }
        lat += 0.83;
    }
    assert!(checked > 60_000, "{checked}");
}
