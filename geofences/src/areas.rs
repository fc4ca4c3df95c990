//! The area index: which areas contain a point.

use std::fmt;
use std::ops::ControlFlow;

use rstar::{AABB, RTree, RTreeObject};

use crate::AreaId;
use crate::area::{Area, window_contains};
use crate::geodesy::{self, DegBox};
use crate::hash::IdMap;
use crate::level::SecurityLevel;
use crate::shape::{Piece, Shape};

/// One R-tree entry: a piece of an area's footprint, with what a query needs to decide
/// without looking the area up.
#[derive(Clone, Debug)]
pub(crate) struct AreaEntry {
    pub id: AreaId,
    pub piece: Piece,
    pub level: Option<SecurityLevel>,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    /// Shared with the area (an `Arc` inside).
    pub shape: Shape,
}

impl AreaEntry {
    #[inline]
    pub fn valid_at(&self, at_ms: i64) -> bool {
        window_contains(self.valid_from, self.valid_until, at_ms)
    }

    /// Exact test; `lon` folded into [-180, 180).
    #[inline]
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        self.shape
            .piece_contains(self.piece.part, self.piece.offset, lon, lat)
    }

    #[inline]
    pub fn border_within(&self, lon: f64, lat: f64, margin_m: f64) -> bool {
        self.shape
            .piece_border_within(self.piece.part, self.piece.offset, lon, lat, margin_m)
    }
}

impl PartialEq for AreaEntry {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.piece == other.piece
    }
}

impl RTreeObject for AreaEntry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        let [x0, y0, x1, y1] = self.piece.env;
        AABB::from_corners([x0, y0], [x1, y1])
    }
}

/// One entry of the overlap R-tree: a box that every shape intersecting the area meets
/// (see [`Shape::intersects`]).
#[derive(Clone, Copy, Debug, PartialEq)]
struct OverlapEntry {
    id: AreaId,
    env: DegBox,
}

impl RTreeObject for OverlapEntry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_corners([self.env[0], self.env[1]], [self.env[2], self.env[3]])
    }
}

fn overlap_entries(area: &Area) -> impl Iterator<Item = OverlapEntry> + '_ {
    area.shape
        .overlap_boxes()
        .into_iter()
        .map(move |env| OverlapEntry { id: area.id, env })
}

fn entries(area: &Area) -> impl Iterator<Item = AreaEntry> + '_ {
    area.shape.pieces().into_iter().map(move |piece| AreaEntry {
        id: area.id,
        piece,
        level: area.level,
        valid_from: area.valid_from,
        valid_until: area.valid_until,
        shape: area.shape.clone(),
    })
}

/// All areas, with an R-tree of their bounding boxes for "which areas contain this point".
pub struct AreaIndex {
    /// The areas by id.
    areas: IdMap<AreaId, Area>,
    /// Bounding boxes of every piece of every area (two per piece across the antimeridian).
    tree: RTree<AreaEntry>,
    /// Boxes of the outlines as [`Shape::intersects`] compares them: which areas a shape
    /// may overlap.
    overlaps: RTree<OverlapEntry>,
}

impl fmt::Debug for AreaIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AreaIndex")
            .field("areas", &self.areas.len())
            .field("pieces", &self.tree.size())
            .field("overlap_boxes", &self.overlaps.size())
            .finish()
    }
}

impl Default for AreaIndex {
    fn default() -> Self {
        Self {
            areas: IdMap::default(),
            tree: RTree::new(),
            overlaps: RTree::new(),
        }
    }
}

impl AreaIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index in one go (bulk-loaded R-tree: faster to build and to query).
    /// A later area with the same id replaces an earlier one.
    pub fn from_areas(areas: impl IntoIterator<Item = Area>) -> Self {
        let mut map: IdMap<AreaId, Area> = IdMap::default();
        for a in areas {
            map.insert(a.id, a);
        }
        let tree = RTree::bulk_load(map.values().flat_map(entries).collect());
        let overlaps = RTree::bulk_load(map.values().flat_map(overlap_entries).collect());
        Self {
            areas: map,
            tree,
            overlaps,
        }
    }

    /// Adds or replaces an area; returns the one it replaced.
    pub fn upsert(&mut self, area: Area) -> Option<Area> {
        let old = self.remove(area.id);
        for e in entries(&area) {
            self.tree.insert(e);
        }
        for e in overlap_entries(&area) {
            self.overlaps.insert(e);
        }
        self.areas.insert(area.id, area);
        old
    }

    /// Removes an area.
    pub fn remove(&mut self, id: AreaId) -> Option<Area> {
        let old = self.areas.remove(&id)?;
        for e in entries(&old) {
            self.tree.remove(&e);
        }
        for e in overlap_entries(&old) {
            self.overlaps.remove(&e);
        }
        Some(old)
    }

    /// The area with this id.
    pub fn get(&self, id: AreaId) -> Option<&Area> {
        self.areas.get(&id)
    }

    /// Number of areas.
    pub fn len(&self) -> usize {
        self.areas.len()
    }

    /// Whether there are no areas.
    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// Every area, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Area> {
        self.areas.values()
    }

    /// Ids of the areas valid at `at_ms` that contain the point (border included), ascending.
    /// An invalid point is in no area.
    pub fn containing(&self, lon: f64, lat: f64, at_ms: i64) -> Vec<AreaId> {
        let mut out = Vec::new();
        self.for_each_containing(lon, lat, at_ms, |e| out.push(e.id));
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Ids of the areas whose outline shares a point with `shape` by [`Shape::intersects`]
    /// (`shape.intersects(&area.shape)`), ascending: the areas under an alert drawn as `shape`.
    /// Ignores validity windows. Only the areas whose boxes meet the shape's are tested
    /// exactly, so the cost follows the areas nearby, not all of them.
    pub fn intersecting(&self, shape: &Shape) -> Vec<AreaId> {
        let mut candidates = Vec::new();
        for b in shape.overlap_boxes() {
            let env = AABB::from_corners([b[0], b[1]], [b[2], b[3]]);
            let _ = self
                .overlaps
                .locate_in_envelope_intersecting_int(&env, |e| {
                    candidates.push(e.id);
                    ControlFlow::<()>::Continue(())
                });
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.retain(|id| {
            self.areas
                .get(id)
                .is_some_and(|a| shape.intersects(&a.shape))
        });
        candidates
    }

    /// The highest security level among the areas valid at `at_ms` that contain the point:
    /// the UN's rule for the level that applies where several areas overlap.
    pub fn effective_level(&self, lon: f64, lat: f64, at_ms: i64) -> Option<SecurityLevel> {
        let mut best = None;
        self.for_each_containing(lon, lat, at_ms, |e| best = best.max(e.level));
        best
    }

    fn for_each_containing(&self, lon: f64, lat: f64, at_ms: i64, mut f: impl FnMut(&AreaEntry)) {
        if !(lon.is_finite() && lat.is_finite()) {
            return;
        }
        let lon = geodesy::normalize_lon(lon);
        let point = AABB::from_point([lon, lat]);
        let _ = self.tree.locate_in_envelope_intersecting_int(&point, |e| {
            if e.valid_at(at_ms) && e.contains(lon, lat) {
                f(e);
            }
            ControlFlow::<()>::Continue(())
        });
    }

    /// Every entry whose box meets `b`.
    pub(crate) fn for_each_entry_in(&self, b: &DegBox, mut f: impl FnMut(&AreaEntry)) {
        let env = AABB::from_corners([b[0], b[1]], [b[2], b[3]]);
        let _ = self.tree.locate_in_envelope_intersecting_int(&env, |e| {
            f(e);
            ControlFlow::<()>::Continue(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::level::AreaKind;
    use geo::polygon;

    fn area(id: AreaId, level: i64, x0: f64, y0: f64, x1: f64, y1: f64) -> Area {
        let shape = Shape::from_polygon(
            polygon![(x: x0, y: y0), (x: x1, y: y0), (x: x1, y: y1), (x: x0, y: y1)],
        )
        .expect("valid square");
        Area {
            id,
            name: format!("area {id}"),
            kind: AreaKind::SecurityArea,
            level: SecurityLevel::try_from(level).ok(),
            parent: None,
            valid_from: None,
            valid_until: None,
            shape,
        }
    }

    #[test]
    fn nested_areas_and_effective_level() {
        let mut idx = AreaIndex::from_areas([
            area(1, 2, 0.0, 0.0, 10.0, 10.0),
            area(2, 5, 2.0, 2.0, 4.0, 4.0),
        ]);
        assert_eq!(idx.containing(3.0, 3.0, 0), vec![1, 2]);
        assert_eq!(idx.effective_level(3.0, 3.0, 0), Some(SecurityLevel::High));
        assert_eq!(idx.effective_level(8.0, 8.0, 0), Some(SecurityLevel::Low));
        assert_eq!(idx.effective_level(18.0, 8.0, 0), None);
        let mut timed = area(3, 6, 7.0, 7.0, 9.0, 9.0);
        timed.valid_from = Some(100);
        timed.valid_until = Some(200);
        idx.upsert(timed);
        assert_eq!(idx.containing(8.0, 8.0, 99), vec![1]);
        assert_eq!(idx.containing(8.0, 8.0, 100), vec![1, 3]);
        assert_eq!(idx.containing(8.0, 8.0, 200), vec![1]);
        assert!(idx.remove(2).is_some());
        assert_eq!(idx.containing(3.0, 3.0, 0), vec![1]);
        assert_eq!(idx.len(), 2);
        assert!(idx.containing(f64::NAN, 3.0, 0).is_empty());
    }
}
