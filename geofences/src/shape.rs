//! Shapes: validated polygons, multipolygons and geodesic circles, prepared for fast tests.
//!
//! A polygon is validated once and then *prepared*: its rings are unwrapped across the
//! antimeridian (see the crate README), a coarse grid marks the cells that no edge touches as
//! wholly inside or outside, and the edges are sorted into horizontal bands, so a
//! point-in-polygon test is one grid lookup, or else looks at the few edges of one band instead
//! of every vertex.
//!
//! Edges are straight lines in longitude/latitude (as in PostGIS `geometry` and RFC 7946), and a
//! point on a border counts as inside: for a life-safety alert, the person on the line is told.

use std::sync::Arc;

use geo::kernels::{Kernel, Orientation, RobustKernel};
use geo::{Coord, LineString, MultiPolygon, Polygon};
use geojson::{Geometry, GeometryValue, Position};
use rstar::{AABB, RTree, RTreeObject};

use crate::error::{AreaError, MAX_RADIUS_M, MAX_VERTICES};
use crate::geodesy::{self, DegBox, M_PER_DEG};

/// A validated area outline: polygons with holes, or a circle measured on the ellipsoid.
///
/// Cheap to clone (the prepared form is shared).
#[derive(Clone, Debug)]
pub struct Shape {
    /// What was given, kept verbatim for GeoJSON output.
    geometry: ShapeGeometry,
    /// The unwrapped, banded form used by every test.
    prepared: Arc<Prepared>,
}

/// The outline of a [`Shape`] as it was given.
#[derive(Clone, Debug, PartialEq)]
pub enum ShapeGeometry {
    /// One or more polygons, each an exterior ring and holes, in longitude/latitude degrees.
    Polygons(MultiPolygon<f64>),
    /// Every point whose WGS84 geodesic distance to the centre is at most `radius_m` metres.
    Circle {
        /// Centre longitude, degrees.
        lon: f64,
        /// Centre latitude, degrees.
        lat: f64,
        /// Radius in metres.
        radius_m: f64,
    },
}

/// One rectangle of a shape's footprint in [-180, 180]: what the R-trees store.
///
/// A point `(lon, lat)` inside `env` is tested against part `part` at `lon - offset`: the
/// offset (0 or -360) maps the folded longitude back into the part's unwrapped frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Piece {
    pub env: DegBox,
    pub part: u32,
    pub offset: f64,
}

#[derive(Debug)]
enum Prepared {
    Polygons(Vec<PreparedPolygon>),
    Circle { lon: f64, lat: f64, radius_m: f64 },
}

impl Shape {
    /// Validates and prepares a polygon given as geo types.
    pub fn from_polygon(polygon: Polygon<f64>) -> Result<Self, AreaError> {
        Self::from_multi_polygon(MultiPolygon(vec![polygon]))
    }

    /// Validates and prepares a multipolygon given as geo types.
    pub fn from_multi_polygon(mp: MultiPolygon<f64>) -> Result<Self, AreaError> {
        let raw: Vec<Vec<Vec<[f64; 2]>>> =
            mp.0.iter()
                .map(|p| {
                    std::iter::once(p.exterior())
                        .chain(p.interiors())
                        .map(|ring| ring.0.iter().map(|c| [c.x, c.y]).collect())
                        .collect()
                })
                .collect();
        let prepared = prepare_polygons(&raw)?;
        Ok(Self {
            geometry: ShapeGeometry::Polygons(mp),
            prepared: Arc::new(Prepared::Polygons(prepared)),
        })
    }

    /// A circle of `radius_m` metres (geodesic, WGS84) around `(lon, lat)`.
    pub fn circle(lon: f64, lat: f64, radius_m: f64) -> Result<Self, AreaError> {
        check_centre("longitude", lon, 180.0)?;
        check_centre("latitude", lat, 90.0)?;
        if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
            return Err(AreaError::BadRadius {
                radius_m,
                max: MAX_RADIUS_M,
            });
        }
        Ok(Self {
            geometry: ShapeGeometry::Circle { lon, lat, radius_m },
            prepared: Arc::new(Prepared::Circle { lon, lat, radius_m }),
        })
    }

    /// Validates a GeoJSON geometry: Polygon, MultiPolygon, or Point with `radius_m` (a circle).
    ///
    /// This is what the server calls on a polygon drawn for one alert.
    pub fn from_geometry(geometry: &Geometry, radius_m: Option<f64>) -> Result<Self, AreaError> {
        match &geometry.value {
            GeometryValue::Polygon { coordinates } => {
                Self::from_rings(&[positions_to_rings(0, coordinates)?])
            }
            GeometryValue::MultiPolygon { coordinates } => {
                let polys = coordinates
                    .iter()
                    .enumerate()
                    .map(|(i, p)| positions_to_rings(i, p))
                    .collect::<Result<Vec<_>, _>>()?;
                Self::from_rings(&polys)
            }
            GeometryValue::Point { coordinates } => {
                let radius_m = radius_m.ok_or(AreaError::MissingRadius)?;
                let c = coordinates.as_slice();
                if c.len() < 2 {
                    return Err(AreaError::BadCentre { len: c.len() });
                }
                Self::circle(c[0], c[1], radius_m)
            }
            other => Err(AreaError::UnsupportedGeometry(other.type_name())),
        }
    }

    /// Polygons given as `[polygon][ring][position] = [lon, lat]`, rings closed.
    fn from_rings(raw: &[Vec<Vec<[f64; 2]>>]) -> Result<Self, AreaError> {
        let prepared = prepare_polygons(raw)?;
        let mp = MultiPolygon(
            raw.iter()
                .map(|rings| {
                    let mut it = rings
                        .iter()
                        .map(|r| LineString(r.iter().map(|&[x, y]| Coord { x, y }).collect()));
                    let exterior = it.next().unwrap_or_else(|| LineString(Vec::new()));
                    Polygon::new(exterior, it.collect())
                })
                .collect(),
        );
        Ok(Self {
            geometry: ShapeGeometry::Polygons(mp),
            prepared: Arc::new(Prepared::Polygons(prepared)),
        })
    }

    /// The outline as given.
    pub fn geometry(&self) -> &ShapeGeometry {
        &self.geometry
    }

    /// The GeoJSON geometry (a circle is its centre Point; its radius is [`Shape::radius_m`]).
    pub fn to_geometry(&self) -> Geometry {
        match &self.geometry {
            ShapeGeometry::Circle { lon, lat, .. } => Geometry::new_point([*lon, *lat]),
            ShapeGeometry::Polygons(mp) => {
                let polygon = |p: &Polygon<f64>| -> Vec<Vec<Position>> {
                    std::iter::once(p.exterior())
                        .chain(p.interiors())
                        .map(|r| r.0.iter().map(|c| Position::from([c.x, c.y])).collect())
                        .collect()
                };
                if mp.0.len() == 1 {
                    Geometry::new(GeometryValue::Polygon {
                        coordinates: polygon(&mp.0[0]),
                    })
                } else {
                    Geometry::new(GeometryValue::MultiPolygon {
                        coordinates: mp.0.iter().map(polygon).collect(),
                    })
                }
            }
        }
    }

    /// The radius of a circle in metres; `None` for polygons.
    pub fn radius_m(&self) -> Option<f64> {
        match self.geometry {
            ShapeGeometry::Circle { radius_m, .. } => Some(radius_m),
            ShapeGeometry::Polygons(_) => None,
        }
    }

    /// Whether the two outlines share any point (an alert drawn over part of a followed area
    /// reaches its followers). A circle is compared as a 64-sided polygon inscribed in it, and
    /// outlines are taken in plain longitude/latitude, so shapes crossing the antimeridian may
    /// be missed: generous enough for "who follows somewhere under this alert".
    pub fn intersects(&self, other: &Shape) -> bool {
        use geo::Intersects;
        if let (
            ShapeGeometry::Circle { lon, lat, radius_m },
            ShapeGeometry::Circle {
                lon: lon2,
                lat: lat2,
                radius_m: r2,
            },
        ) = (&self.geometry, &other.geometry)
        {
            return geodesy::geodesic_m(*lon, *lat, *lon2, *lat2) <= radius_m + r2;
        }
        self.as_polygons().intersects(&other.as_polygons())
    }

    /// Boxes that any shape [`Shape::intersects`] must meet, so an R-tree of them finds every
    /// candidate: the box of the outline as `intersects` compares it (plain longitude and
    /// latitude, a circle's 64-sided polygon), and for a circle also its geodesic boxes
    /// (two circles are compared by distance, across the antimeridian too).
    pub(crate) fn overlap_boxes(&self) -> Vec<DegBox> {
        let outline = self.as_polygons();
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for c in outline.0.iter().flat_map(|p| p.exterior().0.iter()) {
            b = [b[0].min(c.x), b[1].min(c.y), b[2].max(c.x), b[3].max(c.y)];
        }
        let mut out = Vec::with_capacity(3);
        // A valid shape has an exterior ring; the guard keeps an empty box out of the tree.
        if b[0] <= b[2] && b[1] <= b[3] {
            out.push(b);
        }
        if let Prepared::Circle { .. } = &*self.prepared {
            out.extend(self.pieces().into_iter().map(|p| p.env));
        }
        out
    }

    fn as_polygons(&self) -> MultiPolygon<f64> {
        match &self.geometry {
            ShapeGeometry::Polygons(mp) => mp.clone(),
            ShapeGeometry::Circle { lon, lat, radius_m } => {
                const SIDES: u32 = 64;
                let m_per_deg_lon = (M_PER_DEG * lat.to_radians().cos()).max(1.0);
                let ring: Vec<Coord<f64>> = (0..=SIDES)
                    .map(|i| {
                        let a = f64::from(i % SIDES) * std::f64::consts::TAU / f64::from(SIDES);
                        Coord {
                            x: lon + radius_m * a.sin() / m_per_deg_lon,
                            y: (lat + radius_m * a.cos() / M_PER_DEG).clamp(-90.0, 90.0),
                        }
                    })
                    .collect();
                MultiPolygon(vec![Polygon::new(LineString(ring), Vec::new())])
            }
        }
    }

    /// Whether the point lies inside or on the border of the shape.
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        if !(lon.is_finite() && lat.is_finite()) {
            return false;
        }
        let lon = geodesy::normalize_lon(lon);
        self.pieces()
            .iter()
            .any(|p| in_box(&p.env, lon, lat) && self.piece_contains(p.part, p.offset, lon, lat))
    }

    /// Bounding boxes `[min_lon, min_lat, max_lon, max_lat]` covering the shape within
    /// [-180, 180]; a shape across the antimeridian has boxes on both sides.
    pub fn bounding_boxes(&self) -> Vec<[f64; 4]> {
        self.pieces().into_iter().map(|p| p.env).collect()
    }

    /// The footprint rectangles stored in R-trees.
    pub(crate) fn pieces(&self) -> Vec<Piece> {
        match &*self.prepared {
            Prepared::Circle { lon, lat, radius_m } => geodesy::boxes_around(*lon, *lat, *radius_m)
                .as_slice()
                .iter()
                .copied()
                .map(|env| Piece {
                    env,
                    part: 0,
                    offset: 0.0,
                })
                .collect(),
            Prepared::Polygons(parts) => {
                let mut out = Vec::with_capacity(parts.len());
                for (i, p) in parts.iter().enumerate() {
                    let [x0, y0, x1, y1] = p.bbox;
                    let part = i as u32;
                    out.push(Piece {
                        env: [x0, y0, x1.min(180.0), y1],
                        part,
                        offset: 0.0,
                    });
                    // Parts are normalised so that x0 is in [-180, 180); what lies east of
                    // 180 is found again 360° to the west.
                    if x1 > 180.0 {
                        out.push(Piece {
                            env: [(x0 - 360.0).max(-180.0), y0, x1 - 360.0, y1],
                            part,
                            offset: -360.0,
                        });
                    }
                }
                out
            }
        }
    }

    /// Exact test of one piece; `lon` is folded into [-180, 180).
    #[inline]
    pub(crate) fn piece_contains(&self, part: u32, offset: f64, lon: f64, lat: f64) -> bool {
        match &*self.prepared {
            Prepared::Circle {
                lon: clon,
                lat: clat,
                radius_m,
            } => geodesy::within_geodesic(*clon, *clat, *radius_m, lon, lat),
            Prepared::Polygons(parts) => parts
                .get(part as usize)
                .is_some_and(|p| p.contains(lon - offset, lat)),
        }
    }

    /// Whether some border of one piece lies within `margin_m` metres of the point.
    pub(crate) fn piece_border_within(
        &self,
        part: u32,
        offset: f64,
        lon: f64,
        lat: f64,
        margin_m: f64,
    ) -> bool {
        match &*self.prepared {
            Prepared::Circle {
                lon: clon,
                lat: clat,
                radius_m,
            } => {
                let h = geodesy::haversine_m(*clon, *clat, lon, lat);
                if (h - radius_m).abs() > margin_m + 0.01 * radius_m {
                    return false;
                }
                (geodesy::geodesic_m(*clon, *clat, lon, lat) - radius_m).abs() <= margin_m
            }
            Prepared::Polygons(parts) => parts
                .get(part as usize)
                .is_some_and(|p| p.border_within(lon - offset, lat, margin_m)),
        }
    }

    /// Whether a point can be found through more than one piece (several polygons, or a
    /// polygon stored twice across the antimeridian), so query results need deduplicating.
    pub(crate) fn is_multi_piece(&self) -> bool {
        match &*self.prepared {
            Prepared::Circle { .. } => false,
            Prepared::Polygons(parts) => parts.len() > 1 || parts.iter().any(|p| p.bbox[2] > 180.0),
        }
    }

    /// Number of positions over all rings (closing positions included).
    pub fn vertex_count(&self) -> usize {
        match &self.geometry {
            ShapeGeometry::Circle { .. } => 1,
            ShapeGeometry::Polygons(mp) => mp
                .0
                .iter()
                .map(|p| {
                    p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>()
                })
                .sum(),
        }
    }
}

impl PartialEq for Shape {
    fn eq(&self, other: &Self) -> bool {
        self.geometry == other.geometry
    }
}

#[inline]
pub(crate) fn in_box(b: &DegBox, x: f64, y: f64) -> bool {
    x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]
}

fn check_centre(axis: &'static str, value: f64, limit: f64) -> Result<(), AreaError> {
    if value.is_finite() && (-limit..=limit).contains(&value) {
        Ok(())
    } else {
        Err(AreaError::CentreOutOfRange {
            axis,
            value,
            min: -limit,
            max: limit,
        })
    }
}

fn positions_to_rings(
    polygon: usize,
    rings: &[Vec<Position>],
) -> Result<Vec<Vec<[f64; 2]>>, AreaError> {
    rings
        .iter()
        .enumerate()
        .map(|(ring, positions)| {
            positions
                .iter()
                .enumerate()
                .map(|(index, p)| match p.as_slice() {
                    [x, y, ..] => Ok([*x, *y]),
                    s => Err(AreaError::BadPosition {
                        polygon,
                        ring,
                        index,
                        len: s.len(),
                    }),
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Validation and preparation

fn prepare_polygons(raw: &[Vec<Vec<[f64; 2]>>]) -> Result<Vec<PreparedPolygon>, AreaError> {
    if raw.is_empty() {
        return Err(AreaError::Empty("multipolygon"));
    }
    let count: usize = raw.iter().flatten().map(Vec::len).sum();
    if count > MAX_VERTICES {
        return Err(AreaError::TooManyVertices {
            count,
            limit: MAX_VERTICES,
        });
    }
    raw.iter()
        .enumerate()
        .map(|(i, rings)| prepare_polygon(i, rings))
        .collect()
}

fn prepare_polygon(polygon: usize, rings: &[Vec<[f64; 2]>]) -> Result<PreparedPolygon, AreaError> {
    if rings.is_empty() {
        return Err(AreaError::Empty("polygon"));
    }
    let mut unwrapped: Vec<Vec<[f64; 2]>> = Vec::with_capacity(rings.len());
    for (ring, coords) in rings.iter().enumerate() {
        check_ring(polygon, ring, coords)?;
        unwrapped.push(unwrap_ring(polygon, ring, coords)?);
    }
    // Holes are unwrapped on their own; move each next to the exterior, then move the whole
    // polygon so that its exterior starts in [-180, 180).
    let ext_mid = mid_x(&unwrapped[0]);
    for hole in unwrapped.iter_mut().skip(1) {
        let dx = ((ext_mid - mid_x(hole)) / 360.0).round() * 360.0;
        shift(hole, dx);
    }
    let min_x = unwrapped[0]
        .iter()
        .map(|c| c[0])
        .fold(f64::INFINITY, f64::min);
    let dx = -((min_x + 180.0).div_euclid(360.0)) * 360.0;
    if dx != 0.0 {
        unwrapped.iter_mut().for_each(|r| shift(r, dx));
    }
    check_intersections(polygon, &unwrapped)?;
    let prepared = PreparedPolygon::new(&unwrapped);
    check_holes_inside(polygon, &unwrapped)?;
    Ok(prepared)
}

fn mid_x(ring: &[[f64; 2]]) -> f64 {
    let (lo, hi) = ring
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(c[0]), hi.max(c[0]))
        });
    (lo + hi) / 2.0
}

fn shift(ring: &mut [[f64; 2]], dx: f64) {
    ring.iter_mut().for_each(|c| c[0] += dx);
}

/// Numbers, ranges, closure and corner count of one ring as given.
fn check_ring(polygon: usize, ring: usize, coords: &[[f64; 2]]) -> Result<(), AreaError> {
    for (index, &[x, y]) in coords.iter().enumerate() {
        for (axis, value, limit) in [("longitude", x, 180.0), ("latitude", y, 90.0)] {
            if !value.is_finite() {
                return Err(AreaError::NotFinite {
                    polygon,
                    ring,
                    index,
                    axis,
                    value,
                });
            }
            if !(-limit..=limit).contains(&value) {
                return Err(AreaError::OutOfRange {
                    polygon,
                    ring,
                    index,
                    axis,
                    value,
                    min: -limit,
                    max: limit,
                });
            }
        }
    }
    let distinct = distinct_corners(coords);
    if distinct < 3 {
        return Err(AreaError::TooFewPoints {
            polygon,
            ring,
            distinct,
        });
    }
    let (first, last) = (coords[0], coords[coords.len() - 1]);
    if first != last {
        return Err(AreaError::RingNotClosed {
            polygon,
            ring,
            first_lon: first[0],
            first_lat: first[1],
            last_lon: last[0],
            last_lat: last[1],
        });
    }
    Ok(())
}

/// Corners after dropping repeated consecutive positions and the closing one.
fn distinct_corners(coords: &[[f64; 2]]) -> usize {
    let mut n = 0;
    let mut prev: Option<[f64; 2]> = None;
    for &c in coords {
        if prev != Some(c) {
            n += 1;
            prev = Some(c);
        }
    }
    if n > 1 && coords.first() == coords.last() {
        n -= 1;
    }
    n
}

/// Makes a ring's longitudes continuous, so a ring across the antimeridian becomes one plain
/// ring in an unwrapped frame (e.g. 178° … 182°) instead of a band around the world.
///
/// Rule: each step between consecutive positions is taken the short way round (|Δlon| ≤ 180°).
/// If the steps add up to a full turn, the ring circles a pole (Antarctica's coast does): it
/// is closed through the pole on the side of its mean latitude.
fn unwrap_ring(
    polygon: usize,
    ring: usize,
    coords: &[[f64; 2]],
) -> Result<Vec<[f64; 2]>, AreaError> {
    // Whole turns are counted as integers, so equal inputs unwrap to equal outputs and a
    // closed ring stays exactly closed.
    let mut out: Vec<[f64; 2]> = Vec::with_capacity(coords.len() + 2);
    let mut turns: i64 = 0;
    for (k, &[lon, lat]) in coords.iter().enumerate() {
        if k > 0 {
            let d = lon - coords[k - 1][0];
            if d > 180.0 {
                turns -= 1;
            } else if d < -180.0 {
                turns += 1;
            }
        }
        let c = [lon + 360.0 * turns as f64, lat];
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    let (first, last) = (out[0], out[out.len() - 1]);
    match turns {
        0 => Ok(out),
        1 | -1 => {
            let mean_lat = out.iter().map(|c| c[1]).sum::<f64>() / out.len() as f64;
            let pole = if mean_lat < 0.0 { -90.0 } else { 90.0 };
            out.push([last[0], pole]);
            out.push([first[0], pole]);
            out.push(first);
            Ok(out)
        }
        _ => Err(AreaError::WindsAroundGlobe {
            polygon,
            ring,
            turns: turns.abs(),
        }),
    }
}

#[inline]
fn orient(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> i8 {
    match <RobustKernel as Kernel<f64>>::orient2d(
        Coord { x: a[0], y: a[1] },
        Coord { x: b[0], y: b[1] },
        Coord { x: c[0], y: c[1] },
    ) {
        Orientation::CounterClockwise => 1,
        Orientation::Clockwise => -1,
        Orientation::Collinear => 0,
    }
}

/// Whether collinear `p` lies within the bounding box of segment a–b.
#[inline]
fn within_span(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

/// How two segments meet.
#[derive(Debug, PartialEq)]
enum Meet {
    None,
    /// At a single point where one segment ends (a touch).
    Touch([f64; 2]),
    /// Interiors cross at a single point.
    Cross([f64; 2]),
    /// Collinear with a shared stretch.
    Overlap([f64; 2]),
}

fn meet(a: [f64; 2], b: [f64; 2], c: [f64; 2], d: [f64; 2]) -> Meet {
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if o1 != 0 && o2 != 0 && o3 != 0 && o4 != 0 {
        if o1 != o2 && o3 != o4 {
            // Approximate crossing point, only for the message.
            let t = o_area(c, d, a) / (o_area(c, d, a) - o_area(c, d, b));
            return Meet::Cross([a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])]);
        }
        return Meet::None;
    }
    if o1 == 0 && o2 == 0 {
        // Collinear: compare along the longer axis.
        let axis = usize::from((b[1] - a[1]).abs() > (b[0] - a[0]).abs());
        let (lo1, hi1) = (a[axis].min(b[axis]), a[axis].max(b[axis]));
        let (lo2, hi2) = (c[axis].min(d[axis]), c[axis].max(d[axis]));
        let (lo, hi) = (lo1.max(lo2), hi1.min(hi2));
        if lo < hi {
            let at = [a, b, c, d]
                .into_iter()
                .find(|p| p[axis] == lo)
                .unwrap_or(a);
            return Meet::Overlap(at);
        }
        if lo == hi {
            let at = [a, b, c, d]
                .into_iter()
                .find(|p| p[axis] == lo)
                .unwrap_or(a);
            return Meet::Touch(at);
        }
        return Meet::None;
    }
    for (o, seg_a, seg_b, p) in [(o1, a, b, c), (o2, a, b, d), (o3, c, d, a), (o4, c, d, b)] {
        if o == 0 && within_span(seg_a, seg_b, p) {
            return Meet::Touch(p);
        }
    }
    Meet::None
}

fn o_area(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

/// One edge in the validation R-tree.
struct Seg {
    ring: usize,
    /// Index of the edge within its ring.
    idx: usize,
    a: [f64; 2],
    b: [f64; 2],
}

impl RTreeObject for Seg {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_corners(self.a, self.b)
    }
}

/// No ring crosses, touches or overlaps itself; no two rings cross or share a stretch.
/// An R-tree of edges keeps this near O(n log n) for country outlines.
fn check_intersections(polygon: usize, rings: &[Vec<[f64; 2]>]) -> Result<(), AreaError> {
    let mut segs = Vec::new();
    let mut ring_len = Vec::with_capacity(rings.len());
    for (ring, coords) in rings.iter().enumerate() {
        ring_len.push(coords.len().saturating_sub(1));
        for (idx, w) in coords.windows(2).enumerate() {
            segs.push(Seg {
                ring,
                idx,
                a: w[0],
                b: w[1],
            });
        }
    }
    let tree = RTree::bulk_load(segs);
    for s in tree.iter() {
        for t in tree.locate_in_envelope_intersecting(&s.envelope()) {
            if (t.ring, t.idx) <= (s.ring, s.idx) {
                continue;
            }
            let m = meet(s.a, s.b, t.a, t.b);
            if s.ring == t.ring {
                let n = ring_len[s.ring];
                let adjacent = t.idx == s.idx + 1 || (s.idx == 0 && t.idx + 1 == n);
                let bad = match m {
                    Meet::None => None,
                    Meet::Touch(_) if adjacent => None,
                    Meet::Touch(p) | Meet::Cross(p) | Meet::Overlap(p) => Some(p),
                };
                if let Some([lon, lat]) = bad {
                    return Err(AreaError::SelfIntersection {
                        polygon,
                        ring: s.ring,
                        lon,
                        lat,
                    });
                }
            } else if let Meet::Cross([lon, lat]) | Meet::Overlap([lon, lat]) = m {
                return Err(AreaError::RingsCross {
                    polygon,
                    ring: t.ring,
                    other: s.ring,
                    lon,
                    lat,
                });
            }
        }
    }
    Ok(())
}

/// Each hole lies inside the exterior: with no crossings, one vertex off the exterior's border
/// decides.
fn check_holes_inside(polygon: usize, rings: &[Vec<[f64; 2]>]) -> Result<(), AreaError> {
    if rings.len() < 2 {
        return Ok(());
    }
    let exterior = PreparedPolygon::new(&rings[..1]);
    for (ring, hole) in rings.iter().enumerate().skip(1) {
        let outside = hole
            .iter()
            .find(|c| !exterior.border_within(c[0], c[1], 0.0))
            .is_some_and(|c| !exterior.contains(c[0], c[1]));
        if outside {
            return Err(AreaError::HoleOutside { polygon, ring });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Prepared polygon: edges in horizontal bands

/// One polygon (exterior and holes) in its unwrapped frame, with its edges sorted into
/// horizontal bands. A point's band holds every edge that can cross the horizontal line through
/// it, so the even-odd crossing count over that band equals the count over all edges.
#[derive(Debug)]
struct PreparedPolygon {
    /// `[min_x, min_y, max_x, max_y]` in the unwrapped frame.
    bbox: DegBox,
    /// Edges as `[ax, ay, bx, by]`, all rings together.
    edges: Vec<[f64; 4]>,
    /// Bottom of band 0.
    y0: f64,
    /// Bands per degree of latitude.
    inv_h: f64,
    /// Number of bands.
    bands: usize,
    /// `band_edges[band_start[b]..band_start[b + 1]]` are the edges of band `b`.
    band_start: Vec<u32>,
    band_edges: Vec<u32>,
    /// A coarse grid over the bounding box: a cell that no edge's box touches is wholly
    /// inside or outside, so most points far from the border are answered without edges.
    grid: Grid,
}

/// Cell states of [`Grid`].
const CELL_OUT: u8 = 0;
const CELL_IN: u8 = 1;
const CELL_MIXED: u8 = 2;

/// Uniform grid over a polygon's bounding box.
///
/// Why it is exact: a point's cell is `floor((x - x0) * inv_w)` (and likewise in y), which is
/// monotonic in x, and an edge marks every cell from the cell of its box's minimum to the cell
/// of its maximum with that same function. So the set of points that map to an unmarked cell
/// contains no border point; it is a rectangle, hence all inside or all outside, and one of
/// its points (checked to map to it) decides which.
#[derive(Debug)]
struct Grid {
    x0: f64,
    y0: f64,
    inv_w: f64,
    inv_h: f64,
    nx: usize,
    ny: usize,
    cells: Vec<u8>,
}

impl Grid {
    #[inline]
    fn axis(v: f64, v0: f64, inv: f64, n: usize) -> usize {
        let c = ((v - v0) * inv).floor();
        if c <= 0.0 { 0 } else { (c as usize).min(n - 1) }
    }

    /// Whether a cell that the box `[x0, x1] × [y0, y1]` maps to holds an edge.
    fn any_mixed(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> bool {
        let (cx0, cx1) = (
            Self::axis(x0, self.x0, self.inv_w, self.nx),
            Self::axis(x1, self.x0, self.inv_w, self.nx),
        );
        let (cy0, cy1) = (
            Self::axis(y0, self.y0, self.inv_h, self.ny),
            Self::axis(y1, self.y0, self.inv_h, self.ny),
        );
        (cy0..=cy1)
            .any(|cy| self.cells[cy * self.nx + cx0..=cy * self.nx + cx1].contains(&CELL_MIXED))
    }

    #[inline]
    fn cell(&self, x: f64, y: f64) -> usize {
        Self::axis(y, self.y0, self.inv_h, self.ny) * self.nx
            + Self::axis(x, self.x0, self.inv_w, self.nx)
    }
}

impl PreparedPolygon {
    fn new(rings: &[Vec<[f64; 2]>]) -> Self {
        let mut edges = Vec::new();
        let mut bbox = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for ring in rings {
            for w in ring.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a != b {
                    edges.push([a[0], a[1], b[0], b[1]]);
                }
                bbox = [
                    bbox[0].min(a[0]),
                    bbox[1].min(a[1]),
                    bbox[2].max(a[0]),
                    bbox[3].max(a[1]),
                ];
            }
        }
        // About two edges per band keeps a test to a handful of edges; the cap bounds memory
        // for huge outlines.
        let bands = (edges.len() / 2).clamp(1, 1 << 15);
        let height = bbox[3] - bbox[1];
        let inv_h = if height > 0.0 {
            bands as f64 / height
        } else {
            0.0
        };
        let mut p = Self {
            bbox,
            edges,
            y0: bbox[1],
            inv_h,
            bands,
            band_start: Vec::new(),
            band_edges: Vec::new(),
            grid: Grid {
                x0: 0.0,
                y0: 0.0,
                inv_w: 0.0,
                inv_h: 0.0,
                nx: 1,
                ny: 1,
                cells: vec![CELL_MIXED],
            },
        };
        let mut counts = vec![0u32; bands + 1];
        for e in &p.edges {
            let (lo, hi) = p.band_range(e[1].min(e[3]), e[1].max(e[3]));
            for c in &mut counts[lo..=hi] {
                *c += 1;
            }
        }
        let mut start = Vec::with_capacity(bands + 1);
        let mut acc = 0u32;
        for c in &counts[..bands] {
            start.push(acc);
            acc += c;
        }
        start.push(acc);
        let mut fill = start.clone();
        let mut band_edges = vec![0u32; acc as usize];
        for (i, e) in p.edges.iter().enumerate() {
            let (lo, hi) = p.band_range(e[1].min(e[3]), e[1].max(e[3]));
            for f in &mut fill[lo..=hi] {
                band_edges[*f as usize] = i as u32;
                *f += 1;
            }
        }
        p.band_start = start;
        p.band_edges = band_edges;
        p.grid = p.build_grid();
        p
    }

    fn build_grid(&self) -> Grid {
        let [x0, y0, x1, y1] = self.bbox;
        let (w, h) = ((x1 - x0).max(1e-12), (y1 - y0).max(1e-12));
        // About sixteen cells per edge, shaped like the box; at most 2^16 cells.
        let cells = (self.edges.len() * 16).clamp(64, 1 << 16) as f64;
        let nx = ((cells * w / h).sqrt().round() as usize).clamp(1, 1 << 12);
        let ny = ((cells / nx as f64).round() as usize).clamp(1, 1 << 12);
        let mut g = Grid {
            x0,
            y0,
            inv_w: nx as f64 / w,
            inv_h: ny as f64 / h,
            nx,
            ny,
            cells: vec![CELL_OUT; nx * ny],
        };
        for e in &self.edges {
            let cx0 = Grid::axis(e[0].min(e[2]), g.x0, g.inv_w, nx);
            let cx1 = Grid::axis(e[0].max(e[2]), g.x0, g.inv_w, nx);
            let cy0 = Grid::axis(e[1].min(e[3]), g.y0, g.inv_h, ny);
            let cy1 = Grid::axis(e[1].max(e[3]), g.y0, g.inv_h, ny);
            for cy in cy0..=cy1 {
                g.cells[cy * nx + cx0..=cy * nx + cx1].fill(CELL_MIXED);
            }
        }
        for cy in 0..ny {
            for cx in 0..nx {
                let i = cy * nx + cx;
                if g.cells[i] == CELL_MIXED {
                    continue;
                }
                let x = x0 + (cx as f64 + 0.5) / g.inv_w;
                let y = y0 + (cy as f64 + 0.5) / g.inv_h;
                g.cells[i] = if g.cell(x, y) != i {
                    CELL_MIXED // too small to find a representative; test edges instead
                } else if self.contains_by_bands(x, y) {
                    CELL_IN
                } else {
                    CELL_OUT
                };
            }
        }
        g
    }

    /// The band of latitude `y`, clamped to the polygon. Monotonic in `y`, which is all the
    /// crossing count needs.
    #[inline]
    fn band(&self, y: f64) -> usize {
        let b = ((y - self.y0) * self.inv_h).floor();
        if b <= 0.0 {
            0
        } else {
            (b as usize).min(self.bands - 1)
        }
    }

    fn band_range(&self, lo: f64, hi: f64) -> (usize, usize) {
        (self.band(lo), self.band(hi))
    }

    #[inline]
    fn band_slice(&self, b: usize) -> &[u32] {
        let (s, e) = (self.band_start[b] as usize, self.band_start[b + 1] as usize);
        &self.band_edges[s..e]
    }

    /// Whether the point is inside or on the border: the grid when it knows, else the bands.
    #[inline]
    fn contains(&self, x: f64, y: f64) -> bool {
        if !in_box(&self.bbox, x, y) {
            return false;
        }
        match self.grid.cells[self.grid.cell(x, y)] {
            CELL_OUT => false,
            CELL_IN => true,
            _ => self.contains_by_bands(x, y),
        }
    }

    /// Even-odd crossing test with a ray towards +x; exact (robust orientation), border inside.
    fn contains_by_bands(&self, x: f64, y: f64) -> bool {
        if !in_box(&self.bbox, x, y) {
            return false;
        }
        let p = [x, y];
        let mut inside = false;
        for &i in self.band_slice(self.band(y)) {
            let [ax, ay, bx, by] = self.edges[i as usize];
            let (min_x, max_x) = if ax < bx { (ax, bx) } else { (bx, ax) };
            if (ay > y) != (by > y) {
                // The edge spans y (half-open, so a vertex on the ray counts once).
                if x < min_x {
                    inside = !inside;
                } else if x <= max_x {
                    let o = orient([ax, ay], [bx, by], p);
                    if o == 0 {
                        return true;
                    }
                    if (o > 0) == (by > ay) {
                        inside = !inside;
                    }
                }
            } else if x >= min_x
                && x <= max_x
                && y >= ay.min(by)
                && y <= ay.max(by)
                && orient([ax, ay], [bx, by], p) == 0
            {
                return true;
            }
        }
        inside
    }

    /// Whether an edge passes within `margin_m` metres of the point (a local equirectangular
    /// projection around the point: good to well under 1 % for margins of kilometres).
    fn border_within(&self, x: f64, y: f64, margin_m: f64) -> bool {
        let ky = M_PER_DEG;
        let kx = M_PER_DEG * y.to_radians().cos();
        let dlat = margin_m / ky * 1.01;
        let dlon = if kx > 1e-6 {
            margin_m / kx * 1.01
        } else {
            360.0
        };
        let b = &self.bbox;
        if x + dlon < b[0] || x - dlon > b[2] || y + dlat < b[1] || y - dlat > b[3] {
            return false;
        }
        if !self.grid.any_mixed(x - dlon, y - dlat, x + dlon, y + dlat) {
            return false; // no edge's box reaches any cell the margin box maps to
        }
        let m2 = margin_m * margin_m;
        let (lo, hi) = self.band_range(y - dlat, y + dlat);
        for band in lo..=hi {
            for &i in self.band_slice(band) {
                let [ax, ay, bx, by] = self.edges[i as usize];
                if ax.max(bx) < x - dlon
                    || ax.min(bx) > x + dlon
                    || ay.max(by) < y - dlat
                    || ay.min(by) > y + dlat
                {
                    continue;
                }
                if margin_m == 0.0 {
                    if within_span([ax, ay], [bx, by], [x, y])
                        && orient([ax, ay], [bx, by], [x, y]) == 0
                    {
                        return true;
                    }
                    continue;
                }
                // Point-segment distance in metres, point at the origin.
                let (ux, uy) = ((ax - x) * kx, (ay - y) * ky);
                let (vx, vy) = ((bx - x) * kx, (by - y) * ky);
                let (dx, dy) = (vx - ux, vy - uy);
                let len2 = dx * dx + dy * dy;
                let t = if len2 > 0.0 {
                    (-(ux * dx + uy * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (cx, cy) = (ux + t * dx, uy + t * dy);
                if cx * cx + cy * cy <= m2 {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<[f64; 2]> {
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    }

    #[test]
    fn intersection_of_polygons_and_circles() {
        let nairobi =
            Shape::from_rings(&[vec![square(36.6, -1.45, 37.1, -1.15)]]).expect("valid shape");
        let overlapping =
            Shape::from_rings(&[vec![square(37.0, -1.3, 37.5, -1.0)]]).expect("valid shape");
        let far = Shape::from_rings(&[vec![square(39.0, -4.2, 39.8, -3.9)]]).expect("valid shape");
        assert!(nairobi.intersects(&overlapping) && overlapping.intersects(&nairobi));
        assert!(!nairobi.intersects(&far));
        // A 5 km circle 3 km east of the square's edge reaches it; a 1 km one does not.
        let east = 37.1 + 3_000.0 / (M_PER_DEG * 1.3_f64.to_radians().cos());
        assert!(
            Shape::circle(east, -1.3, 5_000.0)
                .expect("valid shape")
                .intersects(&nairobi)
        );
        assert!(
            !Shape::circle(east, -1.3, 1_000.0)
                .expect("valid shape")
                .intersects(&nairobi)
        );
        // A circle wholly inside, and a polygon wholly inside a circle.
        assert!(
            Shape::circle(36.8, -1.3, 500.0)
                .expect("valid shape")
                .intersects(&nairobi)
        );
        assert!(nairobi.intersects(&Shape::circle(36.85, -1.3, 200_000.0).expect("valid shape")));
        let a = Shape::circle(36.8, -1.3, 1_000.0).expect("valid shape");
        assert!(a.intersects(&Shape::circle(36.8, -1.315, 800.0).expect("valid shape")));
        assert!(!a.intersects(&Shape::circle(36.8, -1.33, 800.0).expect("valid shape")));
    }

    #[test]
    fn square_with_hole_contains_border_not_hole() {
        let s = Shape::from_rings(&[vec![
            square(0.0, 0.0, 10.0, 10.0),
            square(4.0, 4.0, 6.0, 6.0),
        ]])
        .expect("valid");
        assert!(s.contains(1.0, 1.0));
        assert!(s.contains(0.0, 5.0), "outer border is inside");
        assert!(s.contains(4.0, 5.0), "hole border is inside");
        assert!(!s.contains(5.0, 5.0), "hole interior is outside");
        assert!(!s.contains(11.0, 5.0));
        assert!(!s.contains(f64::NAN, 5.0));
    }

    #[test]
    fn ring_across_antimeridian_is_unwrapped() {
        let ring = vec![
            [179.0, -1.0],
            [-179.0, -1.0],
            [-179.0, 1.0],
            [179.0, 1.0],
            [179.0, -1.0],
        ];
        let s = Shape::from_rings(&[vec![ring]]).expect("valid");
        assert!(s.contains(179.9, 0.0));
        assert!(s.contains(-179.9, 0.0));
        assert!(s.contains(180.0, 0.0));
        assert!(!s.contains(0.0, 0.0));
        assert!(!s.contains(178.9, 0.0));
        assert_eq!(s.bounding_boxes().len(), 2);
    }

    #[test]
    fn pole_ring_is_closed_through_the_pole() {
        let ring = vec![
            [-180.0, -70.0],
            [-60.0, -70.0],
            [60.0, -70.0],
            [180.0, -70.0],
        ];
        let mut closed = ring.clone();
        closed.push(ring[0]);
        // -180 and 180 are the same meridian: the ring winds once around the south pole.
        let s = Shape::from_rings(&[vec![closed]]).expect("valid");
        assert!(s.contains(0.0, -80.0));
        assert!(s.contains(170.0, -89.0));
        assert!(!s.contains(0.0, -60.0));
    }

    #[test]
    fn errors_name_the_problem() {
        let open = vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
        let e = Shape::from_rings(&[vec![square(0.0, 0.0, 1.0, 1.0)], vec![open]])
            .expect_err("open ring");
        assert_eq!(
            e.to_string(),
            "ring 0 of polygon 1 is not closed: it starts at (0, 0) and ends at (0, 1)"
        );
        let mut bad = square(0.0, 0.0, 1.0, 1.0);
        bad[2] = [1.0, 91.0];
        let e = Shape::from_rings(&[vec![bad]]).expect_err("latitude");
        assert_eq!(
            e.to_string(),
            "coordinate 2 of ring 0 of polygon 0: latitude 91 out of range [-90, 90]"
        );
        let bow = vec![[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]];
        let e = Shape::from_rings(&[vec![bow]]).expect_err("bow tie");
        assert_eq!(
            e.to_string(),
            "ring 0 of polygon 0 intersects itself near (1, 1)"
        );
        let e =
            Shape::from_rings(&[vec![vec![[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]]]).expect_err("few");
        assert!(
            matches!(e, AreaError::TooFewPoints { distinct: 2, .. }),
            "{e}"
        );
        let e = Shape::from_rings(&[vec![square(0.0, 0.0, 1.0, 1.0), square(2.0, 2.0, 3.0, 3.0)]])
            .expect_err("hole outside");
        assert!(matches!(e, AreaError::HoleOutside { ring: 1, .. }), "{e}");
        let e = Shape::from_rings(&[vec![square(0.0, 0.0, 2.0, 2.0), square(1.0, 1.0, 3.0, 3.0)]])
            .expect_err("rings cross");
        assert!(matches!(e, AreaError::RingsCross { .. }), "{e}");
        let mut nan = square(0.0, 0.0, 1.0, 1.0);
        nan[1][0] = f64::NAN;
        let e = Shape::from_rings(&[vec![nan]]).expect_err("nan");
        assert!(
            matches!(
                e,
                AreaError::NotFinite {
                    index: 1,
                    axis: "longitude",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn vertex_limit() {
        let n = MAX_VERTICES;
        let mut ring: Vec<[f64; 2]> = (0..n)
            .map(|i| {
                let a = i as f64 / n as f64 * std::f64::consts::TAU;
                [a.cos(), a.sin()]
            })
            .collect();
        ring.push(ring[0]);
        let e = Shape::from_rings(&[vec![ring]]).expect_err("too many");
        assert_eq!(
            e.to_string(),
            format!("polygon has {} vertices; the limit is {n}", n + 1)
        );
    }

    #[test]
    fn circle_is_geodesic() {
        let c = Shape::circle(36.8219, -1.2921, 1000.0).expect("circle");
        // 0.00904° of latitude is about 1000 m at the equator (110.57 km per degree).
        assert!(c.contains(36.8219, -1.2921 + 0.00903));
        assert!(!c.contains(36.8219, -1.2921 + 0.00906));
        assert!(Shape::circle(0.0, 0.0, -1.0).is_err());
        assert!(Shape::circle(0.0, 95.0, 1.0).is_err());
    }
}
