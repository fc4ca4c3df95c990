//! Distances in metres and conservative longitude/latitude boxes around a point.
//!
//! Exactness matters only at borders, so the fast spherical formula decides whenever it is
//! clearly on one side and the ellipsoidal (WGS84, Karney) distance decides the rest.

use geo::{Distance, Geodesic, Point};

/// Mean earth radius (IUGG), used by the spherical formulas.
pub(crate) const MEAN_RADIUS_M: f64 = 6_371_008.8;

/// Metres per degree along a great circle of the mean sphere.
pub(crate) const M_PER_DEG: f64 = MEAN_RADIUS_M * std::f64::consts::PI / 180.0;

/// The smallest radius of curvature of the WGS84 ellipsoid (meridional, at the equator).
/// Dividing a distance by it gives an angle at least as large as the true one, so boxes built
/// from it never miss a point.
const MIN_CURVATURE_RADIUS_M: f64 = 6_335_439.0;

/// Spherical and WGS84 distances differ by less than 0.6 % anywhere (the ratio of the mean
/// radius to the ellipsoid's radii of curvature); 1 % leaves room for rounding.
const SPHERE_TOLERANCE: f64 = 0.01;

/// Great-circle distance on the mean sphere, in metres.
pub(crate) fn haversine_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * MEAN_RADIUS_M * a.sqrt().min(1.0).asin()
}

/// WGS84 geodesic distance in metres (Karney's algorithm; about a microsecond).
pub(crate) fn geodesic_m(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    Geodesic.distance(Point::new(lon1, lat1), Point::new(lon2, lat2))
}

/// Whether the WGS84 geodesic distance from `(clon, clat)` to `(lon, lat)` is at most `radius_m`.
/// The spherical distance settles all but the points within 1 % of the circle's edge.
pub(crate) fn within_geodesic(clon: f64, clat: f64, radius_m: f64, lon: f64, lat: f64) -> bool {
    let h = haversine_m(clon, clat, lon, lat);
    if h < radius_m * (1.0 - SPHERE_TOLERANCE) {
        true
    } else if h > radius_m * (1.0 + SPHERE_TOLERANCE) {
        false
    } else {
        geodesic_m(clon, clat, lon, lat) <= radius_m
    }
}

/// A longitude/latitude box `[min_lon, min_lat, max_lon, max_lat]` with `min_lon <= max_lon`.
pub(crate) type DegBox = [f64; 4];

/// One or two boxes, without allocating (this is on every position update's path).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Boxes {
    boxes: [DegBox; 2],
    len: usize,
}

impl Boxes {
    pub(crate) fn one(b: DegBox) -> Self {
        Self {
            boxes: [b, b],
            len: 1,
        }
    }

    fn two(a: DegBox, b: DegBox) -> Self {
        Self {
            boxes: [a, b],
            len: 2,
        }
    }

    pub(crate) fn as_slice(&self) -> &[DegBox] {
        &self.boxes[..self.len]
    }
}

/// Boxes (one, or two when the antimeridian cuts it) that hold every point within `radius_m`
/// of `(lon, lat)` along the ellipsoid. Conservative: they may hold a little more.
pub(crate) fn boxes_around(lon: f64, lat: f64, radius_m: f64) -> Boxes {
    let delta = radius_m.max(0.0) / MIN_CURVATURE_RADIUS_M * 1.001; // angular radius, rad
    let dlat = delta.to_degrees() + 1e-9;
    let min_lat = (lat - dlat).max(-90.0);
    let max_lat = (lat + dlat).min(90.0);
    // Near a pole, or for a radius a quarter of the globe wide, the circle spans every longitude.
    let phi = lat.to_radians();
    let reaches_pole = lat + dlat >= 90.0 || lat - dlat <= -90.0;
    let ratio = if reaches_pole || delta >= std::f64::consts::FRAC_PI_2 {
        f64::INFINITY
    } else {
        delta.sin() / phi.cos()
    };
    if ratio.is_nan() || ratio >= 1.0 {
        return Boxes::one([-180.0, min_lat, 180.0, max_lat]);
    }
    let dlon = ratio.asin().to_degrees() * 1.001 + 1e-9;
    split_lon(lon - dlon, lon + dlon, min_lat, max_lat)
}

/// Boxes for a longitude span `[west, east]` (with `west <= east`, each within ±540°) folded
/// into [-180, 180].
pub(crate) fn split_lon(west: f64, east: f64, min_lat: f64, max_lat: f64) -> Boxes {
    if east - west >= 360.0 {
        return Boxes::one([-180.0, min_lat, 180.0, max_lat]);
    }
    let shift = if west < -180.0 {
        360.0
    } else if west > 180.0 {
        -360.0
    } else {
        0.0
    };
    let (w, e) = (west + shift, east + shift);
    if e <= 180.0 {
        Boxes::one([w, min_lat, e, max_lat])
    } else {
        Boxes::two(
            [w, min_lat, 180.0, max_lat],
            [-180.0, min_lat, e - 360.0, max_lat],
        )
    }
}

/// Longitude folded into [-180, 180).
pub(crate) fn normalize_lon(lon: f64) -> f64 {
    if (-180.0..180.0).contains(&lon) {
        lon
    } else {
        (lon + 180.0).rem_euclid(360.0) - 180.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_and_geodesic_agree_within_tolerance() {
        let pairs = [
            (36.82, -1.29, 39.66, -4.04),
            (0.0, 0.0, 0.0, 1.0),
            (0.0, 0.0, 1.0, 0.0),
            (179.9, 60.0, -179.9, 60.0),
            (10.0, 89.0, -170.0, 89.5),
        ];
        for (a, b, c, d) in pairs {
            let h = haversine_m(a, b, c, d);
            let g = geodesic_m(a, b, c, d);
            assert!((h - g).abs() / g < 0.006, "{h} vs {g}");
        }
    }

    #[test]
    fn boxes_cross_the_antimeridian() {
        let boxes = boxes_around(179.99, 0.0, 5_000.0);
        let boxes = boxes.as_slice();
        assert_eq!(boxes.len(), 2);
        assert!(boxes[1][0] == -180.0 && boxes[1][2] > -180.0);
        let polar = boxes_around(0.0, 89.99, 5_000.0);
        let polar = polar.as_slice();
        assert_eq!(polar, &[[-180.0, polar[0][1], 180.0, 90.0]]);
    }

    #[test]
    fn longitudes_fold() {
        assert_eq!(normalize_lon(180.0), -180.0);
        assert_eq!(normalize_lon(190.0), -170.0);
        assert_eq!(normalize_lon(-190.0), 170.0);
        assert_eq!(normalize_lon(12.5), 12.5);
    }
}
