//! The phone SDK through its generated bindings: the Python stories (pytest with asyncio,
//! `tests/python/`) drive the built library exactly as an app would, against the real server on
//! an ephemeral port, on SQLite and on PostgreSQL. And the committed Kotlin and Swift sources
//! are what the library generates today.

#[path = "../../sdk/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use camino::Utf8PathBuf;
use serde_json::json;
use support::{PASSWORD, Server};
use uniffi::{GenerateOptions, TargetLanguage};
use vigil_server::policy::Role;

/// The workspace's `mobile-bindings/ffi`.
fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The library cargo built for this test run (`target/<profile>/deps/libvigil_ffi.so`: a
/// library a test depends on is not copied up to `target/<profile>`, so one found there may be
/// stale).
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let name = format!(
        "{}vigil_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let lib = deps.join(name);
    assert!(lib.exists(), "{} was not built", lib.display());
    lib
}

fn generate(languages: Vec<TargetLanguage>, out: &Path) {
    uniffi::generate(GenerateOptions {
        languages,
        source: Utf8PathBuf::try_from(library()).expect("utf-8 path"),
        out_dir: Utf8PathBuf::try_from(out.to_path_buf()).expect("utf-8 path"),
        config_override: None,
        // No formatter here (ktlint, swiftformat): the committed sources are unformatted too.
        format: false,
        crate_filter: Some("vigil_ffi".into()),
        metadata_no_deps: false,
    })
    .expect("bindings generated");
}

/// The Python that has pytest and pytest-asyncio: `VIGIL_TEST_PYTHON`, else the one `.ci/run`
/// installs into `target/vigil-python`, else `python3`. `None` (loudly, or failing under
/// `VIGIL_TEST_REQUIRE_ALL=1`) when none has them.
fn python() -> Option<PathBuf> {
    let venv = crate_dir().join("../../target/vigil-python/bin/python");
    let candidates = [
        std::env::var_os("VIGIL_TEST_PYTHON").map(PathBuf::from),
        venv.exists().then_some(venv),
        Some(PathBuf::from("python3")),
    ];
    for python in candidates.into_iter().flatten() {
        let ready = std::process::Command::new(&python)
            .args(["-c", "import pytest, pytest_asyncio"])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Some(python);
        }
    }
    assert!(
        std::env::var("VIGIL_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
        "the Python stories must run (VIGIL_TEST_REQUIRE_ALL=1): install \
         mobile-bindings/ffi/tests/python/requirements.txt (.ci/run does)"
    );
    eprintln!(
        "\n*** SKIPPED the Python stories: no Python with pytest and pytest-asyncio \
         (pip install -r mobile-bindings/ffi/tests/python/requirements.txt) ***\n"
    );
    None
}

async fn python_stories(srv: Server, python: PathBuf) {
    let generated = tempfile::tempdir().expect("bindings dir");
    generate(vec![TargetLanguage::Python], generated.path());
    let lib = library();
    std::fs::copy(
        &lib,
        generated
            .path()
            .join(lib.file_name().expect("library file name")),
    )
    .expect("library beside its bindings");

    let org = srv.org().await;
    let (_, adviser) = srv.person(org, Role::Adviser).await;
    let (_, operator) = srv.person(org, Role::Operator).await;
    let mut staff = serde_json::Map::new();
    let mut location_less_id = 0;
    for story in ["tracked", "location_less", "sos", "rollcall"] {
        let (id, email) = srv.person(org, Role::Staff).await;
        if story == "location_less" {
            location_less_id = id;
        }
        staff.insert(story.into(), json!(email));
    }
    let stories = json!({"url": srv.url, "password": PASSWORD, "adviser": adviser,
        "operator": operator, "staff": staff});

    let run = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-v", "-p", "no:cacheprovider", "."])
        .current_dir(crate_dir().join("tests/python"))
        .env("VIGIL_FFI_DIR", generated.path())
        .env("VIGIL_STORIES", stories.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .await
        .expect("pytest runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    println!("{said}");
    assert!(run.status.success(), "the Python stories failed:\n{said}");
    assert!(said.contains("5 passed"), "every story ran:\n{said}");

    // The location-less phone moved in and out of an alert's circle: nothing of where it was
    // reached the server.
    let stored: i64 = vigil_server::on_reader!(&srv.state.db, pool => sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM position_history WHERE subject_kind = 'user' AND subject_id = $1) \
         + (SELECT COUNT(*) FROM last_positions WHERE subject_kind = 'user' AND subject_id = $1) \
         + (SELECT COUNT(*) FROM sos_cases WHERE user_id = $1 AND lat IS NOT NULL)")
        .bind(location_less_id).fetch_one(pool).await)
    .expect("scan");
    assert_eq!(
        stored, 0,
        "no position of the location-less phone is stored"
    );
    let subject = vigil_server::positions::Subject::User(location_less_id).tracker_id();
    let tracked = vigil_server::areas::read_tracker(&srv.state.tracker).last_fix(subject);
    assert!(
        tracked.is_none(),
        "the tracker holds no position of the location-less phone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stories_on_sqlite() {
    let Some(python) = python() else { return };
    python_stories(support::server(false).await.expect("SQLite"), python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_stories_on_postgres() {
    let Some(python) = python() else { return };
    if let Some(srv) = support::server(true).await {
        python_stories(srv, python).await;
    }
}

/// Compares two directory trees file by file; `VIGIL_UPDATE_BINDINGS=1` rewrites `committed`.
fn same_tree(fresh: &Path, committed: &Path) -> Vec<String> {
    let mut differ = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(fresh)
        .expect("generated")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().expect("name").to_owned();
        let theirs = committed.join(&name);
        if file.is_dir() {
            differ.extend(same_tree(&file, &theirs));
            continue;
        }
        let now = std::fs::read(&file).expect("generated file");
        if std::fs::read(&theirs).ok().as_deref() != Some(now.as_slice()) {
            if std::env::var("VIGIL_UPDATE_BINDINGS").as_deref() == Ok("1") {
                std::fs::create_dir_all(committed).expect("bindings dir");
                std::fs::write(&theirs, &now).expect("bindings written");
            } else {
                differ.push(theirs.display().to_string());
            }
        }
    }
    differ
}

#[test]
fn the_committed_kotlin_and_swift_are_what_the_library_generates() {
    let fresh = tempfile::tempdir().expect("dir");
    generate(
        vec![TargetLanguage::Kotlin, TargetLanguage::Swift],
        fresh.path(),
    );
    let differ = same_tree(fresh.path(), &crate_dir().join("bindings"));
    assert!(
        differ.is_empty(),
        "stale generated bindings: {differ:?}; regenerate with \
         `VIGIL_UPDATE_BINDINGS=1 cargo test -p vigil-ffi --test python_stories the_committed`"
    );
}
