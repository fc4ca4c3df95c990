//! Transitions as the server sees them: entering and leaving areas, hysteresis at borders,
//! out-of-order fixes, and areas that change under tracked subjects.

use geo::polygon;
use proptest::prelude::*;
use vigil_geofences::{
    Area, AreaIndex, AreaKind, Fix, SecurityLevel, Shape, Tracker, Transition, Transitions,
};

/// Metres per degree of latitude near the equator (WGS84), close enough for placing points.
const M_PER_DEG_LAT: f64 = 110_574.0;

fn square_area(id: i64, x0: f64, y0: f64, x1: f64, y1: f64) -> Area {
    let shape = Shape::from_polygon(
        polygon![(x: x0, y: y0), (x: x1, y: y0), (x: x1, y: y1), (x: x0, y: y1)],
    )
    .expect("valid square");
    Area {
        id,
        name: format!("area {id}"),
        kind: AreaKind::SecurityArea,
        level: Some(SecurityLevel::Substantial),
        parent: None,
        valid_from: None,
        valid_until: None,
        shape,
    }
}

fn fix(lon: f64, lat: f64, accuracy_m: Option<f64>, at_ms: i64) -> Fix {
    Fix {
        lon,
        lat,
        accuracy_m,
        at_ms,
    }
}

fn entered(ids: &[i64]) -> Transitions {
    Transitions {
        entered: ids.to_vec(),
        left: vec![],
    }
}

fn left(ids: &[i64]) -> Transitions {
    Transitions {
        entered: vec![],
        left: ids.to_vec(),
    }
}

/// A compound 0.1° wide whose southern border is the equator.
fn compound() -> Tracker {
    Tracker::with_areas(AreaIndex::from_areas([square_area(
        1, 36.0, 0.0, 36.1, 0.1,
    )]))
}

#[test]
fn an_adviser_draws_a_polygon_and_two_staff_inside_are_found() {
    let mut t = Tracker::new();
    for (staff, lon, lat) in [(10, 36.05, 0.05), (11, 36.02, 0.08), (12, 37.0, 0.05)] {
        assert!(
            t.update(staff, fix(lon, lat, Some(10.0), 1_000))
                .expect("valid")
                .is_empty()
        );
    }
    let drawn = Shape::from_polygon(
        polygon![(x: 36.0, y: 0.0), (x: 36.1, y: 0.0), (x: 36.1, y: 0.1), (x: 36.0, y: 0.1)],
    )
    .expect("valid");
    let mut inside = t.positions().within_shape(&drawn);
    inside.sort_unstable();
    assert_eq!(inside, vec![10, 11]);
    // Saved as an area, it makes them enter it.
    let changes = t.upsert_area(square_area(5, 36.0, 0.0, 36.1, 0.1), 2_000);
    assert_eq!(
        changes,
        vec![(10, Transition::Entered(5)), (11, Transition::Entered(5))]
    );
    assert_eq!(t.members_of(5), vec![10, 11]);
}

#[test]
fn entering_and_leaving() {
    let mut t = compound();
    assert!(
        t.update(7, fix(35.9, 0.05, None, 1))
            .expect("valid")
            .is_empty()
    );
    assert_eq!(
        t.update(7, fix(36.05, 0.05, None, 2)).expect("valid"),
        entered(&[1])
    );
    assert!(
        t.update(7, fix(36.06, 0.05, None, 3))
            .expect("valid")
            .is_empty()
    );
    assert_eq!(t.areas_of(7), Some(&[1][..]));
    assert_eq!(
        t.update(7, fix(36.2, 0.05, None, 4)).expect("valid"),
        left(&[1])
    );
    assert_eq!(t.forget(7), Vec::<i64>::new());
    assert_eq!(t.areas_of(7), None);
}

#[test]
fn a_fix_straddling_the_border_does_not_flap() {
    let mut t = compound();
    let deg = |m: f64| m / M_PER_DEG_LAT;
    // Clearly inside: 200 m north of the southern border, 20 m accuracy.
    assert_eq!(
        t.update(7, fix(36.05, deg(200.0), Some(20.0), 1))
            .expect("valid"),
        entered(&[1])
    );
    // The point jitters across the border with a 50 m circle: still inside each time.
    for (k, metres) in [10.0, -10.0, 30.0, -40.0, 5.0].into_iter().enumerate() {
        let t_ms = 2 + k as i64;
        assert!(
            t.update(7, fix(36.05, deg(metres), Some(50.0), t_ms))
                .expect("valid")
                .is_empty(),
            "{metres} m"
        );
        assert_eq!(t.areas_of(7), Some(&[1][..]));
    }
    // The whole accuracy circle south of the border: left.
    assert_eq!(
        t.update(7, fix(36.05, deg(-60.0), Some(50.0), 10))
            .expect("valid"),
        left(&[1])
    );
    // Jitter back across the border with a wide circle: still outside.
    assert!(
        t.update(7, fix(36.05, deg(20.0), Some(50.0), 11))
            .expect("valid")
            .is_empty()
    );
    assert_eq!(t.areas_of(7), Some(&[][..]));
    // Well inside again: entered.
    assert_eq!(
        t.update(7, fix(36.05, deg(80.0), Some(50.0), 12))
            .expect("valid"),
        entered(&[1])
    );
}

#[test]
fn a_first_fix_on_the_border_is_decided_by_its_centre() {
    let mut t = compound();
    let deg = |m: f64| m / M_PER_DEG_LAT;
    assert_eq!(
        t.update(1, fix(36.05, deg(10.0), Some(100.0), 1))
            .expect("valid"),
        entered(&[1])
    );
    assert!(
        t.update(2, fix(36.05, deg(-10.0), Some(100.0), 1))
            .expect("valid")
            .is_empty()
    );
}

#[test]
fn an_older_fix_neither_moves_the_subject_nor_transitions() {
    let mut t = compound();
    assert_eq!(
        t.update(3, fix(36.05, 0.05, None, 100)).expect("valid"),
        entered(&[1])
    );
    assert!(
        t.update(3, fix(40.0, 5.0, None, 99))
            .expect("valid")
            .is_empty()
    );
    assert_eq!(t.positions().get(3), Some((36.05, 0.05)));
    assert_eq!(t.last_fix(3).map(|f| f.at_ms), Some(100));
    assert!(t.update(3, fix(f64::NAN, 5.0, None, 101)).is_err());
    assert_eq!(t.positions().get(3), Some((36.05, 0.05)));
}

#[test]
fn areas_that_change_move_their_members() {
    let mut t = compound();
    t.update(1, fix(36.02, 0.05, None, 1)).expect("valid");
    t.update(2, fix(36.08, 0.05, None, 1)).expect("valid");
    assert_eq!(t.members_of(1), vec![1, 2]);
    // The compound shrinks to its western half: subject 2 leaves.
    let changes = t.upsert_area(square_area(1, 36.0, 0.0, 36.05, 0.1), 2);
    assert_eq!(changes, vec![(2, Transition::Left(1))]);
    // A second, overlapping area with a validity window.
    let mut curfew = square_area(9, 36.0, 0.0, 36.1, 0.1);
    curfew.valid_from = Some(10);
    curfew.valid_until = Some(20);
    assert!(t.upsert_area(curfew, 5).is_empty(), "not yet in force");
    assert_eq!(
        t.area_changed(9, 10),
        vec![(1, Transition::Entered(9)), (2, Transition::Entered(9))]
    );
    assert_eq!(t.areas_of(1), Some(&[1, 9][..]));
    assert_eq!(
        t.areas().effective_level(36.02, 0.05, 15),
        Some(SecurityLevel::Substantial)
    );
    assert_eq!(
        t.area_changed(9, 20),
        vec![(1, Transition::Left(9)), (2, Transition::Left(9))]
    );
    let (removed, changes) = t.remove_area(1);
    assert!(removed.is_some());
    assert_eq!(changes, vec![(1, Transition::Left(1))]);
    assert_eq!(t.areas_of(1), Some(&[][..]));
}

#[test]
fn crossing_the_antimeridian_inside_one_area_is_no_transition() {
    // Taveuni-like strip across the date line.
    let ring = polygon![(x: 179.5, y: -17.0), (x: -179.5, y: -17.0), (x: -179.5, y: -16.5), (x: 179.5, y: -16.5)];
    let mut area = square_area(4, 0.0, 0.0, 1.0, 1.0);
    area.shape = Shape::from_polygon(ring).expect("valid across the antimeridian");
    let mut t = Tracker::with_areas(AreaIndex::from_areas([area]));
    assert_eq!(
        t.update(1, fix(179.9, -16.8, Some(30.0), 1))
            .expect("valid"),
        entered(&[4])
    );
    assert!(
        t.update(1, fix(-179.9, -16.8, Some(30.0), 2))
            .expect("valid")
            .is_empty()
    );
    assert_eq!(t.areas().containing(179.9, -16.8, 0), vec![4]);
    assert_eq!(t.areas().containing(-179.9, -16.8, 0), vec![4]);
    assert_eq!(
        t.update(1, fix(-179.0, -16.8, Some(30.0), 3))
            .expect("valid"),
        left(&[4])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Without an accuracy radius there is no hysteresis: membership is exactly the areas that
    /// contain the point, and transitions are the differences between consecutive fixes.
    #[test]
    fn without_accuracy_membership_is_containment(
        squares in prop::collection::vec((0.0..5.0f64, 0.0..5.0f64, 0.1..3.0f64), 1..10),
        walk in prop::collection::vec((0i64..5, -1.0..9.0f64, -1.0..9.0f64), 1..60),
    ) {
        let areas: Vec<Area> = squares.iter().enumerate()
            .map(|(i, (x, y, w))| square_area(i as i64, *x, *y, x + w, y + w)).collect();
        let index = AreaIndex::from_areas(areas);
        let mut t = Tracker::with_areas(index);
        let mut before: std::collections::HashMap<i64, Vec<i64>> = Default::default();
        for (k, (subject, x, y)) in walk.into_iter().enumerate() {
            let tr = t.update(subject, fix(x, y, None, k as i64)).expect("valid");
            let now = t.areas().containing(x, y, k as i64);
            prop_assert_eq!(t.areas_of(subject), Some(now.as_slice()));
            let old = before.insert(subject, now.clone()).unwrap_or_default();
            let exp_entered: Vec<i64> = now.iter().filter(|a| !old.contains(a)).copied().collect();
            let exp_left: Vec<i64> = old.iter().filter(|a| !now.contains(a)).copied().collect();
            prop_assert_eq!(tr, Transitions { entered: exp_entered, left: exp_left });
        }
    }
}

#[test]
fn loading_many_subjects_at_start_up() {
    let mut t = compound();
    let skipped = t.load([
        (1, fix(36.05, 0.05, Some(10.0), 5)),
        (2, fix(37.0, 0.05, None, 5)),
        (3, fix(f64::NAN, 0.0, None, 5)),
    ]);
    assert_eq!(skipped, 1);
    assert_eq!(t.len(), 2);
    assert_eq!(t.members_of(1), vec![1]);
    assert_eq!(t.positions().len(), 2);
    // Later fixes continue from the loaded state.
    assert_eq!(
        t.update(1, fix(36.5, 0.05, None, 6)).expect("valid"),
        left(&[1])
    );
    assert!(
        t.update(2, fix(36.6, 0.05, None, 4))
            .expect("valid")
            .is_empty(),
        "older than loaded"
    );
}

/// Everything a tracker says about a set of subjects and areas, for comparing two trackers.
fn observed(t: &Tracker, subjects: &[i64], areas: &[i64]) -> Vec<String> {
    let mut out: Vec<String> = subjects
        .iter()
        .map(|s| {
            format!(
                "subject {s}: {:?} {:?} {:?}",
                t.areas_of(*s),
                t.last_fix(*s),
                t.positions().get(*s)
            )
        })
        .collect();
    out.extend(
        areas
            .iter()
            .map(|a| format!("area {a}: {:?}", t.members_of(*a))),
    );
    out.push(format!("{} subjects", t.len()));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Preparing fixes under a shared borrow and applying them under an exclusive one gives
    /// the same transitions and the same final state as updating one fix at a time, whatever
    /// the chunks, with subjects seen several times per chunk, late fixes, invalid positions
    /// and accuracy circles on borders; and when the tracker changes between the two steps,
    /// the fixes are worked out again against the new state.
    #[test]
    fn prepared_fixes_apply_exactly_as_one_update_each(
        squares in prop::collection::vec((0.0..5.0f64, 0.0..5.0f64, 0.1..3.0f64), 1..8),
        walk in prop::collection::vec(
            (0i64..6, -1.0..9.0f64, -1.0..9.0f64, prop::option::of(0.0..200_000.0f64), 0i64..40, 0u8..20),
            1..80),
        chunk in 1usize..20,
        edit_between in any::<bool>(),
    ) {
        let areas: Vec<Area> = squares.iter().enumerate()
            .map(|(i, (x, y, w))| square_area(i as i64, *x, *y, x + w, y + w)).collect();
        let ids: Vec<i64> = (0..areas.len() as i64).chain([99]).collect();
        let subjects: Vec<i64> = (0..6).collect();
        let fixes: Vec<(i64, Fix)> = walk.iter().map(|&(s, x, y, acc, at, bad)| {
            // One fix in twenty has an impossible position.
            let lat = if bad == 0 { 95.0 } else { y };
            (s, fix(x, lat, acc, at))
        }).collect();
        let mut one_by_one = Tracker::with_areas(AreaIndex::from_areas(areas.clone()));
        let mut prepared = Tracker::with_areas(AreaIndex::from_areas(areas));
        let edit = square_area(99, 2.0, 2.0, 6.0, 6.0);
        for (k, part) in fixes.chunks(chunk).enumerate() {
            let batch = prepared.prepare(part);
            prop_assert_eq!(batch.len(), part.len());
            if edit_between && k == 1 {
                // An adviser saves an area while the fixes wait for the write lock.
                let a = prepared.upsert_area(edit.clone(), 20);
                let b = one_by_one.upsert_area(edit.clone(), 20);
                prop_assert_eq!(a, b);
            }
            let got = prepared.apply(batch);
            let expected: Vec<_> = part.iter().map(|(s, f)| one_by_one.update(*s, *f)).collect();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(observed(&prepared, &subjects, &ids), observed(&one_by_one, &subjects, &ids));
        }
    }
}

#[test]
fn fixes_prepared_on_one_tracker_are_worked_out_again_on_another() {
    let first = compound();
    let mut second = compound();
    second.update(7, fix(36.05, 0.05, None, 1)).expect("valid");
    let batch = first.prepare(&[(7, fix(36.5, 0.05, None, 2))]);
    // On `first`, subject 7 is new and outside; on `second` it was inside and leaves.
    assert_eq!(
        second.apply(batch),
        vec![Ok(left(&[1]))],
        "the second tracker's own state decides"
    );
    assert!(first.last_fix(7).is_none(), "preparing changes nothing");
}
