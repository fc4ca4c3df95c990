//! The position index: where every tracked subject is, and who is inside a shape.

use std::fmt;
use std::ops::ControlFlow;

use rstar::{AABB, PointDistance, RTree, RTreeObject};

use crate::areas::AreaIndex;
use crate::geodesy::{self, DegBox};
use crate::hash::IdMap;
use crate::shape::{Shape, in_box};
use crate::{AreaId, SubjectId};

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

#[derive(Clone, Copy, Debug, PartialEq)]
struct Tracked {
    id: SubjectId,
    /// `[lon, lat]`, lon in [-180, 180).
    at: [f64; 2],
}

impl RTreeObject for Tracked {
    type Envelope = AABB<[f64; 2]>;
    fn envelope(&self) -> Self::Envelope {
        AABB::from_point(self.at)
    }
}

impl PointDistance for Tracked {
    fn distance_2(&self, p: &[f64; 2]) -> f64 {
        let (dx, dy) = (self.at[0] - p[0], self.at[1] - p[1]);
        dx * dx + dy * dy
    }
}

/// Latest position of every tracked subject, in an R-tree.
#[derive(Default)]
pub struct PositionIndex {
    /// Points in degrees; one entry per subject.
    tree: RTree<Tracked>,
    /// Where each subject's entry is, to find it again for a move.
    by_id: IdMap<SubjectId, [f64; 2]>,
}

impl fmt::Debug for PositionIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PositionIndex")
            .field("subjects", &self.by_id.len())
            .finish()
    }
}

impl PositionIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index in one go with a bulk-loaded R-tree (seconds faster for a million
    /// subjects, and better-shaped for queries). Invalid positions are skipped; a later
    /// position for the same subject wins.
    pub fn bulk_load(positions: impl IntoIterator<Item = (SubjectId, f64, f64)>) -> Self {
        let mut by_id: IdMap<SubjectId, [f64; 2]> = IdMap::default();
        for (id, lon, lat) in positions {
            if let Ok((lon, lat)) = check_position(lon, lat) {
                by_id.insert(id, [lon, lat]);
            }
        }
        let tree = RTree::bulk_load(by_id.iter().map(|(&id, &at)| Tracked { id, at }).collect());
        Self { tree, by_id }
    }

    /// Sets a subject's position, moving its entry if it had one.
    pub fn upsert(
        &mut self,
        subject: SubjectId,
        lon: f64,
        lat: f64,
    ) -> Result<(), InvalidPosition> {
        let (lon, lat) = check_position(lon, lat)?;
        let at = [lon, lat];
        if let Some(old) = self.by_id.insert(subject, at) {
            if old == at {
                return Ok(());
            }
            self.tree.remove(&Tracked {
                id: subject,
                at: old,
            });
        }
        self.tree.insert(Tracked { id: subject, at });
        Ok(())
    }

    /// Stops tracking a subject; returns its last position.
    pub fn remove(&mut self, subject: SubjectId) -> Option<(f64, f64)> {
        let at = self.by_id.remove(&subject)?;
        self.tree.remove(&Tracked { id: subject, at });
        Some((at[0], at[1]))
    }

    /// A subject's position `(lon, lat)`, lon in [-180, 180).
    pub fn get(&self, subject: SubjectId) -> Option<(f64, f64)> {
        self.by_id.get(&subject).map(|a| (a[0], a[1]))
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
            self.visit(&piece.env, |t| {
                if shape.piece_contains(piece.part, piece.offset, t.at[0], t.at[1]) {
                    out.push(t.id);
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
            self.visit(b, |t| out.push(t.id));
        }
        // Stored longitudes are in [-180, 180), so the two halves never share a subject;
        // a +180 edge is the -180 edge.
        if boxes.len() == 1 && max_lon >= 180.0 {
            self.visit(&[-180.0, min_lat, -180.0, max_lat], |t| out.push(t.id));
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
        // The n nearest in degrees are n subjects within their farthest distance in metres,
        // so that distance bounds the true n-th nearest; one box query then settles it.
        let bound = self
            .tree
            .nearest_neighbor_iter(&[lon, lat])
            .take(n)
            .map(|t| geodesy::haversine_m(lon, lat, t.at[0], t.at[1]))
            .fold(0.0_f64, f64::max);
        let mut found: Vec<(SubjectId, f64)> = Vec::new();
        for b in geodesy::boxes_around(lon, lat, bound) {
            self.visit(&b, |t| {
                let d = geodesy::haversine_m(lon, lat, t.at[0], t.at[1]);
                if d <= bound {
                    found.push((t.id, d));
                }
            });
        }
        found.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        found.dedup_by_key(|x| x.0);
        found.truncate(n);
        found
    }

    fn visit(&self, b: &DegBox, mut f: impl FnMut(&Tracked)) {
        let env = AABB::from_corners([b[0], b[1]], [b[2], b[3]]);
        let _ = self.tree.locate_in_envelope_intersecting_int(&env, |t| {
            debug_assert!(in_box(b, t.at[0], t.at[1]));
            f(t);
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
