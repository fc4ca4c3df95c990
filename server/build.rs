//! Builds the operations console and the staff web app (`server/web`, npm + Vite) into
//! `$OUT_DIR/web`, which `src/web.rs` embeds in the binary.
//!
//! Cargo reruns this only when a web source changes. Without npm the build still succeeds: it
//! embeds a page that says the console was not built and why, and warns loudly here and at
//! server start. `VIGIL_SKIP_WEB_BUILD=1` does the same on purpose (for Rust-only work).
//! A TypeScript or Vite error fails the build, as a Rust error would.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The inputs of the web build; a change to any of them reruns this script.
const SOURCES: [&str; 8] = [
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
    "index.html",
    "app",
    "src",
    "public",
];

/// Written beside the fallback page so the server can tell it is not the real bundle.
const FALLBACK_MARKER: &str = ".vigil-web-not-built";

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    let out = PathBuf::from(env("OUT_DIR")).join("web");
    for source in SOURCES {
        println!("cargo:rerun-if-changed=web/{source}");
    }
    println!("cargo:rerun-if-env-changed=VIGIL_SKIP_WEB_BUILD");

    if std::env::var_os("VIGIL_SKIP_WEB_BUILD").is_some_and(|v| !v.is_empty() && v != "0") {
        return fallback(
            &out,
            "VIGIL_SKIP_WEB_BUILD was set when this binary was built.",
        );
    }
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    if !Command::new(npm)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return fallback(
            &out,
            "npm was not found when this binary was built. Install Node.js 20.19 or newer (with npm) and build again.",
        );
    }

    // Every engineer's target directory runs this script, possibly at the same moment, and they
    // share `web/node_modules`: one at a time (a lock outside the source tree).
    let lock_path = std::env::temp_dir().join("vigil-web-build.lock");
    let lock =
        File::create(&lock_path).unwrap_or_else(|e| fail(&lock_path.display().to_string(), e));
    lock.lock()
        .unwrap_or_else(|e| fail("locking the web build", e));

    if let Err(why) = install_if_stale(npm, &web) {
        return fallback(&out, &why);
    }
    let _ = fs::remove_dir_all(&out);
    let built = Command::new(npm)
        .args(["run", "--silent", "build"])
        .current_dir(&web)
        .env("VIGIL_WEB_OUT_DIR", &out)
        .output()
        .unwrap_or_else(|e| fail("running npm run build", e));
    if !built.status.success() {
        panic!(
            "the web build (server/web: npm run build) failed:\n{}\n{}",
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        );
    }
    if !out.join("index.html").is_file() || !out.join("app/index.html").is_file() {
        panic!(
            "the web build left no index.html or app/index.html in {}",
            out.display()
        );
    }
}

/// Runs `npm ci` unless `node_modules` was installed after the lock file last changed (npm
/// writes `node_modules/.package-lock.json` at the end of every install; `.ci/run` installs
/// before building, so CI installs once).
fn install_if_stale(npm: &str, web: &Path) -> Result<(), String> {
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(&web.join("package-lock.json"))
        .ok_or("server/web/package-lock.json is missing")?;
    if modified(&web.join("node_modules/.package-lock.json"))
        .is_some_and(|installed| installed >= lock)
    {
        return Ok(());
    }
    let ci = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(web)
        .output()
        .map_err(|e| format!("npm ci could not start: {e}"))?;
    if ci.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm ci failed in server/web (is the npm registry reachable?):\n{}",
            String::from_utf8_lossy(&ci.stderr)
        ))
    }
}

/// Embeds a page that explains why there is no console, and warns now.
fn fallback(out: &Path, why: &str) {
    // A path that never exists keeps this script rerunning on every build until the bundle is
    // built (checking for npm costs milliseconds).
    println!("cargo:rerun-if-changed=web/.not-built-yet");
    for line in [
        "!!! The Vigil console and staff web app were NOT built !!!".to_string(),
        why.to_string(),
        "The server works (API, WebSocket); / and /app/ show a page explaining this.".to_string(),
    ] {
        println!("cargo:warning={}", line.replace('\n', " "));
    }
    let _ = fs::remove_dir_all(out);
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Vigil: console not built</title></head>\n<body style=\"font:16px/1.5 system-ui,sans-serif;\
         max-width:42rem;margin:3rem auto;padding:0 1rem\">\n<h1>The console was not built</h1>\n\
         <p>This Vigil server works (its API is described at <a href=\"/api/openapi.json\">/api/openapi.json</a>), \
         but its operations console and staff web app were not built into it:</p>\n<p><strong>{}</strong></p>\n\
         <p>Then run <code>cargo run --release -p vigil-server -- demo</code> again.</p>\n</body></html>\n",
        escape(why)
    );
    for dir in [out.to_path_buf(), out.join("app")] {
        fs::create_dir_all(&dir).unwrap_or_else(|e| fail("creating the fallback page's folder", e));
        fs::write(dir.join("index.html"), &page)
            .unwrap_or_else(|e| fail("writing the fallback page", e));
    }
    fs::write(out.join(FALLBACK_MARKER), why)
        .unwrap_or_else(|e| fail("writing the fallback marker", e));
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|e| fail(name, e))
}

fn fail(what: &str, error: impl std::fmt::Display) -> ! {
    panic!("{what}: {error}")
}
