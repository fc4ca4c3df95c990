//! How long the on-device check takes for a phone following 500 alert areas (goal: < 50 µs a
//! fix): `cargo run --release -p vigil-sdk --example containment`.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use vigil_protocol::{AlertArea, AlertAreas, Timestamp};
use vigil_sdk::AlertPlaces;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 500 alerts over a 5° × 5° region: 250 twelve-sided polygons and 250 circles.
    let list: Vec<AlertAreas> = (0..500)
        .map(|i| {
            let (lon, lat) = (30.0 + f64::from(i % 25) * 0.2, f64::from(i / 25) * 0.2);
            let area = if i % 2 == 0 {
                let ring: Vec<[f64; 2]> = (0..=12)
                    .map(|k| {
                        let a = f64::from(k % 12) * std::f64::consts::TAU / 12.0;
                        [lon + 0.08 * a.cos(), lat + 0.08 * a.sin()]
                    })
                    .collect();
                AlertArea {
                    geometry: json!({"type": "Polygon", "coordinates": [ring]}),
                    radius_m: None,
                }
            } else {
                AlertArea {
                    geometry: json!({"type": "Point", "coordinates": [lon, lat]}),
                    radius_m: Some(8_000.0),
                }
            };
            AlertAreas {
                alert_id: i64::from(i),
                expires_at: Timestamp(i64::MAX),
                reasons: vec![],
                areas: vec![area],
            }
        })
        .collect();
    let started = Instant::now();
    let places = AlertPlaces::new(&list)?;
    let built = started.elapsed();
    let fixes: Vec<(f64, f64)> = (0..100_000)
        .map(|i| {
            let t = f64::from(i) / 100_000.0;
            (t * 4.0, 30.0 + (t * 37.0).fract() * 5.0)
        })
        .collect();
    let mut samples = Vec::with_capacity(fixes.len());
    let mut inside = 0usize;
    for (lat, lon) in &fixes {
        let t = Instant::now();
        inside += black_box(places.inside(*lat, *lon, 0)).len();
        samples.push(t.elapsed().as_nanos());
    }
    samples.sort_unstable();
    let pct = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)] as f64 / 1_000.0;
    let t = Instant::now();
    let regions = places.watch_regions(2.0, 32.5, 0, vigil_sdk::geofence::ANDROID_GEOFENCE_LIMIT);
    let watch = t.elapsed();
    println!(
        "| areas | index built | containment p50 | p99 | max | fixes inside | nearest 90 circles |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| 500 | {:.2} ms | {:.2} µs | {:.2} µs | {:.2} µs | {inside} of {} | {:.0} µs ({} circles) |",
        built.as_secs_f64() * 1e3,
        pct(50),
        pct(99),
        pct(100),
        fixes.len(),
        watch.as_secs_f64() * 1e6,
        regions.len()
    );
    Ok(())
}
