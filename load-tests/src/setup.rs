//! `setup`: as a system admin, creates an organisation, K staff with passwords (optionally each
//! with dependants, `--dependants`), an adviser, optionally operators (`--operators`) and M
//! staff without phones (`--offline`, see `offline.rs`), and a row of square security areas,
//! and writes them to a users file the scenarios read.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use reqwest::StatusCode;
use tokio::sync::Semaphore;

use crate::client::{Credentials, Fixture, Grid, Target, login};

/// Options of `setup`.
#[derive(Debug)]
pub struct SetupOpts {
    pub target: Target,
    pub admin_email: String,
    pub admin_password: String,
    pub org_short: String,
    pub users: usize,
    pub areas: usize,
    /// Staff without passwords whose trackers report for them (alert recipients beyond the
    /// sockets one process can hold).
    pub offline: usize,
    /// Operators (the operations room: SOS cases, roll-call boards), created after the adviser.
    pub operators: usize,
    /// Dependants listed on each staff member (each is a row of a roll-call, answered by them).
    pub dependants: usize,
    pub concurrency: usize,
    pub out: std::path::PathBuf,
}

pub async fn setup(o: SetupOpts) -> anyhow::Result<Fixture> {
    let http = reqwest::Client::new();
    let token = login(&http, &o.target, &o.admin_email, &o.admin_password)
        .await
        .context("logging in as the system admin")?;
    let api = format!("{}/api/v1", o.target.base);
    let short = o.org_short.to_lowercase();

    // The organisation (found again if it already exists).
    let resp = http
        .post(format!("{api}/organisations"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": format!("Load test {}", o.org_short), "short_name": o.org_short}))
        .send()
        .await?;
    let org_id = if resp.status() == StatusCode::CONFLICT {
        let orgs: Vec<serde_json::Value> = http
            .get(format!("{api}/organisations"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        orgs.iter()
            .find(|o2| o2["short_name"].as_str() == Some(o.org_short.as_str()))
            .and_then(|o2| o2["id"].as_i64())
            .context("organisation exists but is not listed")?
    } else {
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            bail!("creating the organisation: {status}: {body}");
        }
        body["id"].as_i64().context("organisation without id")?
    };
    eprintln!("organisation {} has id {org_id}", o.org_short);

    // Staff, `concurrency` at a time (each password is hashed with Argon2 on the server).
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let mut tasks = Vec::with_capacity(o.users);
    let dependants: Vec<serde_json::Value> = (0..o.dependants)
        .map(
            |d| serde_json::json!({"name": format!("Load Dependant {d}"), "relationship": "child"}),
        )
        .collect();
    let dependants = Arc::new(dependants);
    for i in 0..o.users {
        let permit = limit.clone().acquire_owned().await?;
        let (http, token, api) = (http.clone(), token.clone(), api.clone());
        let dependants = dependants.clone();
        let cred = Credentials {
            email: format!("staff{i:05}@{short}.load.example"),
            password: format!("load-test-password-{i:05}"),
        };
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let name = format!("Load Staff {i}");
            let member = Member {
                cred: &cred,
                name: &name,
                role: "staff",
                dependants: &dependants,
            };
            create_member(&http, &api, &token, org_id, member).await?;
            anyhow::Ok(cred)
        }));
    }
    let mut users = Vec::with_capacity(o.users);
    for (i, t) in tasks.into_iter().enumerate() {
        users.push(t.await??);
        if (i + 1) % 250 == 0 {
            eprintln!("  created {}/{} staff", i + 1, o.users);
        }
    }
    eprintln!(
        "{} staff ready in {:.1} s",
        users.len(),
        started.elapsed().as_secs_f64()
    );

    // The adviser who sends `broadcast`'s alerts and starts roll-calls, then the operators.
    let adviser = Credentials {
        email: format!("adviser@{short}.load.example"),
        password: "load-test-adviser-password".into(),
    };
    let member = Member {
        cred: &adviser,
        name: "Load Adviser",
        role: "adviser",
        dependants: &[],
    };
    create_member(&http, &api, &token, org_id, member).await?;
    let mut operators = Vec::with_capacity(o.operators);
    for i in 0..o.operators {
        let cred = Credentials {
            email: format!("operator{i:03}@{short}.load.example"),
            password: format!("load-test-operator-password-{i:03}"),
        };
        let name = format!("Load Operator {i}");
        let member = Member {
            cred: &cred,
            name: &name,
            role: "operator",
            dependants: &[],
        };
        create_member(&http, &api, &token, org_id, member).await?;
        operators.push(cred);
    }
    let offline = crate::offline::prepare(
        &http,
        &o.target,
        &token,
        org_id,
        &o.org_short,
        o.offline,
        o.concurrency.max(16),
    )
    .await?;

    // A row of squares near Juba with gaps between them: a device walking east along the band
    // enters and leaves each in turn.
    let grid = Grid {
        lat_min: 4.80,
        lat_max: 4.84,
        lon_min: 31.50,
        side: 0.02,
        gap: 0.01,
        areas: o.areas.max(1),
    };
    let mut area_ids = Vec::with_capacity(grid.areas);
    for i in 0..grid.areas {
        let feature = serde_json::json!({
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [grid.ring(i)]},
            "properties": {
                "name": format!("Load {} sector {i}", o.org_short), "kind": "security_area",
                "security_level": 3, "org_id": org_id,
                "advisory": "Load-test area: check in with the security focal point.",
            },
        });
        let resp = http
            .post(format!("{api}/areas"))
            .bearer_auth(&token)
            .json(&feature)
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await?;
        if !status.is_success() {
            bail!("creating area {i}: {status}: {body}");
        }
        let id = body["id"]
            .as_i64()
            .or_else(|| body["properties"]["id"].as_i64())
            .or_else(|| body["id"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or_default();
        area_ids.push(id);
    }
    eprintln!("{} areas created: {area_ids:?}", area_ids.len());

    let fixture = Fixture {
        url: o.target.base.clone(),
        org_id,
        users,
        area_ids,
        grid,
        adviser: Some(adviser),
        offline,
        operators,
    };
    write_fixture(&o.out, &fixture)?;
    Ok(fixture)
}

/// One member of the organisation to create, with a password and one role.
struct Member<'a> {
    cred: &'a Credentials,
    name: &'a str,
    role: &'a str,
    dependants: &'a [serde_json::Value],
}

/// Creates one member of the organisation (409: an earlier run made them, with the same
/// password).
async fn create_member(
    http: &reqwest::Client,
    api: &str,
    token: &str,
    org_id: i64,
    m: Member<'_>,
) -> anyhow::Result<()> {
    let resp = http
        .post(format!("{api}/organisations/{org_id}/users"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "email": m.cred.email, "name": m.name, "password": m.cred.password,
            "roles": [m.role], "dependants": m.dependants,
        }))
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() && status != StatusCode::CONFLICT {
        let body = resp.text().await.unwrap_or_default();
        bail!("creating {}: {status}: {body}", m.cred.email);
    }
    Ok(())
}

/// `login`: logs the first `count` users of the fixture in and writes their access tokens to
/// `out` (a JSON array); returns them.
pub async fn login_to_file(
    target: &Target,
    fixture: &Fixture,
    count: usize,
    concurrency: usize,
    out: &Path,
) -> anyhow::Result<Vec<String>> {
    let tokens = crate::client::login_many(target, &fixture.users, count, concurrency).await?;
    std::fs::write(out, serde_json::to_string(&tokens)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "login: {} access tokens written to {}",
        tokens.len(),
        out.display()
    );
    Ok(tokens)
}

fn write_fixture(path: &Path, f: &Fixture) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(f)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    println!(
        "setup: on {}: organisation id {}, {} staff, an adviser, {} operators, {} offline staff, {} areas; written to {}",
        f.url,
        f.org_id,
        f.users.len(),
        f.operators.len(),
        f.offline.len(),
        f.area_ids.len(),
        path.display()
    );
    Ok(())
}
