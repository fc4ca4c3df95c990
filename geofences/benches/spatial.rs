//! Criterion benchmarks of the spatial engine at the scale of an organisation in a crisis:
//! 1,000,000 tracked positions, every country outline and 10,000 security areas.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-geo cargo bench -p vigil-geofences --bench spatial`
//! (about two minutes; building the world takes a few seconds of it). Goals: point → areas under
//! 2 µs median, an update with transitions under 3 µs median, 50,000 subjects in a city polygon
//! among 1,000,000 in under 10 ms.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use vigil_geofences::{AreaIndex, Fix, PositionIndex, Shape, Tracker};

fn spatial(c: &mut Criterion) {
    let world = common::World::build(1_000_000);
    let areas = AreaIndex::from_areas(world.all_areas());
    let positions = PositionIndex::bulk_load(world.positions.iter().copied());
    let points = common::query_points(&world.positions, 1 << 14);
    let city = world.city.shape.clone();
    let kenya = world.kenya().shape.clone();
    let circle = Shape::circle(common::NAIROBI.0, common::NAIROBI.1, 5_000.0).expect("circle");
    eprintln!(
        "world: {} areas, {} positions; city holds {}, Kenya {}, 5 km circle {}",
        areas.len(),
        positions.len(),
        positions.within_shape(&city).len(),
        positions.within_shape(&kenya).len(),
        positions.within_shape(&circle).len(),
    );

    let mut g = c.benchmark_group("spatial");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));

    let mut i = 0usize;
    g.bench_function("point_to_areas", |b| {
        b.iter(|| {
            let (x, y) = points[i & (points.len() - 1)];
            i += 1;
            black_box(areas.containing(x, y, 0))
        })
    });
    g.bench_function("effective_level", |b| {
        b.iter(|| {
            let (x, y) = points[i & (points.len() - 1)];
            i += 1;
            black_box(areas.effective_level(x, y, 0))
        })
    });
    g.bench_function("nearest_10", |b| {
        b.iter(|| {
            let (x, y) = points[i & (points.len() - 1)];
            i += 1;
            black_box(positions.nearest(x, y, 10))
        })
    });
    g.bench_function("within_circle_5km", |b| {
        b.iter(|| black_box(positions.within_shape(&circle)))
    });

    g.sample_size(20);
    g.bench_function("within_city_polygon_50k", |b| {
        b.iter(|| black_box(positions.within_shape(&city)))
    });
    g.bench_function("within_country_kenya", |b| {
        b.iter(|| black_box(positions.within_shape(&kenya)))
    });
    drop(positions);

    // Each step moves a subject from where it is now (tracked in `current`, outside the
    // timing), in alternating directions on alternate passes over the list, so no step
    // repeats a position already held (which would skip the index work).
    g.sample_size(100);
    let deltas = common::deltas(&world.positions, 1 << 16);
    let mut current: Vec<(f64, f64)> = world.positions.iter().map(|&(_, x, y)| (x, y)).collect();
    let mut next_step = move |i: &mut usize| {
        let (s, dx, dy, acc) = deltas[*i & (deltas.len() - 1)];
        let sign = if (*i / deltas.len()).is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        *i += 1;
        let p = &mut current[s as usize];
        *p = (
            (p.0 + sign * dx).clamp(-180.0, 180.0),
            (p.1 + sign * dy).clamp(-90.0, 90.0),
        );
        (s, p.0, p.1, acc)
    };
    let mut moved = PositionIndex::bulk_load(world.positions.iter().copied());
    let mut j = 0usize;
    g.bench_function("position_move_only", |b| {
        b.iter_batched(
            || next_step(&mut j),
            |(s, x, y, _)| black_box(moved.upsert(s, x, y)),
            BatchSize::SmallInput,
        )
    });
    drop(moved);

    let mut tracker = Tracker::with_areas(areas);
    tracker.load(world.fixes());
    let mut clock = 1i64;
    g.bench_function("update_with_transitions", |b| {
        b.iter_batched(
            || {
                clock += 1;
                (next_step(&mut j), clock)
            },
            |((s, lon, lat, acc), at_ms)| {
                let fix = Fix {
                    lon,
                    lat,
                    accuracy_m: Some(acc),
                    at_ms,
                };
                black_box(tracker.update(s, fix))
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, spatial);
criterion_main!(benches);
