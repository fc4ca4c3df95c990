//! Vigil's spatial engine: security areas, tracked positions and geofence transitions.
//!
//! A pure library — no I/O, no async — that a server node holds in memory. It decides who
//! receives a life-safety alert, so it is exact at borders and fast at the scale of a whole
//! organisation in a crisis.
//!
//! # Layout
//!
//! * [`level`] — [`SecurityLevel`] (UN levels 1–6) and [`AreaKind`].
//! * [`shape`] — [`Shape`]: validated polygons, multipolygons (with holes) and geodesic circles,
//!   prepared for fast point-in-polygon tests; [`AreaError`] says what is wrong with one.
//! * [`area`] — [`Area`]: a shape with id, name, kind, level, parent and validity window, and
//!   its GeoJSON form.
//! * [`areas`] — [`AreaIndex`]: an R-tree of areas; which areas contain a point, and the
//!   effective security level there.
//! * [`positions`] — [`PositionIndex`]: the latest position of every subject, in grid buckets
//!   under an R-tree; who is inside a shape, a box, or nearest to a point.
//! * [`tracker`] — [`Tracker`]: both indexes plus memberships; a fix returns the areas entered
//!   and left, with hysteresis at borders. [`Tracker::prepare`] and [`Tracker::apply`] split
//!   a run of fixes into the geometry (shared borrow) and the bookkeeping (exclusive one).
//!
//! # Conventions
//!
//! Coordinates are longitude/latitude degrees (WGS84, GeoJSON order). Polygon edges are
//! straight lines in longitude/latitude, as in PostGIS `geometry`. A point on a border is
//! inside. Circles and distances are in metres along the ellipsoid. Areas may cross the
//! antimeridian (each ring is unwrapped so its longitudes are continuous; see [`shape`]).
//! Times are Unix milliseconds.

pub mod area;
pub mod areas;
pub mod error;
mod geodesy;
mod hash;
pub mod level;
pub mod positions;
pub mod shape;
pub mod tracker;

pub use area::Area;
pub use areas::AreaIndex;
pub use error::{AreaError, MAX_RADIUS_M, MAX_VERTICES};
pub use level::{AreaKind, InvalidSecurityLevel, SecurityLevel};
pub use positions::{InvalidPosition, PositionIndex};
pub use shape::{Shape, ShapeGeometry};
pub use tracker::{Fix, MAX_MARGIN_M, PreparedFixes, Tracker, Transition, Transitions};

/// An area's id: the server's database id.
pub type AreaId = i64;

/// A tracked subject's id (a person or an asset): the server's database id.
pub type SubjectId = i64;
