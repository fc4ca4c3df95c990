//! The position index: where every tracked subject is, and who is inside a shape.
//!
//! # Layout
//!
//! A million phones report every few seconds, so a move must be cheap. Positions are kept in
//! *buckets*, one per grid cell of [`CELL_DEG`] degrees (about 5.5 km), and the R-tree indexes
//! the buckets, not the points. A move inside its cell rewrites the point in place; a move to
//! another cell is a swap-remove and a push, and touches the R-tree only when a cell empties
//! for the first time. Queries take the R-tree's buckets that meet the query's boxes, scan their points
//! (stored contiguously, so the scan is fast), and test each point exactly.

use std::fmt;
use std::ops::ControlFlow;

use rstar::{AABB, RTree, RTreeObject};

use crate::areas::AreaIndex;
use crate::geodesy::{self, DegBox};
use crate::hash::IdMap;
use crate::shape::{Shape, in_box};
use crate::{AreaId, SubjectId};

/// Side of a bucket's cell, in degrees.
pub const CELL_DEG: f64 = 0.05;

/// A position that is not a longitude in [-180, 180] and a latitude in [-90, 90].
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
#[error("position ({lon}, {lat}) is not a longitude in [-180, 180] and a latitude in [-90, 90]")]
pub struct InvalidPosition {
    /// The longitude given.
    pub lon: f64,
    /// The latitude given.
    pub lat: f64,
}

pub(crate) fn check_position(lon: f64, lat: f64) -> Result<(f64, f64), InvalidPosition> {
    if lon.is_finite()
        && lat.is_finite()
        && (-180.0..=180.0).contains(&lon)
        && (-90.0..=90.0).contains(&lat)
    {
        Ok((geodesy::normalize_lon(lon), lat))
    } else {
        Err(InvalidPosition { lon, lat })
    }
}

/// The cell of a (valid, folded) position, packed into one integer.
#[inline]
fn cell_key(lon: f64, lat: f64) -> i64 {
    let kx = (lon / CELL_DEG).floor() as i64;
    let ky = (lat / CELL_DEG).floor() as i64;
    kx * 8192 + ky
}

/// The subjects of one cell, points and ids side by side.
#[derive(Clone, Debug, Default)]
struct Bucket {
    key: i64,
    ids: Vec<SubjectId>,
    pts: Vec<[f64; 2]>,
}

/// What the R-tree stores: a non-empty bucket and its cell's box.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BucketEntry {
    bucket: u32,
    env: DegBox,
}

impl RTreeObject for BucketEntry {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_corners([self.env[0], self.env[1]], [self.env[2], self.env[3]])
    }
}

impl BucketEntry {
    fn new(bucket: u32, key: i64) -> Self {
        let (kx, ky) = (key.div_euclid(8192), key.rem_euclid(8192));
        let ky = if ky >= 4096 { ky - 8192 } else { ky };
        let kx = if key.rem_euclid(8192) >= 4096 {
            kx + 1
        } else {
            kx
        };
        // A hair of padding: `floor(lon / CELL_DEG)` may round a point just outside the
        // cell's computed edges. Points are tested exactly, so padding costs nothing.
        const PAD: f64 = 1e-9;
        Self {
            bucket,
            env: [
                kx as f64 * CELL_DEG - PAD,
                ky as f64 * CELL_DEG - PAD,
                (kx + 1) as f64 * CELL_DEG + PAD,
                (ky + 1) as f64 * CELL_DEG + PAD,
            ],
        }
    }
}

/// Latest position of every tracked subject: an R-tree of grid buckets of points.
#[derive(Default)]
pub struct PositionIndex {
    /// Boxes of the non-empty buckets.
    tree: RTree<BucketEntry>,
    /// Bucket arena, one per cell ever occupied.
    buckets: Vec<Bucket>,
    /// Cell key → bucket.
    by_key: IdMap<i64, u32>,
    /// Subject → (bucket, slot in the bucket).
    by_id: IdMap<SubjectId, (u32, u32)>,
}

impl fmt::Debug for PositionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PositionIndex")
            .field("subjects", &self.by_id.len())
            .field("buckets", &self.by_key.len())
            .finish()
    }
}

impl PositionIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index in one go, with a bulk-loaded R-tree. Invalid positions are skipped;
    /// a later position for the same subject wins.
    pub fn bulk_load(positions: impl IntoIterator<Item = (SubjectId, f64, f64)>) -> Self {
        let mut latest: IdMap<SubjectId, [f64; 2]> = IdMap::default();
        for (id, lon, lat) in positions {
            if let Ok((lon, lat)) = check_position(lon, lat) {
                latest.insert(id, [lon, lat]);
            }
        }
        let mut idx = Self::default();
        for (id, at) in latest {
            idx.push(id, at, false);
        }
        let entries = idx
            .by_key
            .iter()
            .map(|(&key, &b)| BucketEntry::new(b, key))
            .collect();
        idx.tree = RTree::bulk_load(entries);
        idx
    }

    /// Adds a subject to its cell's bucket, creating the bucket (and, if `index`, its
    /// R-tree entry) on the cell's first visit.
    fn push(&mut self, subject: SubjectId, at: [f64; 2], index: bool) {
        let key = cell_key(at[0], at[1]);
        let b = match self.by_key.get(&key) {
            Some(&b) => b,
            None => {
                self.buckets.push(Bucket::default());
                let b = (self.buckets.len() - 1) as u32;
                self.buckets[b as usize].key = key;
                self.by_key.insert(key, b);
                if index {
                    self.tree.insert(BucketEntry::new(b, key));
                }
                b
            }
        };
        let bucket = &mut self.buckets[b as usize];
        bucket.ids.push(subject);
        bucket.pts.push(at);
        self.by_id
            .insert(subject, (b, (bucket.ids.len() - 1) as u32));
    }

    /// Takes slot `slot` out of bucket `b` (the caller forgets the subject).
    fn take(&mut self, b: u32, slot: u32) {
        let bucket = &mut self.buckets[b as usize];
        let slot = slot as usize;
        bucket.ids.swap_remove(slot);
        bucket.pts.swap_remove(slot);
        if let Some(&moved) = bucket.ids.get(slot)
            && let Some(place) = self.by_id.get_mut(&moved)
        {
            place.1 = slot as u32;
        }
        // An emptied bucket stays (in the map and the tree) for the next subject to enter
        // its cell: moves between sparse cells then never touch the R-tree. Buckets are
        // bounded by the cells ever visited; queries skip empty ones at no cost.
    }

    /// Sets a subject's position: in place if it stays in its cell, else moved to the new
    /// cell's bucket.
    pub fn upsert(
        &mut self,
        subject: SubjectId,
        lon: f64,
        lat: f64,
    ) -> Result<(), InvalidPosition> {
        let (lon, lat) = check_position(lon, lat)?;
        let at = [lon, lat];
        if let Some(&(b, slot)) = self.by_id.get(&subject) {
            let bucket = &mut self.buckets[b as usize];
            if bucket.key == cell_key(lon, lat) {
                bucket.pts[slot as usize] = at;
                return Ok(());
            }
            self.take(b, slot);
        }
        self.push(subject, at, true);
        Ok(())
    }

    /// Stops tracking a subject; returns its last position.
    pub fn remove(&mut self, subject: SubjectId) -> Option<(f64, f64)> {
        let (b, slot) = self.by_id.remove(&subject)?;
        let at = self.buckets[b as usize].pts[slot as usize];
        self.take(b, slot);
        Some((at[0], at[1]))
    }

    /// A subject's position `(lon, lat)`, lon in [-180, 180).
    pub fn get(&self, subject: SubjectId) -> Option<(f64, f64)> {
        let &(b, slot) = self.by_id.get(&subject)?;
        let at = self.buckets[b as usize].pts[slot as usize];
        Some((at[0], at[1]))
    }

    /// Number of subjects.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no subject is tracked.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Subjects inside the shape or on its border, in no particular order.
    pub fn within_shape(&self, shape: &Shape) -> Vec<SubjectId> {
        let mut out = Vec::new();
        for piece in shape.pieces() {
            self.visit(&piece.env, |id, at| {
                if shape.piece_contains(piece.part, piece.offset, at[0], at[1]) {
                    out.push(id);
                }
            });
        }
        // Only overlapping parts of a multipolygon can report a subject twice.
        if shape.is_multi_piece() {
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    /// Subjects inside an area of `areas`; `None` if there is no such area. Ignores validity.
    pub fn within_area(&self, areas: &AreaIndex, id: AreaId) -> Option<Vec<SubjectId>> {
        areas.get(id).map(|a| self.within_shape(&a.shape))
    }

    /// Subjects in a longitude/latitude box, edges included. A box with `min_lon > max_lon`
    /// crosses the antimeridian (e.g. 170 to -170).
    pub fn within_box(
        &self,
        min_lon: f64,
        min_lat: f64,
        max_lon: f64,
        max_lat: f64,
    ) -> Vec<SubjectId> {
        if ![min_lon, min_lat, max_lon, max_lat]
            .iter()
            .all(|v| v.is_finite())
        {
            return Vec::new();
        }
        let boxes = if min_lon <= max_lon {
            vec![[min_lon, min_lat, max_lon, max_lat]]
        } else {
            vec![
                [min_lon, min_lat, 180.0, max_lat],
                [-180.0, min_lat, max_lon, max_lat],
            ]
        };
        let mut out = Vec::new();
        for b in &boxes {
            self.visit(b, |id, _| out.push(id));
        }
        // Stored longitudes are in [-180, 180), so the two halves never share a subject;
        // a +180 edge is the -180 edge.
        if boxes.len() == 1 && max_lon >= 180.0 {
            let edge = [-180.0, min_lat, -180.0, max_lat];
            self.visit(&edge, |id, _| out.push(id));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The `n` subjects nearest to the point with their great-circle distances in metres
    /// (mean-sphere; within 0.6 % of WGS84), nearest first.
    pub fn nearest(&self, lon: f64, lat: f64, n: usize) -> Vec<(SubjectId, f64)> {
        let Ok((lon, lat)) = check_position(lon, lat) else {
            return Vec::new();
        };
        if n == 0 || self.is_empty() {
            return Vec::new();
        }
        // Grow a radius until it holds n subjects (or covers the globe); within it, the
        // great-circle distances settle the order. The first guess comes from how crowded the
        // point's own cell is (a disc holding n of its k subjects, were they spread evenly).
        let cell_m = CELL_DEG * geodesy::M_PER_DEG;
        let crowd = self
            .by_key
            .get(&cell_key(lon, lat))
            .map_or(0, |&b| self.buckets[b as usize].ids.len());
        let mut radius = if crowd > 0 {
            (cell_m * (n as f64 / (std::f64::consts::PI * crowd as f64)).sqrt()).clamp(50.0, cell_m)
        } else {
            cell_m
        };
        let mut found: Vec<(SubjectId, f64)> = Vec::new();
        loop {
            found.clear();
            for b in geodesy::boxes_around(lon, lat, radius).as_slice() {
                self.visit(b, |id, at| {
                    let d = geodesy::haversine_m(lon, lat, at[0], at[1]);
                    if d <= radius {
                        found.push((id, d));
                    }
                });
            }
            if found.len() >= n || radius > 2.1e7 {
                break;
            }
            radius *= 3.0;
        }
        found.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        found.dedup_by_key(|x| x.0);
        found.truncate(n);
        found
    }

    /// Every subject whose point lies in `b` (edges included), with its point.
    fn visit(&self, b: &DegBox, mut f: impl FnMut(SubjectId, [f64; 2])) {
        let env = AABB::from_corners([b[0], b[1]], [b[2], b[3]]);
        let _ = self.tree.locate_in_envelope_intersecting_int(&env, |e| {
            let bucket = &self.buckets[e.bucket as usize];
            let whole =
                e.env[0] >= b[0] && e.env[2] <= b[2] && e.env[1] >= b[1] && e.env[3] <= b[3];
            for (i, p) in bucket.pts.iter().enumerate() {
                if whole || in_box(b, p[0], p[1]) {
                    f(bucket.ids[i], *p);
                }
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_in_place_and_queries() {
        let mut idx = PositionIndex::new();
        idx.upsert(1, 36.8, -1.3).expect("valid");
        idx.upsert(2, 36.9, -1.2).expect("valid");
        idx.upsert(1, 39.7, -4.0).expect("valid");
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.get(1), Some((39.7, -4.0)));
        assert_eq!(idx.within_box(36.0, -2.0, 37.0, -1.0), vec![2]);
        let near = idx.nearest(36.8, -1.3, 1);
        assert_eq!(near.len(), 1);
        assert_eq!(near[0].0, 2);
        assert!(idx.upsert(3, 181.0, 0.0).is_err());
        assert_eq!(idx.remove(2), Some((36.9, -1.2)));
        assert!(idx.within_box(36.0, -2.0, 37.0, -1.0).is_empty());
    }

    #[test]
    fn every_cell_box_holds_its_points() {
        for (x, y) in [
            (0.0, 0.0),
            (-0.01, -0.01),
            (-179.99, -89.99),
            (179.99, 90.0),
            (36.82, -1.29),
            (-0.05, 0.05),
        ] {
            let e = BucketEntry::new(0, cell_key(x, y));
            assert!(in_box(&e.env, x, y), "({x}, {y}) not in {:?}", e.env);
            assert!(e.env[2] - e.env[0] < CELL_DEG * 1.01);
        }
    }

    #[test]
    fn buckets_empty_and_refill() {
        let mut idx = PositionIndex::new();
        idx.upsert(1, 10.001, 10.001).expect("valid");
        idx.upsert(2, 10.002, 10.002).expect("valid");
        idx.upsert(1, 20.0, 20.0).expect("valid"); // to another cell
        idx.upsert(2, 10.003, 10.004).expect("valid"); // in place
        assert_eq!(idx.within_box(10.0, 10.0, 10.01, 10.01), vec![2]);
        assert_eq!(idx.remove(2), Some((10.003, 10.004)));
        assert!(idx.within_box(9.0, 9.0, 11.0, 11.0).is_empty());
        idx.upsert(3, 10.001, 10.001).expect("valid");
        assert_eq!(idx.within_box(9.0, 9.0, 11.0, 11.0), vec![3]);
        assert_eq!(idx.get(1), Some((20.0, 20.0)));
        assert_eq!(idx.len(), 2);
    }

    #[test]
    fn box_across_antimeridian() {
        let idx = PositionIndex::bulk_load([
            (1, 179.9, 0.0),
            (2, -179.9, 0.0),
            (3, 0.0, 0.0),
            (4, 180.0, 0.0),
        ]);
        assert_eq!(idx.within_box(179.0, -1.0, -179.0, 1.0), vec![1, 2, 4]);
        let near = idx.nearest(179.96, 0.0, 3);
        let ids: Vec<_> = near.iter().map(|x| x.0).collect();
        assert_eq!(ids, vec![4, 1, 2]);
    }
}
