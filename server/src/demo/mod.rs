//! `vigil demo`: a believable deployment to explore — two organisations working in Kenya, South
//! Sudan and Somalia, one login per role, real country outlines (Natural Earth), duty stations
//! with their security areas, a few dozen staff with positions, and assets.
//!
//! Seeding is idempotent: a database that already holds the demo is reused as it is.

use serde::Serialize;
use vigil_geofences::{AreaKind, Fix, SecurityLevel, Shape, SubjectId};

use crate::AppState;
use crate::areas::{AreaInput, save, write_tracker};
use crate::auth::password;
use crate::db::now_ms;
use crate::duty_stations::NewDutyStation;
use crate::orgs::NewOrganisation;
use crate::policy::Role;
use crate::positions::Subject;
use crate::users::NewPerson;
use crate::users::store::insert_person;
use crate::{in_tx, on_reader};

/// The password of every demo login.
pub const DEMO_PASSWORD: &str = "vigil-demo-2026";

const COUNTRIES: &str = include_str!("countries.geojson");

/// A demo login, as written to `vigil-demo.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoLogin {
    /// Login email.
    pub email: String,
    /// Password.
    pub password: String,
    /// The role this login demonstrates (`admin` = system admin).
    pub role: String,
    /// Organisation short name.
    pub org: String,
}

/// What `vigil demo` writes to `vigil-demo.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoInfo {
    /// Where the console is.
    pub url: String,
    /// Every demo login.
    pub users: Vec<DemoLogin>,
}

struct Station {
    name: &'static str,
    cc: &'static str,
    lat: f64,
    lon: f64,
    level: i64,
    radius_km: f64,
}

const STATIONS: [Station; 9] = [
    Station {
        name: "Juba",
        cc: "SS",
        lat: 4.8594,
        lon: 31.5713,
        level: 4,
        radius_km: 12.0,
    },
    Station {
        name: "Malakal",
        cc: "SS",
        lat: 9.5334,
        lon: 31.6605,
        level: 5,
        radius_km: 8.0,
    },
    Station {
        name: "Bor",
        cc: "SS",
        lat: 6.2088,
        lon: 31.5589,
        level: 4,
        radius_km: 6.0,
    },
    Station {
        name: "Mogadishu",
        cc: "SO",
        lat: 2.0469,
        lon: 45.3182,
        level: 5,
        radius_km: 15.0,
    },
    Station {
        name: "Baidoa",
        cc: "SO",
        lat: 3.1138,
        lon: 43.6498,
        level: 5,
        radius_km: 8.0,
    },
    Station {
        name: "Kismayo",
        cc: "SO",
        lat: -0.3582,
        lon: 42.5454,
        level: 5,
        radius_km: 8.0,
    },
    Station {
        name: "Nairobi",
        cc: "KE",
        lat: -1.2921,
        lon: 36.8219,
        level: 2,
        radius_km: 25.0,
    },
    Station {
        name: "Garissa",
        cc: "KE",
        lat: -0.4532,
        lon: 39.6461,
        level: 4,
        radius_km: 10.0,
    },
    Station {
        name: "Dadaab",
        cc: "KE",
        lat: 0.0527,
        lon: 40.3089,
        level: 4,
        radius_km: 12.0,
    },
];

const GIVEN: [&str; 18] = [
    "Amina", "Joseph", "Claire", "Samuel", "Fatima", "Deng", "Nyakim", "Abdi", "Hodan", "Peter",
    "Grace", "Omar", "Layla", "Marc", "Achol", "Yusuf", "Wanjiru", "Ibrahim",
];
const FAMILY: [&str; 12] = [
    "Odhiambo", "Lado", "Dubois", "Mwangi", "Hassan", "Garang", "Ruei", "Warsame", "Farah",
    "Okello", "Kamau", "Mohamed",
];

/// Small deterministic generator so the demo looks the same on every machine.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        f64::from(u32::try_from(self.0 >> 40).unwrap_or(0)) / f64::from(1u32 << 24)
    }
}

/// Seeds the demo unless it is already there; returns the logins either way.
pub async fn seed(state: &AppState) -> anyhow::Result<Vec<DemoLogin>> {
    let logins = logins();
    let seeded: Option<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
        "SELECT id FROM organisations WHERE short_name = 'RCA'").fetch_optional(pool).await?);
    if seeded.is_some() {
        tracing::info!("demo data already present; reusing it");
        return Ok(logins);
    }
    tracing::info!("seeding demo data");
    let rca =
        crate::orgs::insert(&state.db, &org("Relief Coordination Agency", "RCA"), None).await?;
    let hhs =
        crate::orgs::insert(&state.db, &org("Humanitarian Health Service", "HHS"), None).await?;
    let mut station_ids = Vec::new();
    for s in &STATIONS {
        let ds = crate::duty_stations::insert(
            &state.db,
            &NewDutyStation {
                name: s.name.into(),
                country_code: s.cc.into(),
                lat: Some(s.lat),
                lon: Some(s.lon),
            },
        )
        .await?;
        station_ids.push(ds.id);
    }
    seed_areas(state).await?;

    // One password hash for every demo login: hashing is deliberately slow.
    let hash = password::hash(DEMO_PASSWORD.to_string()).await?;
    for login in &logins {
        let org_id = if login.org == "RCA" { rca.id } else { hhs.id };
        let station = if login.org == "RCA" {
            station_ids[0]
        } else {
            station_ids[3]
        };
        let person = NewPerson {
            email: login.email.clone(),
            name: display_name(&login.email),
            phone: Some(format!("+2547000{:05}", login.email.len() * 37)),
            duty_station_id: Some(station),
            preferred_language: Some(
                if login.email.starts_with("adviser@hhs") {
                    "fr"
                } else {
                    "en"
                }
                .into(),
            ),
            roles: match login.role.as_str() {
                "admin" => vec![Role::Staff, Role::OrgAdmin],
                r => Role::parse(r).into_iter().collect(),
            },
            system_admin: login.role == "admin",
            ..NewPerson::default()
        };
        insert_person(&state.db, org_id, &person, Some(hash.clone()), None).await?;
    }

    let mut rng = Lcg(0x5EED_2026);
    let now = now_ms();
    let mut staff = Vec::new();
    // What the tracker must hold once the rows are in: the server loaded it from storage
    // before the demo existed, so a first start would otherwise target nobody.
    let mut fixes: Vec<(SubjectId, Fix)> = Vec::new();
    for i in 0..36usize {
        let org_id = if i % 3 == 0 { hhs.id } else { rca.id };
        let si = i % STATIONS.len();
        let given = GIVEN[i % GIVEN.len()];
        let family = FAMILY[(i * 7 + 3) % FAMILY.len()];
        let short = if org_id == rca.id { "rca" } else { "hhs" };
        let person = NewPerson {
            email: format!(
                "{}.{}{}@{short}.example",
                given.to_lowercase(),
                family.to_lowercase(),
                i
            ),
            name: format!("{given} {family}"),
            phone: Some(format!("+2119{:08}", 10_000_000 + i * 7919)),
            duty_station_id: Some(station_ids[si]),
            preferred_language: Some(["en", "fr", "ar"][i % 3].into()),
            ..NewPerson::default()
        };
        let id = insert_person(&state.db, org_id, &person, None, None).await?;
        staff.push((id, si));
    }
    in_tx!(&state.db, tx => {
        for (id, si) in &staff {
            let s = &STATIONS[*si];
            // Within about 3 km of the station, fixes from the last few hours.
            let lat = s.lat + (rng.next() - 0.5) * 0.05;
            let lon = s.lon + (rng.next() - 0.5) * 0.05;
            let at = now - (rng.next() * 4.0 * 3_600_000.0) as i64;
            let accuracy_m = 5.0 + rng.next() * 30.0;
            for table in ["last_positions", "position_history"] {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO {table} (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) \
                     VALUES ('user', $1, $2, $3, $4, $5, $5, 'demo')")))
                    .bind(id).bind(lat).bind(lon).bind(accuracy_m).bind(at)
                    .execute(&mut *tx).await?;
            }
            fixes.push((Subject::User(*id).tracker_id(), Fix { lon, lat, accuracy_m: Some(accuracy_m), at_ms: at }));
        }
        let assets = [
            (rca.id, "vehicle", "RCA Land Cruiser JUB-01", "SSD-4471", 0usize),
            (rca.id, "vehicle", "RCA Land Cruiser MOG-02", "SOM-1182", 3),
            (rca.id, "satellite_phone", "Iridium — Malakal team", "+881631234567", 1),
            (hhs.id, "radio", "HF base radio Dadaab", "HF-DDB-1", 8),
            (hhs.id, "vehicle", "HHS ambulance Garissa", "KCX-552A", 7),
        ];
        for (org_id, kind, name, ident, si) in assets {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO assets (org_id, kind, name, identifier, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                .bind(org_id).bind(kind).bind(name).bind(ident).bind(now).fetch_one(&mut *tx).await?;
            let s = &STATIONS[si];
            let fix = Fix { lon: s.lon - 0.003, lat: s.lat + 0.004, accuracy_m: Some(10.0), at_ms: now - 600_000 };
            sqlx::query("INSERT INTO last_positions (subject_kind, subject_id, lat, lon, accuracy_m, recorded_at, received_at, source) \
                         VALUES ('asset', $1, $2, $3, $4, $5, $5, 'demo')")
                .bind(id).bind(fix.lat).bind(fix.lon).bind(fix.accuracy_m).bind(fix.at_ms).execute(&mut *tx).await?;
            fixes.push((Subject::Asset(id).tracker_id(), fix));
        }
    });
    {
        let mut tracker = write_tracker(&state.tracker);
        for (subject, fix) in fixes {
            // Seeded fixes are in range by construction; a refusal would only drop one dot.
            if let Err(e) = tracker.update(subject, fix) {
                tracing::warn!(subject, error = %e, "demo position not tracked");
            }
        }
    }
    tracing::info!("demo data seeded");
    Ok(logins)
}

fn org(name: &str, short: &str) -> NewOrganisation {
    NewOrganisation {
        name: name.into(),
        short_name: short.into(),
    }
}

fn display_name(email: &str) -> String {
    let (local, domain) = email.split_once('@').unwrap_or((email, ""));
    let org = domain.split('.').next().unwrap_or("").to_uppercase();
    let role = match local {
        "staff" => "Field Officer",
        "operator" => "SOC Operator",
        "adviser" => "Security Adviser",
        "orgadmin" => "Organisation Admin",
        "oversight" => "Oversight Officer",
        _ => "System Administrator",
    };
    format!("{org} {role}")
}

fn logins() -> Vec<DemoLogin> {
    let mut out = Vec::new();
    for org in ["RCA", "HHS"] {
        for (local, role) in [
            ("staff", "staff"),
            ("operator", "operator"),
            ("adviser", "adviser"),
            ("orgadmin", "org_admin"),
        ] {
            out.push(DemoLogin {
                email: format!("{local}@{}.example", org.to_lowercase()),
                password: DEMO_PASSWORD.into(),
                role: role.into(),
                org: org.into(),
            });
        }
    }
    out.push(DemoLogin {
        email: "oversight@rca.example".into(),
        password: DEMO_PASSWORD.into(),
        role: "oversight".into(),
        org: "RCA".into(),
    });
    out.push(DemoLogin {
        email: "sysadmin@rca.example".into(),
        password: DEMO_PASSWORD.into(),
        role: "admin".into(),
        org: "RCA".into(),
    });
    out
}

async fn seed_areas(state: &AppState) -> anyhow::Result<()> {
    let countries: geojson::FeatureCollection = serde_json::from_str(COUNTRIES)?;
    let mut country_ids = std::collections::HashMap::new();
    for f in &countries.features {
        let props = f.properties.clone().unwrap_or_default();
        let name = props
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let cc = props
            .get("country_code")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        let geometry = f
            .geometry
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("{name} has no outline"))?;
        let level = match cc.as_str() {
            "SO" => 5,
            "SS" => 4,
            _ => 3,
        };
        let saved = save(
            &state.db,
            &state.tracker,
            AreaInput {
                org_id: None,
                name,
                kind: AreaKind::Country,
                level: SecurityLevel::try_from(level).ok(),
                parent_id: None,
                advisory: None,
                shape: Shape::from_geometry(geometry, None)?,
                valid_from: None,
                valid_until: None,
            },
            None,
            None,
        )
        .await?;
        if let Some(geojson::feature::Id::Number(n)) = saved.id {
            country_ids.insert(cc, n.as_i64().unwrap_or_default());
        }
    }
    for s in &STATIONS {
        area(
            state,
            AreaKind::DutyStation,
            &format!("{} duty station", s.name),
            Some(s.level),
            country_ids.get(s.cc).copied(),
            Shape::circle(s.lon, s.lat, s.radius_km * 1000.0)?,
        )
        .await?;
    }
    // A few finer areas: a compound, its assembly point, and a no-go polygon.
    area(
        state,
        AreaKind::Premises,
        "RCA compound, Juba",
        None,
        country_ids.get("SS").copied(),
        Shape::circle(31.5825, 4.8462, 250.0)?,
    )
    .await?;
    area(
        state,
        AreaKind::AssemblyPoint,
        "Assembly point A, Juba compound",
        None,
        country_ids.get("SS").copied(),
        Shape::circle(31.5838, 4.8455, 60.0)?,
    )
    .await?;
    let airport = geojson::Geometry::new(geojson::GeometryValue::Polygon {
        coordinates: vec![vec![
            vec![45.2880, 2.0050].into(),
            vec![45.3170, 2.0180].into(),
            vec![45.3230, 2.0080].into(),
            vec![45.2950, 1.9930].into(),
            vec![45.2880, 2.0050].into(),
        ]],
    });
    area(
        state,
        AreaKind::SecurityArea,
        "Aden Adde airport zone, Mogadishu",
        Some(3),
        country_ids.get("SO").copied(),
        Shape::from_geometry(&airport, None)?,
    )
    .await?;
    Ok(())
}

async fn area(
    state: &AppState,
    kind: AreaKind,
    name: &str,
    level: Option<i64>,
    parent_id: Option<i64>,
    shape: Shape,
) -> anyhow::Result<()> {
    save(
        &state.db,
        &state.tracker,
        AreaInput {
            org_id: None,
            name: name.into(),
            kind,
            level: level.and_then(|l| SecurityLevel::try_from(l).ok()),
            parent_id,
            advisory: Some(format!(
                "{name}: check in with your security focal point on arrival and keep your phone charged."
            )),
            shape,
            valid_from: None,
            valid_until: None,
        },
        None,
        None,
    )
    .await?;
    Ok(())
}
