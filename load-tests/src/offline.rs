//! Staff whose phones are not connected: `setup --offline M` imports M staff without passwords
//! through the roster upload (no password hash: tens of thousands in seconds) and issues each a
//! tracker credential; before `broadcast` sends, every tracker reports a position through the
//! OsmAnd protocol (`/api/v1/ingest/osmand`), as Traccar Client on a sleeping phone would. Those people
//! are then inside the alert's polygon without a WebSocket: their copies are stored with the
//! rest and wait for resume or the fallbacks. This is how one alert reaches more people than
//! one process can hold sockets for (the open-file limit; see README.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::client::Target;

/// One person without a connected phone, and the secret of the tracker that reports for them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OfflineStaff {
    pub user_id: i64,
    pub device_secret: String,
}

/// Imports `count` staff without passwords into the organisation (re-running finds them
/// again) and issues a tracker credential for each, `concurrency` requests at a time.
pub async fn prepare(
    http: &reqwest::Client,
    target: &Target,
    admin_token: &str,
    org_id: i64,
    org_short: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<OfflineStaff>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let api = format!("{}/api/v1", target.base);
    let short = org_short.to_lowercase();
    let emails: Vec<String> = (0..count)
        .map(|i| format!("offline{i:05}@{short}.load.example"))
        .collect();
    let started = Instant::now();
    let rows: Vec<serde_json::Value> = emails
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"email": e, "name": format!("Offline Staff {i}"), "roles": ["staff"]}))
        .collect();
    let resp = http
        .post(format!("{api}/organisations/{org_id}/roster"))
        .bearer_auth(admin_token)
        .json(&rows)
        .send()
        .await
        .context("roster upload")?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("importing {count} offline staff: {status}: {body}");
    }
    eprintln!(
        "roster of {count} offline staff imported in {:.1} s: {body}",
        started.elapsed().as_secs_f64()
    );

    let people: Vec<serde_json::Value> = http
        .get(format!("{api}/organisations/{org_id}/users"))
        .bearer_auth(admin_token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ids: std::collections::HashMap<&str, i64> = people
        .iter()
        .filter_map(|p| Some((p["email"].as_str()?, p["id"].as_i64()?)))
        .collect();
    let user_ids: Vec<i64> = emails
        .iter()
        .map(|e| {
            ids.get(e.as_str())
                .copied()
                .with_context(|| format!("{e} was imported but is not listed"))
        })
        .collect::<anyhow::Result<_>>()?;

    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(count);
    for user_id in user_ids {
        let permit = limit.clone().acquire_owned().await?;
        let (http, api, token) = (http.clone(), api.clone(), admin_token.to_string());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let resp = http
                .post(format!("{api}/organisations/{org_id}/devices"))
                .bearer_auth(&token)
                .json(
                    &serde_json::json!({"user_id": user_id, "label": "Traccar Client (load test)"}),
                )
                .send()
                .await?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            if !status.is_success() {
                bail!("issuing a tracker for user {user_id}: {status}: {body}");
            }
            let device_secret = body["secret"]
                .as_str()
                .context("issued device without secret")?
                .to_string();
            Ok(OfflineStaff {
                user_id,
                device_secret,
            })
        }));
    }
    let mut out = Vec::with_capacity(count);
    for (i, t) in tasks.into_iter().enumerate() {
        out.push(t.await??);
        if (i + 1) % 2500 == 0 {
            eprintln!("  issued {}/{count} tracker credentials", i + 1);
        }
    }
    eprintln!(
        "{count} tracker credentials issued in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(out)
}

/// Every offline person's tracker reports `position(i)` now (OsmAnd protocol, HTTP GET);
/// returns how many were refused (with the first reasons printed).
pub async fn report_positions(
    target: &Target,
    staff: &[OfflineStaff],
    position: impl Fn(usize) -> (f64, f64),
    concurrency: usize,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let failed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let progress = {
        let (done, n) = (done.clone(), staff.len());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!(
                    "  [{:>5.1}s] offline trackers reported {}/{n}",
                    started.elapsed().as_secs_f64(),
                    done.load(Ordering::Relaxed)
                );
            }
        })
    };
    let url = format!("{}/api/v1/ingest/osmand", target.base);
    let mut tasks = Vec::with_capacity(staff.len());
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    for (i, person) in staff.iter().enumerate() {
        let permit = limit.clone().acquire_owned().await?;
        let (lat, lon) = position(i);
        let (http, url, failed, done) = (http.clone(), url.clone(), failed.clone(), done.clone());
        let secret = person.device_secret.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let query = [
                ("id", secret),
                ("lat", format!("{lat:.6}")),
                ("lon", format!("{lon:.6}")),
                ("timestamp", now_ms.to_string()),
                ("accuracy", "10".to_string()),
            ];
            let ok = match http.get(&url).query(&query).send().await {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    if failed.load(Ordering::Relaxed) < 3 {
                        eprintln!("  tracker report refused: {status}: {body}");
                    }
                    false
                }
                Err(e) => {
                    if failed.load(Ordering::Relaxed) < 3 {
                        eprintln!("  tracker report failed: {e}");
                    }
                    false
                }
            };
            if !ok {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            done.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        t.await?;
    }
    progress.abort();
    let failed = failed.load(Ordering::Relaxed);
    eprintln!(
        "{} offline trackers reported in {:.1} s ({failed} refused)",
        staff.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(failed)
}
