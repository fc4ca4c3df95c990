//! The benchmark world, shared by `benches/spatial.rs` and `examples/peers.rs` so that ours
//! and the peers' figures come from the same data and the same queries.
//!
//! Deterministic (a fixed seed): every Natural Earth country, 10,000 security areas (90 %
//! polygons of 6–40 vertices, 10 % circles, 2–40 km across, placed inside countries),
//! a Nairobi city polygon, and 1,000,000 tracked positions of which 50,000 are inside the city
//! polygon, 10,000 in its bounding box outside it, and the rest around the security areas
//! (70 %) or anywhere in a country's bounding box (30 %).
#![allow(dead_code)]

use std::path::PathBuf;

use geo::{LineString, Polygon};
use geojson::{FeatureCollection, GeoJson};
use vigil_geofences::{Area, AreaKind, Fix, SecurityLevel, Shape};

pub const CITY_ID: i64 = 1;
pub const KENYA_ID: i64 = 404;
pub const FIRST_SECURITY_AREA_ID: i64 = 100_000;
pub const NAIROBI: (f64, f64) = (36.8219, -1.2921);

/// SplitMix64: tiny, fast, good enough for placing points, and needs no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Metres to degrees of latitude / of longitude at `lat` (spherical; placement only).
pub fn m_to_deg(m: f64, lat: f64) -> (f64, f64) {
    let dlat = m / 111_195.0;
    (dlat / lat.to_radians().cos().max(0.05), dlat)
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Every country of the 1:50m fixture, id = ISO 3166-1 numeric.
pub fn countries() -> Vec<Area> {
    let text = std::fs::read_to_string(fixture("countries-50m.geojson")).expect("fixture");
    let GeoJson::FeatureCollection(FeatureCollection { features, .. }) =
        text.parse::<GeoJson>().expect("GeoJSON")
    else {
        panic!("not a FeatureCollection");
    };
    features
        .iter()
        .map(|f| {
            let id = match &f.id {
                Some(geojson::feature::Id::Number(n)) => n.as_i64().expect("integer id"),
                other => panic!("unexpected id {other:?}"),
            };
            Area::from_feature(id, f).expect("valid country")
        })
        .collect()
}

/// A star-shaped polygon (simple by construction) of `n` vertices, radii in [0.6, 1] × `r_m`.
pub fn star(rng: &mut Rng, lon: f64, lat: f64, r_m: f64, n: usize) -> Polygon<f64> {
    let mut pts: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            let (dx, dy) = m_to_deg(r_m * rng.range(0.6, 1.0), lat);
            (lon + dx * a.cos(), (lat + dy * a.sin()).clamp(-89.9, 89.9))
        })
        .collect();
    pts.push(pts[0]);
    Polygon::new(LineString::from(pts), vec![])
}

/// The Nairobi city polygon: a 48-gon about 15 km in radius.
pub fn city() -> Area {
    let mut rng = Rng::new(7);
    Area {
        id: CITY_ID,
        name: "Nairobi".into(),
        kind: AreaKind::DutyStation,
        level: Some(SecurityLevel::Moderate),
        parent: Some(KENYA_ID),
        valid_from: None,
        valid_until: None,
        shape: Shape::from_polygon(star(&mut rng, NAIROBI.0, NAIROBI.1, 15_000.0, 48))
            .expect("valid city"),
    }
}

/// A random point inside `area` (rejection sampling in its first bounding box).
fn point_in(rng: &mut Rng, area: &Area) -> Option<(f64, f64)> {
    let boxes = area.shape.bounding_boxes();
    let b = boxes.first()?;
    for _ in 0..200 {
        let (x, y) = (rng.range(b[0], b[2]), rng.range(b[1], b[3]));
        if area.shape.contains(x, y) {
            return Some((x, y));
        }
    }
    None
}

/// 10,000 security areas inside random countries.
pub fn security_areas(countries: &[Area], n: usize) -> Vec<Area> {
    let mut rng = Rng::new(42);
    // Countries are drawn in proportion to the square root of their bounding box's area, so
    // big countries get more areas without the small ones being left out (uniform draws would
    // pile 40 areas onto Monaco).
    let weights: Vec<f64> = countries
        .iter()
        .map(|c| {
            let b = c.shape.bounding_boxes()[0];
            ((b[2] - b[0]) * (b[3] - b[1])).max(1e-6).sqrt()
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut pick = rng.f64() * total;
        let mut k = 0;
        while k + 1 < weights.len() && pick >= weights[k] {
            pick -= weights[k];
            k += 1;
        }
        let country = &countries[k];
        let Some((x, y)) = point_in(&mut rng, country) else {
            continue;
        };
        let id = FIRST_SECURITY_AREA_ID + out.len() as i64;
        let r_m = rng.range(1_000.0, 20_000.0);
        let shape = if rng.f64() < 0.1 {
            Shape::circle(x, y, r_m).expect("valid circle")
        } else {
            let n = 6 + rng.below(35);
            match Shape::from_polygon(star(&mut rng, x, y, r_m, n)) {
                Ok(s) => s,
                Err(_) => continue,
            }
        };
        out.push(Area {
            id,
            name: format!("security area {id}"),
            kind: AreaKind::SecurityArea,
            level: SecurityLevel::try_from(1 + rng.below(6) as i64).ok(),
            parent: Some(country.id),
            valid_from: None,
            valid_until: None,
            shape,
        });
    }
    out
}

/// `(subject, lon, lat)` for `n` subjects (n ≥ 60,000).
pub fn positions(
    countries: &[Area],
    areas: &[Area],
    city: &Area,
    n: usize,
) -> Vec<(i64, f64, f64)> {
    let mut rng = Rng::new(1234);
    let mut out = Vec::with_capacity(n);
    let b = city.shape.bounding_boxes()[0];
    let (mut inside, mut outside) = (0, 0);
    while inside < 50_000 || outside < 10_000 {
        let (x, y) = (rng.range(b[0], b[2]), rng.range(b[1], b[3]));
        let is_in = city.shape.contains(x, y);
        if is_in && inside < 50_000 {
            inside += 1;
        } else if !is_in && outside < 10_000 {
            outside += 1;
        } else {
            continue;
        }
        out.push((out.len() as i64, x, y));
    }
    let centres: Vec<(f64, f64)> = areas
        .iter()
        .filter_map(|a| {
            a.shape
                .bounding_boxes()
                .first()
                .map(|b| ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0))
        })
        .collect();
    while out.len() < n {
        let (x, y) = if rng.f64() < 0.7 {
            let (cx, cy) = centres[rng.below(centres.len())];
            let (dx, dy) = m_to_deg(30_000.0, cy);
            (cx + rng.range(-dx, dx), cy + rng.range(-dy, dy))
        } else {
            let bb = countries[rng.below(countries.len())].shape.bounding_boxes()[0];
            (rng.range(bb[0], bb[2]), rng.range(bb[1], bb[3]))
        };
        if (-180.0..180.0).contains(&x) && (-90.0..=90.0).contains(&y) {
            out.push((out.len() as i64, x, y));
        }
    }
    out
}

/// Query points for point → areas: tracked positions, so most fall on land near areas.
pub fn query_points(positions: &[(i64, f64, f64)], n: usize) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(99);
    (0..n)
        .map(|_| {
            let (_, x, y) = positions[rng.below(positions.len())];
            (x, y)
        })
        .collect()
}

/// Moves for the update benchmark: a random subject walks 0–300 m, 5–50 m accuracy.
pub fn moves(positions: &[(i64, f64, f64)], n: usize) -> Vec<(i64, f64, f64, f64)> {
    let mut rng = Rng::new(2024);
    (0..n)
        .map(|_| {
            let (id, x, y) = positions[rng.below(positions.len())];
            let (dx, dy) = m_to_deg(300.0, y);
            let nx = (x + rng.range(-dx, dx)).clamp(-179.999, 179.999);
            let ny = (y + rng.range(-dy, dy)).clamp(-89.999, 89.999);
            (id, nx, ny, rng.range(5.0, 50.0))
        })
        .collect()
}

/// Steps for the update benchmarks: a random subject, a step of up to 300 m (as degrees), and
/// an accuracy of 5–50 m. Applied to the subject's current position.
pub fn deltas(positions: &[(i64, f64, f64)], n: usize) -> Vec<(i64, f64, f64, f64)> {
    let mut rng = Rng::new(2025);
    (0..n)
        .map(|_| {
            let (id, _, y) = positions[rng.below(positions.len())];
            let (dx, dy) = m_to_deg(300.0, y);
            (
                id,
                rng.range(-dx, dx),
                rng.range(-dy, dy),
                rng.range(5.0, 50.0),
            )
        })
        .collect()
}

/// Everything, built once.
pub struct World {
    pub countries: Vec<Area>,
    pub areas: Vec<Area>,
    pub city: Area,
    pub positions: Vec<(i64, f64, f64)>,
}

impl World {
    pub fn build(n_positions: usize) -> Self {
        let countries = countries();
        let areas = security_areas(&countries, 10_000);
        let city = city();
        let positions = positions(&countries, &areas, &city, n_positions);
        Self {
            countries,
            areas,
            city,
            positions,
        }
    }

    pub fn kenya(&self) -> &Area {
        self.countries
            .iter()
            .find(|a| a.id == KENYA_ID)
            .expect("Kenya in the fixture")
    }

    /// All areas: countries, security areas and the city.
    pub fn all_areas(&self) -> Vec<Area> {
        let mut v = self.countries.clone();
        v.extend(self.areas.iter().cloned());
        v.push(self.city.clone());
        v
    }

    pub fn fixes(&self) -> impl Iterator<Item = (i64, Fix)> + '_ {
        self.positions.iter().map(|&(id, lon, lat)| {
            (
                id,
                Fix {
                    lon,
                    lat,
                    accuracy_m: Some(20.0),
                    at_ms: 0,
                },
            )
        })
    }
}
