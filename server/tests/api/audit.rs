//! The audit trail's hash chain: it holds through concurrent writers, any edit, removal or
//! truncation breaks it where it happened, and the export lets anyone recompute it.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Client, TestServer, unique};

async fn report(reader: &Client, org: i64) -> Value {
    reader
        .get(&format!("/api/v1/organisations/{org}/audit/verify"))
        .await
        .expect(200)
}

async fn tamper(srv: &TestServer, sql: &str, id: i64) {
    vigil_server::on_writer!(&srv.state.db, pool => sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(id).execute(pool).await.map(drop)).expect("tamper");
}

/// Runs `vigil audit verify` on the server's database: its exit status and its report.
async fn cli_verify(srv: &TestServer) -> (bool, String) {
    let url = srv.state.settings.database_url.clone();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["audit", "verify"])
            .env("VIGIL_DATABASE_URL", url)
            .env("RUST_LOG", "error")
            .output()
            .expect("vigil audit verify runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// Recomputes the chain from the CSV export alone, as an outside auditor would.
fn recompute(csv: &str) -> Result<usize, String> {
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let mut prev = "0".repeat(64);
    let mut n = 0;
    for (i, row) in rows.records().enumerate() {
        let r = row.map_err(|e| e.to_string())?;
        let num = |k: usize| -> Value { r[k].parse::<i64>().map_or(Value::Null, Value::from) };
        let fields = json!([num(8), num(2), num(3), num(4), &r[5], &r[6], &r[7]]);
        let hash: String = Sha256::new()
            .chain_update(prev.as_bytes())
            .chain_update(b"\n")
            .chain_update(fields.to_string().as_bytes())
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if r[9] != prev || r[10] != hash || num(8) != json!(i + 1) {
            return Err(format!("row {} does not follow", &r[0]));
        }
        prev = hash;
        n += 1;
    }
    Ok(n)
}

on_both_databases! {
    async fn the_audit_chain_holds_until_someone_edits_removes_or_truncates_it(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let oversight = srv.user(srv.org().await, &[Role::Oversight], false).await;
        // Writers at once must take turns on the chain, never fork it.
        let creations = (0..12).map(|i| {
            let admin = admin.clone();
            async move {
                admin.post(&format!("/api/v1/organisations/{org}/users"),
                    json!({"email": format!("{}@audit.example", unique(&format!("p{i}"))), "name": format!("Person {i}")}))
                    .await.expect(201)
            }
        });
        futures_util::future::join_all(creations).await;
        let held = report(&oversight, org).await;
        assert_eq!(held["problems"], json!([]), "{held}");
        let entries = held["entries"].as_u64().expect("entries");
        assert!(entries >= 12, "{held}");

        // Oversight exports it, and the export alone proves the chain.
        let export = oversight.get(&format!("/api/v1/organisations/{org}/audit/export.csv")).await;
        let csv = export.body.as_str().expect("csv text").to_string();
        assert_eq!(recompute(&csv), Ok(usize::try_from(entries).expect("count")));
        assert_eq!(csv.lines().last().and_then(|l| l.rsplit(',').next()), held["head_hash"].as_str());
        let (ok, out) = cli_verify(&srv).await;
        assert!(ok, "vigil audit verify: {out}");

        // An entry from before the chain existed is reported, then chained at the next start.
        tamper(&srv, "INSERT INTO audit_log (at, org_id, action, target, detail) VALUES (1, $1, 'legacy', 'x', 'y')", org).await;
        let outside = report(&oversight, org).await;
        assert!(outside["problems"].to_string().contains("is outside the chain"), "{outside}");
        assert_eq!(vigil_server::audit::chain_earlier_entries(&srv.state.db).await.expect("chain"), 1);
        assert_eq!(report(&oversight, org).await["problems"], json!([]));

        let log = admin.get(&format!("/api/v1/organisations/{org}/audit?limit=1000")).await.expect(200);
        let ids: Vec<i64> = log.as_array().expect("log").iter().filter_map(|e| e["id"].as_i64()).collect();
        let (newest, middle, older) = (ids[0], ids[ids.len() / 2], ids[ids.len() - 2]);

        tamper(&srv, "UPDATE audit_log SET detail = 'nothing happened' WHERE id = $1", older).await;
        let edited = report(&oversight, org).await;
        assert_eq!(edited["problems"], json!([format!("entry {older} was changed after it was written")]), "{edited}");
        let (ok, out) = cli_verify(&srv).await;
        assert!(!ok && out.contains("BROKEN") && out.contains(&format!("entry {older} was changed")), "{out}");

        tamper(&srv, "DELETE FROM audit_log WHERE id = $1", middle).await;
        let removed = report(&oversight, org).await;
        let problems = removed["problems"].to_string();
        assert!(problems.contains("are missing before entry"), "{removed}");

        tamper(&srv, "DELETE FROM audit_log WHERE id = $1", newest).await;
        let truncated = report(&oversight, org).await;
        assert!(truncated["problems"].to_string().contains("removed from the end"), "{truncated}");
    }
}
