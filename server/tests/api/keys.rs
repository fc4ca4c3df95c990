//! Signing-key rotation: the JWKS serves the old and the new key until every token the old one
//! signed has expired; open sockets and refresh tokens carry on across it.

use std::time::Instant;

use base64::Engine;
use serde_json::{Value, json};
use vigil_server::policy::Role;

/// Long enough for a loaded machine; every wait ends as soon as what it waits for happened.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

use crate::support::{Backend, Client, TestServer};
use crate::ws::Ws;

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().expect("header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    let header: Value = serde_json::from_slice(&bytes).expect("json");
    header["kid"].as_str().expect("kid").to_string()
}

async fn published(anon: &Client) -> Vec<String> {
    let jwks = anon.get("/.well-known/jwks.json").await.expect(200);
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_string))
        .collect()
}

/// Polls the JWKS (the node re-reads its keys every second here) until `done` holds.
async fn wait_for_jwks(anon: &Client, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let start = Instant::now();
    loop {
        let kids = published(anon).await;
        if done(&kids) {
            return kids;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: the JWKS still lists {kids:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn a_rotation_keeps_every_session_and_retires_the_old_key_when_its_tokens_are_gone(
    backend: Backend,
) {
    let Some(srv) = TestServer::start_with(backend, |s| {
        s.access_token_ttl_secs = 4;
        s.key_reload_secs = 1;
    })
    .await
    else {
        return;
    };
    let org = srv.org().await;
    let before = srv.user(org, &[Role::Staff], false).await;
    let anon = srv.anon();
    let old_token = before.token.clone().expect("token");
    let old_kid = kid_of(&old_token);
    assert_eq!(published(&anon).await, std::slice::from_ref(&old_kid));
    let (mut socket, _) = Ws::hello(&srv, &before, 0).await;

    // Published at once, signing once the node has read it.
    let added = vigil_server::keys::rotate(
        &srv.state.db,
        &srv.state.settings,
        0,
        vigil_server::db::now_ms(),
    )
    .await
    .expect("rotate");
    assert_ne!(added.kid, old_kid);
    let both = wait_for_jwks(&anon, "the new key published", |k| k.contains(&added.kid)).await;
    assert!(
        both.contains(&old_kid),
        "the old key stays while its tokens live: {both:?}"
    );

    // New tokens carry the new key; tokens and refresh tokens from before still work.
    let after = srv.user(org, &[Role::Staff], false).await;
    assert_eq!(kid_of(after.token.as_deref().expect("token")), added.kid);
    after.get("/api/v1/me").await.expect(200);
    let me = before.get("/api/v1/me").await.expect(200);
    assert_eq!(
        me["id"], before.user_id,
        "a token signed before the rotation is accepted"
    );
    let refreshed = anon
        .post(
            "/api/v1/auth/refresh",
            json!({"refresh_token": before.refresh}),
        )
        .await
        .expect(200);
    let refreshed_token = refreshed["access_token"].as_str().expect("token");
    assert_eq!(
        kid_of(refreshed_token),
        added.kid,
        "a refresh after the rotation signs with the new key"
    );
    before
        .with_token(refreshed_token)
        .get("/api/v1/me")
        .await
        .expect(200);
    socket.send(json!({"type": "ping", "ref": "across"})).await;
    assert_eq!(
        socket.next_of("pong").await["ref"],
        "across",
        "the open socket carries on"
    );
    let (mut fresh, _) = Ws::hello(&srv, &after, 0).await;
    fresh.send(json!({"type": "ping", "ref": "new"})).await;
    assert_eq!(fresh.next_of("pong").await["ref"], "new");

    // The old key leaves the JWKS only once the last token it signed has expired (4 s here,
    // with the verifier's 5 s leeway and a reload interval).
    let rotated_at = Instant::now();
    wait_for_jwks(&anon, "the old key retired", |k| !k.contains(&old_kid)).await;
    assert!(
        rotated_at.elapsed().as_secs() >= 4,
        "retired after {:?}, before its tokens expired",
        rotated_at.elapsed()
    );
    before.get("/api/v1/me").await.problem(401);
    let kept = vigil_server::keys::signing_keys(&srv.state.db)
        .await
        .expect("keys");
    assert_eq!(
        kept.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&added.kid),
        "the retired key's secret is deleted"
    );
    srv.user(org, &[Role::Staff], false)
        .await
        .get("/api/v1/me")
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_sessions_and_retires_the_old_key_on_sqlite() {
    a_rotation_keeps_every_session_and_retires_the_old_key_when_its_tokens_are_gone(
        Backend::Sqlite,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_keeps_sessions_and_retires_the_old_key_on_postgres() {
    a_rotation_keeps_every_session_and_retires_the_old_key_when_its_tokens_are_gone(
        Backend::Postgres,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_published_for_later_is_in_the_jwks_but_does_not_sign_yet() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |s| s.key_reload_secs = 1).await else {
        return;
    };
    let org = srv.org().await;
    let anon = srv.anon();
    let old_kid = kid_of(
        srv.user(org, &[Role::Staff], false)
            .await
            .token
            .as_deref()
            .expect("token"),
    );
    let added = vigil_server::keys::rotate(
        &srv.state.db,
        &srv.state.settings,
        3_600,
        vigil_server::db::now_ms(),
    )
    .await
    .expect("rotate");
    wait_for_jwks(&anon, "the new key published", |k| k.contains(&added.kid)).await;
    let now = srv.user(org, &[Role::Staff], false).await;
    assert_eq!(
        kid_of(now.token.as_deref().expect("token")),
        old_kid,
        "the old key signs until the new one's time"
    );
}
