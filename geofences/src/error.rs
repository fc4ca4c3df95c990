//! Why an area or a shape was refused.

use thiserror::Error;

/// The largest number of positions a shape may hold, over all its rings and polygons.
/// Natural Earth's most detailed country (1:10m Canada) has about 70,000; a hand-drawn area has
/// tens. The limit bounds validation time and memory for one request.
pub const MAX_VERTICES: usize = 250_000;

/// The largest circle radius accepted, in metres (a quarter of the earth's circumference).
pub const MAX_RADIUS_M: f64 = 10_000_000.0;

/// An area or shape that cannot be used, naming the exact problem and where it is.
///
/// Polygons, rings and coordinates are numbered from 0 in the order of the GeoJSON; a
/// `Polygon` geometry is polygon 0.
#[derive(Clone, Debug, PartialEq, Error)]
#[non_exhaustive]
pub enum AreaError {
    /// A position is not `[longitude, latitude]`.
    #[error(
        "coordinate {index} of ring {ring} of polygon {polygon} has {len} numbers; expected [longitude, latitude]"
    )]
    BadPosition {
        polygon: usize,
        ring: usize,
        index: usize,
        len: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error(
        "coordinate {index} of ring {ring} of polygon {polygon}: {axis} is not a finite number ({value})"
    )]
    NotFinite {
        polygon: usize,
        ring: usize,
        index: usize,
        axis: &'static str,
        value: f64,
    },
    /// A longitude outside [-180, 180] or a latitude outside [-90, 90].
    #[error(
        "coordinate {index} of ring {ring} of polygon {polygon}: {axis} {value} out of range [{min}, {max}]"
    )]
    OutOfRange {
        polygon: usize,
        ring: usize,
        index: usize,
        axis: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    /// The first and last positions of a ring differ.
    #[error(
        "ring {ring} of polygon {polygon} is not closed: it starts at ({first_lon}, {first_lat}) and ends at ({last_lon}, {last_lat})"
    )]
    RingNotClosed {
        polygon: usize,
        ring: usize,
        first_lon: f64,
        first_lat: f64,
        last_lon: f64,
        last_lat: f64,
    },
    /// A ring with fewer than three distinct corners.
    #[error(
        "ring {ring} of polygon {polygon} has {distinct} distinct corners; a ring needs at least 3 (and 4 positions, the last repeating the first)"
    )]
    TooFewPoints {
        polygon: usize,
        ring: usize,
        distinct: usize,
    },
    /// Two edges of the same ring cross, touch or overlap.
    #[error("ring {ring} of polygon {polygon} intersects itself near ({lon}, {lat})")]
    SelfIntersection {
        polygon: usize,
        ring: usize,
        lon: f64,
        lat: f64,
    },
    /// Two rings of one polygon cross or share an edge (touching at single points is allowed).
    #[error("ring {ring} of polygon {polygon} crosses ring {other} near ({lon}, {lat})")]
    RingsCross {
        polygon: usize,
        ring: usize,
        other: usize,
        lon: f64,
        lat: f64,
    },
    /// A hole that is not inside its polygon's exterior ring.
    #[error("ring {ring} of polygon {polygon} is a hole outside the polygon's exterior ring")]
    HoleOutside { polygon: usize, ring: usize },
    /// A ring that winds around the globe more than once.
    #[error("ring {ring} of polygon {polygon} winds around the globe {turns} times")]
    WindsAroundGlobe {
        polygon: usize,
        ring: usize,
        turns: i64,
    },
    /// Too many positions in one shape.
    #[error("polygon has {count} vertices; the limit is {limit}")]
    TooManyVertices { count: usize, limit: usize },
    /// A polygon without rings, or a multipolygon without polygons.
    #[error("{0} has no coordinates")]
    Empty(&'static str),
    /// A circle's centre is not a valid position.
    #[error("circle centre: {axis} {value} out of range [{min}, {max}]")]
    CentreOutOfRange {
        axis: &'static str,
        value: f64,
        min: f64,
        max: f64,
    },
    /// A circle's centre that is not `[longitude, latitude]`.
    #[error("circle centre has {len} numbers; expected [longitude, latitude]")]
    BadCentre { len: usize },
    /// A circle radius that is not a number in (0, MAX_RADIUS_M].
    #[error("circle radius {radius_m} m is invalid; expected a number of metres in (0, {max}]")]
    BadRadius { radius_m: f64, max: f64 },
    /// A Point geometry without a `radius_m` property.
    #[error("a Point geometry is a circle and needs a numeric `radius_m` property (metres)")]
    MissingRadius,
    /// A geometry type other than Polygon, MultiPolygon or Point.
    #[error(
        "unsupported geometry type {0}; expected Polygon, MultiPolygon, or Point with `radius_m`"
    )]
    UnsupportedGeometry(&'static str),
    /// A feature without geometry.
    #[error("the feature has no geometry")]
    MissingGeometry,
    /// A required property is absent.
    #[error("property `{0}` is missing")]
    MissingProperty(&'static str),
    /// A property with the wrong type or value.
    #[error("property `{name}`: {problem}")]
    BadProperty { name: &'static str, problem: String },
    /// A validity window that ends before it starts.
    #[error("valid_until ({until}) is not after valid_from ({from})")]
    EmptyWindow { from: i64, until: i64 },
}
