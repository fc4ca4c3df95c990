//! Property tests: the indexes against brute force on random polygons, holes, circles and
//! points. The oracle is geo's exact `Intersects` (border included) for polygons and Karney's
//! WGS84 geodesic distance for circles.

use geo::{Destination, Distance, Geodesic, Intersects, LineString, MultiPolygon, Point, Polygon};
use proptest::prelude::*;
use vigil_geofences::{
    Area, AreaIndex, AreaKind, PositionIndex, SecurityLevel, Shape, ShapeGeometry,
};

/// A star-shaped ring around `(cx, cy)`: simple by construction (angles strictly increase).
fn star(cx: f64, cy: f64, radii: &[f64], scale: f64) -> LineString<f64> {
    let n = radii.len();
    let mut pts: Vec<(f64, f64)> = radii
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let a = i as f64 / n as f64 * std::f64::consts::TAU;
            (cx + r * scale * a.cos(), cy + r * scale * a.sin())
        })
        .collect();
    pts.push(pts[0]);
    LineString::from(pts)
}

#[derive(Clone, Debug)]
struct RandomPolygon {
    cx: f64,
    cy: f64,
    outer: Vec<f64>,
    hole: Option<Vec<f64>>,
    scale: f64,
}

impl RandomPolygon {
    /// The hole's radii are scaled to stay within the exterior's nearest edge, so the hole is
    /// strictly inside.
    fn polygon(&self) -> Polygon<f64> {
        let exterior = star(self.cx, self.cy, &self.outer, self.scale);
        let nearest_edge = exterior
            .lines()
            .map(|l| {
                let (d, s) = (l.delta(), l.start);
                ((s.x - self.cx) * d.y - (s.y - self.cy) * d.x).abs() / d.x.hypot(d.y)
            })
            .fold(f64::INFINITY, f64::min);
        let holes = self
            .hole
            .iter()
            .map(|h| {
                let k = nearest_edge / self.scale / 0.45;
                let radii: Vec<f64> = h.iter().map(|r| r * k).collect();
                star(self.cx, self.cy, &radii, self.scale)
            })
            .collect();
        Polygon::new(exterior, holes)
    }
}

fn random_polygon(lon: std::ops::Range<f64>) -> impl Strategy<Value = RandomPolygon> {
    (
        lon,
        -60.0..60.0f64,
        prop::collection::vec(0.5..1.0f64, 3..40),
        prop::option::of(prop::collection::vec(0.1..0.4f64, 3..12)),
        0.01..5.0f64,
    )
        .prop_map(|(cx, cy, outer, hole, scale)| RandomPolygon {
            cx,
            cy,
            outer,
            hole,
            scale,
        })
}

/// Points around a polygon: random ones in its box, plus its vertices and edge midpoints
/// (on or within a rounding of the border: where mistakes hide).
fn probe_points(p: &Polygon<f64>, extra: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = extra.to_vec();
    for ring in std::iter::once(p.exterior()).chain(p.interiors()) {
        for w in ring.0.windows(2) {
            out.push((w[0].x, w[0].y));
            out.push(((w[0].x + w[1].x) / 2.0, (w[0].y + w[1].y) / 2.0));
        }
    }
    out
}

fn oracle(area: &Area, lon: f64, lat: f64) -> bool {
    match area.shape.geometry() {
        ShapeGeometry::Polygons(mp) => mp.intersects(&Point::new(lon, lat)),
        ShapeGeometry::Circle {
            lon: cx,
            lat: cy,
            radius_m,
        } => Geodesic.distance(Point::new(*cx, *cy), Point::new(lon, lat)) <= *radius_m,
    }
}

fn area(id: i64, shape: Shape) -> Area {
    Area {
        id,
        name: format!("area {id}"),
        kind: AreaKind::SecurityArea,
        level: SecurityLevel::try_from(id % 6 + 1).ok(),
        parent: None,
        valid_from: None,
        valid_until: None,
        shape,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn polygon_contains_matches_geo(
        rp in random_polygon(-170.0..170.0),
        rel in prop::collection::vec((-1.2..1.2f64, -1.2..1.2f64), 50),
    ) {
        let poly = rp.polygon();
        let shape = Shape::from_polygon(poly.clone()).expect("star polygons are valid");
        let extra: Vec<(f64, f64)> = rel.iter().map(|(dx, dy)| (rp.cx + dx * rp.scale, rp.cy + dy * rp.scale)).collect();
        for (x, y) in probe_points(&poly, &extra) {
            prop_assert_eq!(shape.contains(x, y), poly.intersects(&Point::new(x, y)), "at ({}, {})", x, y);
        }
    }

    #[test]
    fn polygon_across_antimeridian_matches_unwrapped_geo(
        rp in random_polygon(176.0..184.0),
        rel in prop::collection::vec((-1.2..1.2f64, -1.2..1.2f64), 50),
    ) {
        let unwrapped = rp.polygon();
        prop_assume!(unwrapped.exterior().0.iter().all(|c| c.x > -180.0 && c.x < 540.0));
        // What a client sends: every longitude folded into [-180, 180].
        let fold = |ls: &LineString<f64>| LineString::from(
            ls.0.iter().map(|c| (if c.x > 180.0 { c.x - 360.0 } else { c.x }, c.y)).collect::<Vec<_>>());
        let folded = Polygon::new(fold(unwrapped.exterior()), unwrapped.interiors().iter().map(fold).collect());
        let shape = Shape::from_polygon(folded).expect("valid once unwrapped");
        let extra: Vec<(f64, f64)> = rel.iter().map(|(dx, dy)| (rp.cx + dx * rp.scale, rp.cy + dy * rp.scale)).collect();
        for (x, y) in probe_points(&unwrapped, &extra) {
            let lon = if x >= 180.0 { x - 360.0 } else { x };
            let expected = unwrapped.intersects(&Point::new(x, y))
                || unwrapped.intersects(&Point::new(lon + 360.0, y))
                || unwrapped.intersects(&Point::new(lon, y));
            prop_assert_eq!(shape.contains(lon, y), expected, "at ({}, {})", lon, y);
        }
    }

    #[test]
    fn circle_contains_matches_karney(
        lon in -180.0..180.0f64,
        lat in -85.0..85.0f64,
        radius_m in 1.0..2_000_000.0f64,
        probes in prop::collection::vec((0.0..360.0f64, 0.95..1.05f64), 40),
    ) {
        let shape = Shape::circle(lon, lat, radius_m).expect("valid circle");
        let centre = Point::new(lon, lat);
        for (bearing, k) in probes {
            let p = Geodesic.destination(centre, bearing, radius_m * k);
            let expected = Geodesic.distance(centre, p) <= radius_m;
            prop_assert_eq!(shape.contains(p.x(), p.y()), expected, "bearing {} k {}", bearing, k);
        }
    }

    #[test]
    fn area_index_matches_brute_force(
        polys in prop::collection::vec(random_polygon(-20.0..20.0), 1..12),
        circles in prop::collection::vec((-20.0..20.0f64, -20.0..20.0f64, 1_000.0..500_000.0f64), 0..8),
        points in prop::collection::vec((-26.0..26.0f64, -66.0..66.0f64), 100),
    ) {
        let mut areas: Vec<Area> = polys
            .iter()
            .enumerate()
            .map(|(i, rp)| area(i as i64, Shape::from_polygon(rp.polygon()).expect("valid")))
            .collect();
        let mut all_probes: Vec<(f64, f64)> = points.clone();
        for (i, (x, y, r)) in circles.iter().enumerate() {
            areas.push(area(100 + i as i64, Shape::circle(*x, *y, *r).expect("valid")));
        }
        for rp in &polys {
            all_probes.extend(probe_points(&rp.polygon(), &[]).into_iter().take(20));
        }
        let index = AreaIndex::from_areas(areas.clone());
        let mut incremental = AreaIndex::new();
        for a in &areas {
            incremental.upsert(a.clone());
        }
        for (x, y) in all_probes {
            let mut expected: Vec<i64> = areas.iter().filter(|a| oracle(a, x, y)).map(|a| a.id).collect();
            expected.sort_unstable();
            prop_assert_eq!(&index.containing(x, y, 0), &expected, "bulk at ({}, {})", x, y);
            prop_assert_eq!(&incremental.containing(x, y, 0), &expected, "incremental at ({}, {})", x, y);
            let level = areas.iter().filter(|a| oracle(a, x, y)).filter_map(|a| a.level).max();
            prop_assert_eq!(index.effective_level(x, y, 0), level);
        }
    }

    #[test]
    fn position_queries_match_brute_force(
        rp in random_polygon(-20.0..20.0),
        subjects in prop::collection::vec((-26.0..26.0f64, -66.0..66.0f64), 1..400),
        moves in prop::collection::vec((0usize..400, -26.0..26.0f64, -66.0..66.0f64, any::<bool>()), 0..200),
        circle in (-20.0..20.0f64, -60.0..60.0f64, 1_000.0..2_000_000.0f64),
        n in 1usize..20,
    ) {
        let mut pos: Vec<(f64, f64)> = subjects.clone();
        let mut index = PositionIndex::bulk_load(pos.iter().enumerate().map(|(i, (x, y))| (i as i64, *x, *y)));
        for (i, x, y, small) in moves {
            let i = i % pos.len();
            // Small steps (up to ~0.003°) mostly stay inside the entry's box and are made in
            // place; the others re-file the entry.
            let (x, y) = if small { (pos[i].0 + x * 1e-4, pos[i].1 + y * 4e-5) } else { (x, y) };
            pos[i] = (x, y);
            index.upsert(i as i64, x, y).expect("valid");
        }
        prop_assert_eq!(index.len(), pos.len());

        let poly = rp.polygon();
        let shape = Shape::from_polygon(poly.clone()).expect("valid");
        let mut got = index.within_shape(&shape);
        got.sort_unstable();
        let expected: Vec<i64> = pos.iter().enumerate()
            .filter(|(_, (x, y))| poly.intersects(&Point::new(*x, *y)))
            .map(|(i, _)| i as i64).collect();
        prop_assert_eq!(got, expected);

        let (bx0, by0) = (rp.cx - rp.scale, rp.cy - rp.scale);
        let (bx1, by1) = (rp.cx + rp.scale, rp.cy + rp.scale);
        let expected: Vec<i64> = pos.iter().enumerate()
            .filter(|(_, (x, y))| *x >= bx0 && *x <= bx1 && *y >= by0 && *y <= by1)
            .map(|(i, _)| i as i64).collect();
        prop_assert_eq!(index.within_box(bx0, by0, bx1, by1), expected);

        let (cx, cy, r) = circle;
        let disc = Shape::circle(cx, cy, r).expect("valid");
        let mut got = index.within_shape(&disc);
        got.sort_unstable();
        let c = Point::new(cx, cy);
        let expected: Vec<i64> = pos.iter().enumerate()
            .filter(|(_, (x, y))| Geodesic.distance(c, Point::new(*x, *y)) <= r)
            .map(|(i, _)| i as i64).collect();
        prop_assert_eq!(got, expected);

        let got = index.nearest(cx, cy, n);
        let mut all: Vec<(f64, i64)> = pos.iter().enumerate()
            .map(|(i, (x, y))| (geo::Haversine.distance(c, Point::new(*x, *y)), i as i64)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        prop_assert_eq!(got.len(), n.min(pos.len()));
        for (k, (id, d)) in got.iter().enumerate() {
            // Distances must match the k-th nearest (ids may differ only on exact ties).
            prop_assert!((d - all[k].0).abs() <= 1e-6 * all[k].0.max(1.0), "k {} id {} d {} vs {:?}", k, id, d, all[k]);
        }
    }
}

/// A random area outline: a star polygon (possibly across the antimeridian once folded) or
/// a circle.
fn random_outline() -> impl Strategy<Value = Shape> {
    prop_oneof![
        random_polygon(-25.0..25.0)
            .prop_map(|rp| Shape::from_polygon(rp.polygon()).expect("valid")),
        (random_polygon(176.0..184.0), any::<bool>()).prop_filter_map(
            "fits the globe",
            |(rp, _)| {
                let p = rp.polygon();
                let fold = |ls: &LineString<f64>| {
                    LineString::from(
                        ls.0.iter()
                            .map(|c| (if c.x > 180.0 { c.x - 360.0 } else { c.x }, c.y))
                            .collect::<Vec<_>>(),
                    )
                };
                if !p.exterior().0.iter().all(|c| c.x > -180.0 && c.x < 540.0) {
                    return None;
                }
                Shape::from_polygon(Polygon::new(
                    fold(p.exterior()),
                    p.interiors().iter().map(fold).collect(),
                ))
                .ok()
            }
        ),
        (-25.0..25.0f64, -60.0..60.0f64, 1_000.0..900_000.0f64)
            .prop_map(|(x, y, r)| Shape::circle(x, y, r).expect("valid")),
        (
            178.0..180.0f64,
            -10.0..10.0f64,
            1_000.0..400_000.0f64,
            any::<bool>()
        )
            .prop_map(
                |(x, y, r, west)| Shape::circle(if west { -x } else { x }, y, r).expect("valid")
            ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The overlap query returns exactly the areas a scan of every area with
    /// `Shape::intersects` finds, bulk-loaded or built one edit at a time.
    #[test]
    fn areas_under_a_drawn_shape_match_a_scan_of_every_area(
        outlines in prop::collection::vec(random_outline(), 1..16),
        drawn in prop::collection::vec(random_outline(), 1..6),
        removed in prop::collection::vec(0usize..16, 0..4),
    ) {
        let areas: Vec<Area> = outlines.into_iter().enumerate().map(|(i, s)| area(i as i64, s)).collect();
        let bulk = AreaIndex::from_areas(areas.clone());
        let mut edited = AreaIndex::new();
        for a in &areas {
            edited.upsert(a.clone());
        }
        // Replacing an area by itself and removing some must leave no stale box behind.
        edited.upsert(areas[0].clone());
        for r in &removed {
            edited.remove(*r as i64);
        }
        for shape in &drawn {
            let scan: Vec<i64> = areas.iter().filter(|a| shape.intersects(&a.shape)).map(|a| a.id).collect();
            prop_assert_eq!(bulk.intersecting(shape), scan.clone());
            let kept: Vec<i64> = scan.into_iter().filter(|id| !removed.contains(&(*id as usize))).collect();
            prop_assert_eq!(edited.intersecting(shape), kept);
        }
    }
}

#[test]
fn two_circles_touching_across_the_antimeridian_overlap() {
    let east = Shape::circle(179.95, 0.0, 6_000.0).expect("valid");
    let west = Shape::circle(-179.95, 0.0, 6_000.0).expect("valid");
    let far = Shape::circle(-179.5, 0.0, 6_000.0).expect("valid");
    let index = AreaIndex::from_areas([area(1, west), area(2, far)]);
    assert_eq!(index.intersecting(&east), vec![1]);
}

#[test]
fn multipolygon_parts_and_overlaps_are_deduplicated() {
    let a = star(0.0, 0.0, &[1.0; 8], 1.0);
    let b = star(0.5, 0.0, &[1.0; 8], 1.0);
    let shape = Shape::from_multi_polygon(MultiPolygon(vec![
        Polygon::new(a, vec![]),
        Polygon::new(b, vec![]),
    ]))
    .expect("overlapping parts are allowed");
    let index = PositionIndex::bulk_load([(1, 0.25, 0.0), (2, 5.0, 5.0)]);
    assert_eq!(index.within_shape(&shape), vec![1]);
}
