//! Our spatial engine beside PostGIS and Redis, on the same data and the same queries.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-geo cargo run --release -p vigil-geofences --example peers
//! ```
//!
//! Environment (all optional):
//! * `VIGIL_BENCH_PG` — PostgreSQL URL of a database we may create another one from
//!   (default `postgres://postgres@127.0.0.1:5432/postgres`). The program creates
//!   `vigil_bench_geo`, loads it, and drops it at the end.
//! * `VIGIL_BENCH_REDIS` — Redis address (default `127.0.0.1:6379`); the key
//!   `vigil:bench:positions` is created and deleted.
//! * `VIGIL_BENCH_POSITIONS` — tracked positions (default 1,000,000).
//!
//! A peer that is not reachable is skipped with a loud message; ours always runs. Every
//! operation is timed on its own, client side (for the peers: one round trip on a local socket,
//! prepared statement, results decoded), and the table shows median and 99th percentile.

#[path = "../benches/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sqlx::{Connection, Executor, PgConnection, Row};
use vigil_geofences::{AreaIndex, Fix, PositionIndex, Shape, ShapeGeometry, Tracker};

const DB: &str = "vigil_bench_geo";
const DROP_DB: &str = "DROP DATABASE IF EXISTS vigil_bench_geo";
const CREATE_DB: &str = "CREATE DATABASE vigil_bench_geo";
const REDIS_KEY: &str = "vigil:bench:positions";

/// Median and 99th percentile of per-operation times, and the hits of the last operation.
#[derive(Clone, Copy, Debug)]
struct Figure {
    median: Duration,
    p99: Duration,
    hits: usize,
}

fn figure(mut times: Vec<Duration>, hits: usize) -> Figure {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    Figure {
        median: at(0.5),
        p99: at(0.99),
        hits,
    }
}

/// CPU time this thread has run, in ns (Linux `/proc/thread-self/schedstat`), to tell our
/// cost from time spent waiting for a core on a shared machine.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Mean CPU time per run of `op` over `n` runs, untimed otherwise.
fn cpu_per_op(n: usize, mut op: impl FnMut(usize) -> usize) -> Option<Duration> {
    let before = thread_cpu_ns()?;
    let mut sink = 0;
    for i in 0..n {
        sink += op(i);
    }
    std::hint::black_box(sink);
    let after = thread_cpu_ns()?;
    Some(Duration::from_nanos((after - before) / n as u64))
}

/// Times `n` runs of `op` (given the run number), each on its own.
fn time_sync(n: usize, mut op: impl FnMut(usize) -> usize) -> Figure {
    let mut times = Vec::with_capacity(n);
    let mut hits = 0;
    for i in 0..n {
        let t = Instant::now();
        hits = op(i);
        times.push(t.elapsed());
    }
    figure(times, hits)
}

/// One row of the table: a query, and each engine's figure (or why it has none).
struct Row3 {
    query: &'static str,
    ours: Figure,
    postgis: Result<Figure, String>,
    redis: Result<Figure, String>,
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.2} µs")
    }
}

fn cell(f: &Result<Figure, String>) -> String {
    match f {
        Ok(f) => format!(
            "{} (p99 {}, {} hits)",
            fmt_dur(f.median),
            fmt_dur(f.p99),
            f.hits
        ),
        Err(why) => why.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries shared by all engines

struct Workload {
    points: Vec<(f64, f64)>,
    moves: Vec<(i64, f64, f64, f64)>,
    centres: Vec<(f64, f64)>,
}

const N_POINT: usize = 5_000;
const N_MOVE: usize = 5_000;
const N_BIG: usize = 30;
const N_RADIUS: usize = 1_000;
const N_NEAREST: usize = 1_000;

// ---------------------------------------------------------------------------------------------
// Redis, spoken in RESP over a socket: a handful of commands need no client library.

struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

#[derive(Debug)]
enum Resp {
    Ok,
    Int,
    Bulk,
    Array(Vec<Resp>),
}

impl Redis {
    fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
    }

    fn read(&mut self) -> std::io::Result<Resp> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let (kind, rest) = line.trim_end().split_at(1.min(line.len()));
        let bad = |m: String| std::io::Error::other(m);
        match kind {
            "+" => Ok(Resp::Ok),
            "-" => Err(bad(format!("redis error: {rest}"))),
            ":" => rest
                .parse::<i64>()
                .map(|_| Resp::Int)
                .map_err(|e| bad(e.to_string())),
            "$" => {
                let n: i64 = rest
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?;
                if n >= 0 {
                    let mut buf = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut buf)?;
                }
                Ok(Resp::Bulk)
            }
            "*" => {
                let n: i64 = rest
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?;
                (0..n.max(0))
                    .map(|_| self.read())
                    .collect::<Result<_, _>>()
                    .map(Resp::Array)
            }
            other => Err(bad(format!("unexpected RESP type {other:?}"))),
        }
    }

    fn cmd(&mut self, args: &[&[u8]]) -> std::io::Result<Resp> {
        let mut buf = Vec::new();
        Self::encode(&mut buf, args);
        self.writer.write_all(&buf)?;
        self.read()
    }

    /// GEOSEARCH results as member names.
    fn members(r: Resp) -> usize {
        match r {
            Resp::Array(v) => v.len(),
            _ => 0,
        }
    }
}

fn run_redis(world: &common::World, w: &Workload, city_r: f64) -> Result<Vec<Figure>, String> {
    let addr = std::env::var("VIGIL_BENCH_REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into());
    let mut r = Redis::connect(&addr).map_err(|e| format!("SKIPPED: no Redis at {addr}: {e}"))?;
    let io = |e: std::io::Error| format!("Redis failed: {e}");
    r.cmd(&[b"DEL", REDIS_KEY.as_bytes()]).map_err(io)?;
    let t = Instant::now();
    // Load: pipelined GEOADD of 10,000 members each.
    for chunk in world.positions.chunks(10_000) {
        let mut args: Vec<Vec<u8>> = vec![b"GEOADD".to_vec(), REDIS_KEY.as_bytes().to_vec()];
        for &(id, lon, lat) in chunk {
            // Redis refuses latitudes beyond ±85.05112878 (its Web Mercator geohash).
            let lat = lat.clamp(-85.05, 85.05);
            args.push(lon.to_string().into_bytes());
            args.push(lat.to_string().into_bytes());
            args.push(id.to_string().into_bytes());
        }
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        r.cmd(&refs).map_err(io)?;
    }
    eprintln!(
        "redis: loaded {} positions in {:.1?}",
        world.positions.len(),
        t.elapsed()
    );

    let key = REDIS_KEY.as_bytes();
    let search = |r: &mut Redis, lon: f64, lat: f64, radius: f64, count: Option<usize>| {
        let (lon, lat, radius) = (lon.to_string(), lat.to_string(), radius.to_string());
        let count = count.map(|c| c.to_string());
        let mut args: Vec<&[u8]> = vec![
            b"GEOSEARCH",
            key,
            b"FROMLONLAT",
            lon.as_bytes(),
            lat.as_bytes(),
            b"BYRADIUS",
            radius.as_bytes(),
            b"m",
            b"ASC",
        ];
        if let Some(c) = &count {
            args.push(b"COUNT");
            args.push(c.as_bytes());
        }
        r.cmd(&args).map(Redis::members)
    };
    let mut failed = None;
    let mut guard = |res: std::io::Result<usize>| match res {
        Ok(n) => n,
        Err(e) => {
            failed.get_or_insert(e.to_string());
            0
        }
    };
    let circle = time_sync(N_BIG, |_| {
        guard(search(
            &mut r,
            common::NAIROBI.0,
            common::NAIROBI.1,
            city_r,
            None,
        ))
    });
    let radius = time_sync(N_RADIUS, |i| {
        let (x, y) = w.centres[i % w.centres.len()];
        guard(search(&mut r, x, y, 1_000.0, None))
    });
    let nearest = time_sync(N_NEAREST, |i| {
        let (x, y) = w.points[i % w.points.len()];
        guard(search(&mut r, x, y.clamp(-85.0, 85.0), 100_000.0, Some(10)))
    });
    let update = time_sync(N_MOVE, |i| {
        let (id, lon, lat, _) = w.moves[i % w.moves.len()];
        let (lon, lat, id) = (
            lon.to_string(),
            lat.clamp(-85.05, 85.05).to_string(),
            id.to_string(),
        );
        guard(
            r.cmd(&[
                b"GEOADD",
                key,
                lon.as_bytes(),
                lat.as_bytes(),
                id.as_bytes(),
            ])
            .map(|_| 0),
        )
    });
    let _ = r.cmd(&[b"DEL", key]);
    match failed {
        Some(e) => Err(format!("Redis failed: {e}")),
        None => Ok(vec![circle, radius, nearest, update]),
    }
}

// ---------------------------------------------------------------------------------------------
// PostGIS

fn geojson_of(area: &vigil_geofences::Area) -> String {
    area.shape.to_geometry().to_string()
}

async fn load_postgis(world: &common::World, base_url: &str) -> Result<PgConnection, String> {
    let err = |e: sqlx::Error| format!("PostGIS failed: {e}");
    let mut admin = PgConnection::connect(base_url)
        .await
        .map_err(|e| format!("SKIPPED: no PostgreSQL at {base_url}: {e}"))?;
    admin.execute(DROP_DB).await.map_err(err)?;
    admin.execute(CREATE_DB).await.map_err(err)?;
    admin.close().await.map_err(err)?;
    let url = match base_url.rsplit_once('/') {
        Some((head, _)) => format!("{head}/{DB}"),
        None => {
            return Err(format!(
                "PostGIS: cannot derive a database URL from {base_url}"
            ));
        }
    };
    let mut db = PgConnection::connect(&url).await.map_err(err)?;
    db.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        .await
        .map_err(|e| {
            format!("SKIPPED: PostGIS extension unavailable ({e}); install postgresql-15-postgis-3")
        })?;
    db.execute(
        "CREATE TABLE vigil_areas (id bigint PRIMARY KEY, geom geometry(MultiPolygon, 4326) NOT NULL);
         CREATE TABLE vigil_positions (id bigint PRIMARY KEY, geom geometry(Point, 4326) NOT NULL);",
    )
    .await
    .map_err(err)?;

    let t = Instant::now();
    let mut tx = db.begin().await.map_err(err)?;
    for a in world.all_areas() {
        match a.shape.geometry() {
            ShapeGeometry::Circle { lon, lat, radius_m } => {
                // PostGIS has no geodesic circle type: a 64-gon buffer on the geography.
                sqlx::query(
                    "INSERT INTO vigil_areas VALUES ($1, ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint($2, $3), 4326)::geography, $4, 'quad_segs=16')::geometry))",
                )
                .bind(a.id)
                .bind(*lon)
                .bind(*lat)
                .bind(*radius_m)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            }
            ShapeGeometry::Polygons(_) => {
                sqlx::query("INSERT INTO vigil_areas VALUES ($1, ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON($2), 4326)))")
                    .bind(a.id)
                    .bind(geojson_of(&a))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
        }
    }
    tx.commit().await.map_err(err)?;
    eprintln!(
        "postgis: loaded {} areas in {:.1?}",
        world.all_areas().len(),
        t.elapsed()
    );

    let t = Instant::now();
    let mut copy = db
        .copy_in_raw("COPY vigil_positions (id, geom) FROM STDIN")
        .await
        .map_err(err)?;
    for chunk in world.positions.chunks(50_000) {
        let mut buf = String::with_capacity(chunk.len() * 48);
        for &(id, lon, lat) in chunk {
            buf.push_str(&format!("{id}\tSRID=4326;POINT({lon} {lat})\n"));
        }
        copy.send(buf.into_bytes()).await.map_err(err)?;
    }
    copy.finish().await.map_err(err)?;
    db.execute(
        "CREATE INDEX vigil_areas_geom ON vigil_areas USING gist (geom);
         CREATE INDEX vigil_positions_geom ON vigil_positions USING gist (geom);
         CREATE INDEX vigil_positions_geog ON vigil_positions USING gist ((geom::geography));
         ANALYZE vigil_areas; ANALYZE vigil_positions;",
    )
    .await
    .map_err(err)?;
    eprintln!(
        "postgis: loaded and indexed {} positions in {:.1?}",
        world.positions.len(),
        t.elapsed()
    );
    Ok(db)
}

async fn run_postgis(
    world: &common::World,
    w: &Workload,
    city_r: f64,
) -> Result<Vec<Figure>, String> {
    let base = std::env::var("VIGIL_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut db = load_postgis(world, &base).await?;
    let db = &mut db;
    let ids = |rows: Vec<sqlx::postgres::PgRow>| {
        // Decode every id, as a server would, then count them.
        let decoded: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
        decoded.len()
    };

    let point_sql = "SELECT id FROM vigil_areas WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint($1, $2), 4326))";
    let mut figs = Vec::new();
    let mut times = Vec::with_capacity(N_POINT);
    let mut hits = 0;
    for i in 0..N_POINT {
        let (x, y) = w.points[i % w.points.len()];
        let t = Instant::now();
        let rows = sqlx::query(point_sql)
            .bind(x)
            .bind(y)
            .fetch_all(&mut *db)
            .await;
        times.push(t.elapsed());
        hits = ids(rows.map_err(|e| format!("PostGIS failed: {e}"))?);
    }
    figs.push(figure(times, hits));

    let in_area = "SELECT p.id FROM vigil_positions p JOIN vigil_areas a ON ST_Contains(a.geom, p.geom) WHERE a.id = $1";
    for id in [common::CITY_ID, common::KENYA_ID] {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..N_BIG {
            let t = Instant::now();
            let rows = sqlx::query(in_area).bind(id).fetch_all(&mut *db).await;
            times.push(t.elapsed());
            hits = ids(rows.map_err(|e| format!("PostGIS failed: {e}"))?);
        }
        figs.push(figure(times, hits));
    }

    let radius_sql = "SELECT id FROM vigil_positions WHERE ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint($1, $2), 4326)::geography, $3)";
    for (n, centre_radius) in [(N_BIG, None), (N_RADIUS, Some(1_000.0))] {
        let mut times = Vec::new();
        let mut hits = 0;
        for i in 0..n {
            let ((x, y), r) = match centre_radius {
                None => (common::NAIROBI, city_r),
                Some(r) => (w.centres[i % w.centres.len()], r),
            };
            let t = Instant::now();
            let rows = sqlx::query(radius_sql)
                .bind(x)
                .bind(y)
                .bind(r)
                .fetch_all(&mut *db)
                .await;
            times.push(t.elapsed());
            hits = ids(rows.map_err(|e| format!("PostGIS failed: {e}"))?);
        }
        figs.push(figure(times, hits));
    }

    let knn = "SELECT id FROM vigil_positions ORDER BY geom <-> ST_SetSRID(ST_MakePoint($1, $2), 4326) LIMIT 10";
    let mut times = Vec::new();
    let mut hits = 0;
    for i in 0..N_NEAREST {
        let (x, y) = w.points[i % w.points.len()];
        let t = Instant::now();
        let rows = sqlx::query(knn).bind(x).bind(y).fetch_all(&mut *db).await;
        times.push(t.elapsed());
        hits = ids(rows.map_err(|e| format!("PostGIS failed: {e}"))?);
    }
    figs.push(figure(times, hits));

    // The move and the areas at the new point in one round trip; entered/left would be a
    // diff in the application (no hysteresis).
    let update = "WITH moved AS (UPDATE vigil_positions SET geom = ST_SetSRID(ST_MakePoint($2, $3), 4326) WHERE id = $1)
                  SELECT id FROM vigil_areas WHERE ST_Contains(geom, ST_SetSRID(ST_MakePoint($2, $3), 4326))";
    let mut times = Vec::new();
    let mut hits = 0;
    for i in 0..N_MOVE {
        let (id, x, y, _) = w.moves[i % w.moves.len()];
        let t = Instant::now();
        let rows = sqlx::query(update)
            .bind(id)
            .bind(x)
            .bind(y)
            .fetch_all(&mut *db)
            .await;
        times.push(t.elapsed());
        hits = ids(rows.map_err(|e| format!("PostGIS failed: {e}"))?);
    }
    figs.push(figure(times, hits));
    Ok(figs)
}

async fn drop_postgis() {
    let base = std::env::var("VIGIL_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    if let Ok(mut admin) = PgConnection::connect(&base).await {
        let _ = admin.execute(DROP_DB).await;
    }
}

// ---------------------------------------------------------------------------------------------

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("VIGIL_BENCH_POSITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t = Instant::now();
    let world = common::World::build(n);
    let w = Workload {
        points: common::query_points(&world.positions, N_POINT),
        moves: common::moves(&world.positions, N_MOVE * 40),
        centres: common::query_points(&world.positions, N_RADIUS),
    };
    let city_r = 5_000.0;
    eprintln!(
        "world: {} countries, {} security areas, {} positions, built in {:.1?}",
        world.countries.len(),
        world.areas.len(),
        world.positions.len(),
        t.elapsed()
    );

    // Ours.
    let areas = AreaIndex::from_areas(world.all_areas());
    let positions = PositionIndex::bulk_load(world.positions.iter().copied());
    let circle = Shape::circle(common::NAIROBI.0, common::NAIROBI.1, city_r).expect("circle");
    let ours_point = time_sync(N_POINT, |i| {
        let (x, y) = w.points[i % w.points.len()];
        areas.containing(x, y, 0).len()
    });
    let cpu_point = cpu_per_op(N_POINT * 20, |i| {
        let (x, y) = w.points[i % w.points.len()];
        areas.containing(x, y, 0).len()
    });
    let ours_city = time_sync(N_BIG, |_| positions.within_shape(&world.city.shape).len());
    let ours_kenya = time_sync(N_BIG, |_| {
        positions.within_shape(&world.kenya().shape).len()
    });
    let ours_circle = time_sync(N_BIG, |_| positions.within_shape(&circle).len());
    let ours_radius = time_sync(N_RADIUS, |i| {
        let (x, y) = w.centres[i % w.centres.len()];
        let c = Shape::circle(x, y, 1_000.0).expect("circle");
        positions.within_shape(&c).len()
    });
    let ours_nearest = time_sync(N_NEAREST, |i| {
        let (x, y) = w.points[i % w.points.len()];
        positions.nearest(x, y, 10).len()
    });
    drop(positions);
    let mut tracker = Tracker::with_areas(areas);
    tracker.load(world.fixes());
    // Ours is timed over more updates than the peers (it is cheap): the first few thousand
    // after a bulk load are slower while the tree's pages fault in.
    let ours_update = time_sync(N_MOVE * 40, |i| {
        let (id, lon, lat, acc) = w.moves[i % w.moves.len()];
        let fix = Fix {
            lon,
            lat,
            accuracy_m: Some(acc),
            at_ms: 1 + i as i64,
        };
        tracker
            .update(id, fix)
            .map(|t| t.entered.len() + t.left.len())
            .unwrap_or(0)
    });
    // CPU time of as many updates again, each taking a moved subject back (near) to where it
    // started: the same distances as the timed moves.
    let cpu_update = cpu_per_op(N_MOVE * 40, |i| {
        let (id, _, _, acc) = w.moves[i % w.moves.len()];
        let (_, lon, lat) = world.positions[id as usize];
        let (lon, lat) = (lon + 1e-7, lat + 1e-7);
        let fix = Fix {
            lon: lon.clamp(-180.0, 180.0),
            lat: lat.clamp(-90.0, 90.0),
            accuracy_m: Some(acc),
            at_ms: (N_MOVE * 40 + 1 + i) as i64,
        };
        tracker
            .update(id, fix)
            .map(|t| t.entered.len() + t.left.len())
            .unwrap_or(0)
    });
    drop(tracker);

    let postgis = run_postgis(&world, &w, city_r).await;
    drop_postgis().await;
    let redis = run_redis(&world, &w, city_r);

    let pg = |k: usize| postgis.as_ref().map(|v| v[k]).map_err(Clone::clone);
    let rd = |k: usize| redis.as_ref().map(|v| v[k]).map_err(Clone::clone);
    let na = || Err::<Figure, String>("n/a (no polygons)".into());
    let rows = [
        Row3 {
            query: "point → areas (ST_Contains)",
            ours: ours_point,
            postgis: pg(0),
            redis: na(),
        },
        Row3 {
            query: "subjects in city polygon",
            ours: ours_city,
            postgis: pg(1),
            redis: na(),
        },
        Row3 {
            query: "subjects in Kenya",
            ours: ours_kenya,
            postgis: pg(2),
            redis: na(),
        },
        Row3 {
            query: "radius 5 km, Nairobi (ST_DWithin / GEOSEARCH)",
            ours: ours_circle,
            postgis: pg(3),
            redis: rd(0),
        },
        Row3 {
            query: "radius 1 km, random centres",
            ours: ours_radius,
            postgis: pg(4),
            redis: rd(1),
        },
        Row3 {
            query: "nearest 10",
            ours: ours_nearest,
            postgis: pg(5),
            redis: rd(2),
        },
        Row3 {
            query: "position update (+ transitions)",
            ours: ours_update,
            postgis: pg(6),
            redis: rd(3),
        },
    ];
    let show = |d: Option<Duration>| d.map_or("unavailable".to_string(), fmt_dur);
    println!(
        "\nours, CPU time per operation (mean, excluding time waiting for a core): point → areas {}, update with transitions {}",
        show(cpu_point),
        show(cpu_update)
    );
    for r in [&postgis, &redis] {
        if let Err(why) = r {
            eprintln!("\n!!! {why}\n");
        }
    }
    println!("\n| query | vigil-geofences | PostGIS | Redis |");
    println!("| --- | --- | --- | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} |",
            r.query,
            cell(&Ok(r.ours)),
            cell(&r.postgis),
            cell(&r.redis)
        );
    }
}
