//! Private on-device geofencing: a phone in location-less mode decides by itself whether its fix
//! lies inside the place an alert was sent to, so no position leaves the phone.
//!
//! The server hands the phone its alerts in force with their places
//! (`GET /api/v1/me/alert-areas`); [`AlertPlaces`] indexes them in an R-tree (the same engine
//! the server uses) and answers, for each fix, which alerts apply here, and which borders the
//! operating system should watch so that it wakes the app when the phone crosses one.

use std::collections::BTreeMap;

use vigil_geofences::{Area, AreaIndex, AreaKind, Shape, ShapeGeometry};
use vigil_protocol::{AlertAreas, Timestamp};

/// Regions iOS monitors for one app at most.
pub const IOS_REGION_LIMIT: usize = 18;
/// Geofences Android allows one app at most.
pub const ANDROID_GEOFENCE_LIMIT: usize = 90;

/// Where the phone stands with one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The fix lies inside one of the alert's places.
    Inside,
    /// The alert was sent to places, none of which holds the fix: it concerns the region the
    /// person follows, not where they are now.
    InRegion,
    /// The alert was not sent to a place (an organisation, a role, everyone): it applies
    /// wherever the phone is.
    Everywhere,
}

/// A circle the operating system can watch (iOS `CLCircularRegion`, Android `Geofence`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchRegion {
    /// The alert whose place this circle bounds.
    pub alert_id: i64,
    /// Centre latitude, degrees.
    pub lat: f64,
    /// Centre longitude, degrees.
    pub lon: f64,
    /// Radius in metres: the smallest circle around the centre that holds the place.
    pub radius_m: f64,
    /// Metres from the fix to the circle's edge (0 inside it): the nearest come first.
    pub distance_m: f64,
}

/// Why an alert's places could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// A geometry the spatial engine refuses.
    #[error("alert {alert_id}: place {index} is not a usable shape: {reason}")]
    Shape {
        /// The alert.
        alert_id: i64,
        /// Which of its places.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The phone's alerts in force and where each applies, indexed for checks on every fix.
#[derive(Debug, Default)]
pub struct AlertPlaces {
    index: AreaIndex,
    /// Index entry → the alert it belongs to.
    owner: BTreeMap<i64, i64>,
    /// Every alert in force with its expiry, spatial or not.
    alerts: BTreeMap<i64, (Timestamp, bool)>,
}

impl AlertPlaces {
    /// Indexes the server's list; an unusable place is an error naming it (the server checked
    /// it when the alert was sent, so this means a server and a phone that disagree).
    pub fn new(list: &[AlertAreas]) -> Result<Self, PlaceError> {
        let mut areas = Vec::new();
        let mut owner = BTreeMap::new();
        let mut alerts = BTreeMap::new();
        for a in list {
            alerts.insert(a.alert_id, (a.expires_at, !a.areas.is_empty()));
            for (index, place) in a.areas.iter().enumerate() {
                let failed = |reason: String| PlaceError::Shape {
                    alert_id: a.alert_id,
                    index,
                    reason,
                };
                let geometry: geojson::Geometry = serde_json::from_value(place.geometry.clone())
                    .map_err(|e| failed(e.to_string()))?;
                let shape = Shape::from_geometry(&geometry, place.radius_m)
                    .map_err(|e| failed(e.to_string()))?;
                let id = i64::try_from(areas.len()).unwrap_or(i64::MAX);
                owner.insert(id, a.alert_id);
                areas.push(Area {
                    id,
                    name: String::new(),
                    kind: AreaKind::AdHoc,
                    level: None,
                    parent: None,
                    valid_from: None,
                    valid_until: Some(a.expires_at.0),
                    shape,
                });
            }
        }
        Ok(AlertPlaces {
            index: AreaIndex::from_areas(areas),
            owner,
            alerts,
        })
    }

    /// How many alerts are in force.
    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    /// Whether no alert is in force.
    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }

    /// Where the fix at (`lat`, `lon`) stands with every alert in force at `now_ms`.
    pub fn placements(&self, lat: f64, lon: f64, now_ms: i64) -> BTreeMap<i64, Placement> {
        let mut out = self.in_force(now_ms);
        for entry in self.index.containing(lon, lat, now_ms) {
            if let Some(alert) = self.owner.get(&entry)
                && let Some(p) = out.get_mut(alert)
            {
                *p = Placement::Inside;
            }
        }
        out
    }

    /// Every alert in force at `now_ms`, for a phone whose position is not known: those sent to
    /// places are [`Placement::InRegion`], the others [`Placement::Everywhere`].
    pub fn in_force(&self, now_ms: i64) -> BTreeMap<i64, Placement> {
        self.alerts
            .iter()
            .filter(|(_, (expires, _))| expires.0 > now_ms)
            .map(|(id, (_, spatial))| {
                let p = if *spatial {
                    Placement::InRegion
                } else {
                    Placement::Everywhere
                };
                (*id, p)
            })
            .collect()
    }

    /// The alerts whose places hold the fix: the cheap question asked on every fix.
    pub fn inside(&self, lat: f64, lon: f64, now_ms: i64) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .index
            .containing(lon, lat, now_ms)
            .into_iter()
            .filter_map(|e| self.owner.get(&e).copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Circles around the places nearest the fix, at most `limit` (use [`IOS_REGION_LIMIT`] or
    /// [`ANDROID_GEOFENCE_LIMIT`]), nearest first, for the operating system to watch.
    pub fn watch_regions(&self, lat: f64, lon: f64, now_ms: i64, limit: usize) -> Vec<WatchRegion> {
        let mut regions: Vec<WatchRegion> = self
            .index
            .iter()
            .filter(|a| a.is_valid_at(now_ms))
            .filter_map(|a| {
                let alert_id = *self.owner.get(&a.id)?;
                let (clat, clon, radius_m) = bounding_circle(&a.shape)?;
                let distance_m = (haversine_m(lat, lon, clat, clon) - radius_m).max(0.0);
                Some(WatchRegion {
                    alert_id,
                    lat: clat,
                    lon: clon,
                    radius_m,
                    distance_m,
                })
            })
            .collect();
        regions.sort_by(|a, b| a.distance_m.total_cmp(&b.distance_m));
        regions.truncate(limit);
        regions
    }
}

/// A circle holding the shape: its bounding boxes' centre and the farthest corner.
fn bounding_circle(shape: &Shape) -> Option<(f64, f64, f64)> {
    // A circle is its own tightest bound: the OS then wakes the app at the real border.
    if let ShapeGeometry::Circle { lon, lat, radius_m } = shape.geometry() {
        return Some((*lat, *lon, *radius_m));
    }
    let boxes = shape.bounding_boxes();
    let (mut west, mut south, mut east, mut north) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for [w, s, e, n] in &boxes {
        west = west.min(*w);
        south = south.min(*s);
        east = east.max(*e);
        north = north.max(*n);
    }
    if boxes.is_empty() {
        return None;
    }
    let (clat, clon) = ((south + north) / 2.0, (west + east) / 2.0);
    let radius = [(south, west), (south, east), (north, west), (north, east)]
        .iter()
        .map(|(la, lo)| haversine_m(clat, clon, *la, *lo))
        .fold(0.0, f64::max);
    Some((clat, clon, radius))
}

/// Great-circle distance in metres.
fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_M: f64 = 6_371_008.8;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_M * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_protocol::AlertArea;

    fn square(alert_id: i64, lon0: f64) -> AlertAreas {
        AlertAreas {
            alert_id,
            expires_at: Timestamp(i64::MAX),
            reasons: vec!["following_area".into()],
            areas: vec![AlertArea {
                geometry: json!({"type": "Polygon", "coordinates": [[[lon0, 0.0], [lon0 + 0.1, 0.0],
                    [lon0 + 0.1, 0.1], [lon0, 0.1], [lon0, 0.0]]]}),
                radius_m: None,
            }],
        }
    }

    #[test]
    fn a_fix_is_inside_in_the_region_of_or_unconcerned_by_each_alert() {
        let circle = AlertAreas {
            alert_id: 3,
            expires_at: Timestamp(i64::MAX),
            reasons: vec![],
            areas: vec![AlertArea {
                geometry: json!({"type": "Point", "coordinates": [20.0, 0.0]}),
                radius_m: Some(1_000.0),
            }],
        };
        let everywhere = AlertAreas {
            alert_id: 4,
            expires_at: Timestamp(i64::MAX),
            reasons: vec!["organisation".into()],
            areas: vec![],
        };
        let expired = AlertAreas {
            expires_at: Timestamp(10),
            ..square(5, 10.0)
        };
        let places = AlertPlaces::new(&[
            square(1, 10.0),
            square(2, 11.0),
            circle,
            everywhere,
            expired,
        ])
        .expect("usable");
        let here = places.placements(0.05, 10.05, 1_000);
        assert_eq!(here.get(&1), Some(&Placement::Inside));
        assert_eq!(here.get(&2), Some(&Placement::InRegion));
        assert_eq!(here.get(&3), Some(&Placement::InRegion));
        assert_eq!(here.get(&4), Some(&Placement::Everywhere));
        assert_eq!(here.get(&5), None, "expired");
        assert_eq!(places.inside(0.001, 20.001, 1_000), vec![3]);
        assert!(places.inside(0.05, 30.0, 1_000).is_empty());
    }

    #[test]
    fn the_operating_system_watches_the_nearest_places_within_its_limit() {
        let list: Vec<AlertAreas> = (0..40).map(|i| square(i, f64::from(i as i32))).collect();
        let places = AlertPlaces::new(&list).expect("usable");
        let regions = places.watch_regions(0.05, 0.05, 0, IOS_REGION_LIMIT);
        assert_eq!(regions.len(), IOS_REGION_LIMIT);
        assert_eq!((regions[0].alert_id, regions[0].distance_m), (0, 0.0));
        assert_eq!(regions[1].alert_id, 1);
        assert!(
            regions
                .windows(2)
                .all(|w| w[0].distance_m <= w[1].distance_m)
        );
        // The circle holds the whole square: its corners are within the radius.
        let r = regions[0];
        assert!(haversine_m(r.lat, r.lon, 0.0, 0.0) <= r.radius_m + 1e-6);
    }

    #[test]
    fn a_place_the_engine_refuses_is_named() {
        let bad = AlertAreas {
            areas: vec![AlertArea {
                geometry: json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 1.0]]]}),
                radius_m: None,
            }],
            ..square(9, 0.0)
        };
        let err = AlertPlaces::new(&[bad]).expect_err("refused");
        assert!(err.to_string().starts_with("alert 9: place 0"), "{err}");
    }
}
