//! The console and the staff web app in a real browser: the server starts as in the API tests
//! (ephemeral port, throwaway SQLite database) with the demo data, then `server/web/e2e/run.mjs`
//! drives Debian's Chromium through playwright-core along whole stories and saves a screenshot
//! of every main screen into `docs/screenshots/`. The pure TypeScript logic has its own unit
//! tests (vitest), run here too. Without Node, Chromium or the built console these tests say
//! loudly that they skipped.

#[path = "api/support.rs"]
#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{Backend, TestServer, skipped};

/// What the browser tests need from the machine.
struct Tools {
    node: PathBuf,
    chromium: PathBuf,
    web: PathBuf,
}

impl Tools {
    /// Node 20 or newer, the web dependencies installed, and (for the stories) a Chromium.
    fn find(what: &str, need_browser: bool) -> Option<Tools> {
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let node =
            PathBuf::from(std::env::var_os("VIGIL_E2E_NODE").unwrap_or_else(|| "node".into()));
        let version = std::process::Command::new(&node)
            .arg("--version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let major = version.as_deref().and_then(|v| {
            v.trim_start_matches('v')
                .split('.')
                .next()?
                .parse::<u32>()
                .ok()
        });
        if major.is_none_or(|m| m < 20) {
            skipped(
                what,
                &format!("Node.js 20 or newer is needed (found {version:?}); install nodejs"),
            );
            return None;
        }
        if !web
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            skipped(
                what,
                "server/web/node_modules is missing: run `npm ci` in server/web (.ci/run does)",
            );
            return None;
        }
        let chromium = std::env::var_os("VIGIL_E2E_CHROMIUM")
            .map(PathBuf::from)
            .into_iter()
            .chain(
                [
                    "/usr/bin/chromium",
                    "/usr/bin/chromium-browser",
                    "/usr/bin/google-chrome",
                ]
                .map(PathBuf::from),
            )
            .find(|p| p.is_file());
        let chromium = match chromium {
            Some(c) => c,
            None if need_browser => {
                skipped(
                    what,
                    "no Chromium found (apt-get install chromium, or set VIGIL_E2E_CHROMIUM)",
                );
                return None;
            }
            None => PathBuf::new(),
        };
        Some(Tools {
            node,
            chromium,
            web,
        })
    }

    /// Runs a Node script in `server/web`, printing its output; true when it succeeded.
    async fn run(&self, args: &[&str], env: &[(&str, &str)], limit: Duration) -> bool {
        let mut command = tokio::process::Command::new(&self.node);
        command
            .args(args)
            .current_dir(&self.web)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(limit, command.output())
            .await
            .unwrap_or_else(|_| panic!("node {args:?} took longer than {limit:?}"))
            .expect("node starts");
        // Through the test harness's capture: shown when a test fails or with --nocapture.
        println!("{}", String::from_utf8_lossy(&output.stdout));
        println!("{}", String::from_utf8_lossy(&output.stderr));
        output.status.success()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stories_in_a_real_browser() {
    const WHAT: &str = "browser stories (server/web/e2e)";
    let Some(tools) = Tools::find(WHAT, true) else {
        return;
    };
    if let Some(why) = vigil_server::web::not_built_reason() {
        skipped(
            WHAT,
            &format!("the console is not built into this binary: {why}"),
        );
        return;
    }
    let srv = TestServer::start(Backend::Sqlite)
        .await
        .expect("SQLite server");
    vigil_server::demo::seed(&srv.state)
        .await
        .expect("demo data");
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    let chromium = tools.chromium.to_string_lossy().to_string();
    let shots_dir = shots.to_string_lossy().to_string();
    let only = std::env::var("VIGIL_E2E_ONLY").unwrap_or_default();
    let ok = tools
        .run(
            &["e2e/run.mjs"],
            &[
                ("VIGIL_E2E_URL", srv.url.as_str()),
                ("VIGIL_E2E_CHROMIUM", chromium.as_str()),
                ("VIGIL_E2E_SCREENSHOTS", shots_dir.as_str()),
                ("VIGIL_E2E_ONLY", only.as_str()),
            ],
            Duration::from_secs(15 * 60),
        )
        .await;
    assert!(ok, "a browser story failed (its output is above)");
    if !only.is_empty() {
        return;
    }

    // What the browser did is in storage: the adviser's circle, the staff member's choices.
    let circles: Vec<(String, Option<f64>)> = sqlx_rows(
        &srv,
        "SELECT name, radius_m FROM areas WHERE name LIKE 'Pibor road checkpoint %'",
    )
    .await;
    assert_eq!(circles.len(), 1, "one circle drawn: {circles:?}");
    assert!(circles[0].1.is_some_and(|r| r > 1000.0), "{circles:?}");
    let staff: Vec<(String, Option<f64>)> = sqlx_rows(
        &srv,
        "SELECT u.location_mode, CAST(COUNT(f.area_id) AS REAL) FROM users u \
         LEFT JOIN followed_areas f ON f.user_id = u.id WHERE u.email = 'staff@rca.example' \
         GROUP BY u.location_mode",
    )
    .await;
    assert_eq!(staff, vec![("location_less".to_string(), Some(1.0))]);
    for name in [
        "console-map",
        "console-area-drawn",
        "app-inbox",
        "console-ar",
        "console-50k",
        "console-alert-compose",
        "console-alert-delivery",
        "console-rollcall",
        "console-sos",
        "app-alert",
        "app-offline-inbox",
        "app-rollcall",
        "app-sos",
    ] {
        assert!(
            shots.join(format!("{name}.png")).is_file(),
            "screenshot {name}.png saved"
        );
    }
}

/// Reads `(text, real)` rows straight from the test database.
async fn sqlx_rows(srv: &TestServer, sql: &'static str) -> Vec<(String, Option<f64>)> {
    vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_as(sql).fetch_all(pool).await)
        .expect("query")
}

/// The bundle is served with the headers that make it safe and cacheable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_and_app_are_served_with_cache_headers_and_a_csp() {
    let srv = TestServer::start_with(Backend::Sqlite, |s| {
        s.map_tiles_url = "https://tiles.example.org/{z}/{x}/{y}.png".into();
    })
    .await
    .expect("SQLite server");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut req = http.get(format!("{}{path}", srv.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };

    let index = get("/", &[]).await.expect("GET /");
    assert_eq!(index.status(), 200);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&index, "cache-control"), "no-cache");
    assert_eq!(header(&index, "x-content-type-options"), "nosniff");
    let csp = header(&index, "content-security-policy");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(
        csp.contains("img-src 'self' data: blob: https://tiles.example.org;"),
        "the configured tile server is allowed: {csp}"
    );
    let etag = header(&index, "etag");
    let html = index.text().await.expect("body");
    let again = get("/", &[("if-none-match", &etag)]).await.expect("GET /");
    assert_eq!(again.status(), 304, "an unchanged page is not sent again");

    let app = get("/app", &[]).await.expect("GET /app");
    assert_eq!(app.status(), 308);
    assert_eq!(header(&app, "location"), "/app/");
    let app = get("/app/", &[]).await.expect("GET /app/");
    assert_eq!(app.status(), 200);
    assert_eq!(header(&app, "content-type"), "text/html; charset=utf-8");

    let config: serde_json::Value = get("/web-config.json", &[])
        .await
        .expect("GET /web-config.json")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        config["map_tiles_url"],
        "https://tiles.example.org/{z}/{x}/{y}.png"
    );

    for path in ["/api/v1/no-such-route", "/.well-known/no-such-file"] {
        let res = get(path, &[]).await.expect("GET");
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(
            header(&res, "content-type"),
            "application/problem+json",
            "{path}"
        );
    }
    assert_eq!(
        get("/no-such-file.js", &[]).await.expect("GET").status(),
        404
    );
    let post = http
        .post(format!("{}/", srv.url))
        .send()
        .await
        .expect("POST /");
    assert!(post.status().is_client_error());

    if let Some(why) = vigil_server::web::not_built_reason() {
        assert!(html.contains("console was not built"), "{html}");
        skipped(
            "the hashed-asset checks",
            &format!("the console is not built into this binary: {why}"),
        );
        return;
    }
    let script = html
        .split('"')
        .find(|s| s.starts_with("/assets/console-") && s.ends_with(".js"))
        .expect("index.html loads the console's script");
    let plain = get(script, &[]).await.expect("GET script");
    assert_eq!(plain.status(), 200);
    assert_eq!(
        header(&plain, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&plain, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&plain, "vary"), "Accept-Encoding");
    let plain_len = plain.bytes().await.expect("body").len();
    let br = get(script, &[("accept-encoding", "gzip, br")])
        .await
        .expect("GET script");
    assert_eq!(header(&br, "content-encoding"), "br");
    let br_len = br.bytes().await.expect("body").len();
    assert!(br_len * 3 < plain_len, "brotli {br_len} B vs {plain_len} B");
    let gz = get(script, &[("accept-encoding", "gzip")])
        .await
        .expect("GET script");
    assert_eq!(header(&gz, "content-encoding"), "gzip");

    let sw = get("/app/sw.js", &[]).await.expect("GET sw.js");
    assert_eq!(sw.status(), 200);
    assert_eq!(
        header(&sw, "cache-control"),
        "no-cache",
        "a new worker is seen at once"
    );
    assert_eq!(
        header(&sw, "content-type"),
        "text/javascript; charset=utf-8"
    );
    let manifest = get("/app/manifest.webmanifest", &[]).await.expect("GET");
    assert_eq!(
        header(&manifest, "content-type"),
        "application/manifest+json"
    );
}

#[tokio::test]
async fn web_logic_unit_tests() {
    const WHAT: &str = "web unit tests (vitest, server/web/src/*.test.ts)";
    let Some(tools) = Tools::find(WHAT, false) else {
        return;
    };
    let ok = tools
        .run(
            &[
                "node_modules/vitest/vitest.mjs",
                "run",
                "--reporter=verbose",
            ],
            &[("NO_COLOR", "1")],
            Duration::from_secs(5 * 60),
        )
        .await;
    assert!(ok, "a web unit test failed (its output is above)");
}
