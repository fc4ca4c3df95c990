//! Login, refresh rotation, logout, lockout, and tokens that must not work.

use serde_json::json;
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{PASSWORD, TestServer, unique};

async fn staff_with_email(srv: &TestServer) -> (String, i64) {
    let org = srv.org().await;
    let email = format!("{}@test.example", unique("s"));
    let person = vigil_server::users::NewPerson {
        email: email.clone(),
        name: "Staff Member".into(),
        password: Some(PASSWORD.into()),
        roles: vec![Role::Staff],
        ..Default::default()
    };
    let id = vigil_server::users::create_person(&srv.state.db, org, person, None)
        .await
        .expect("user");
    (email, id)
}

on_both_databases! {
    async fn login_gives_tokens_that_open_the_api(srv: TestServer) {
        let (email, id) = staff_with_email(&srv).await;
        let anon = srv.anon();
        let body = anon.post("/api/v1/auth/login", json!({"email": email.to_uppercase(), "password": PASSWORD})).await.expect(200);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        let me = anon.with_token(body["access_token"].as_str().expect("token")).get("/api/v1/me").await.expect(200);
        assert_eq!(me["id"], id);
        assert_eq!(me["roles"], json!(["staff"]));
        assert!(me["last_seen_at"].is_string(), "login records last use");
    }

    async fn wrong_credentials_are_401_problems(srv: TestServer) {
        let (email, _) = staff_with_email(&srv).await;
        let anon = srv.anon();
        anon.post("/api/v1/auth/login", json!({"email": email, "password": "not the password"})).await.problem(401);
        anon.post("/api/v1/auth/login", json!({"email": "nobody@nowhere.example", "password": PASSWORD})).await.problem(401);
        anon.get("/api/v1/me").await.problem(401);
    }

    async fn repeated_failures_lock_the_account_even_for_the_right_password(srv: TestServer) {
        let (email, _) = staff_with_email(&srv).await;
        let anon = srv.anon();
        for _ in 0..5 {
            anon.post("/api/v1/auth/login", json!({"email": email, "password": "guess guess guess"})).await.problem(401);
        }
        let r = anon.post("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await;
        let retry: u64 = r.headers.get("retry-after").expect("Retry-After").to_str().expect("ascii").parse().expect("seconds");
        assert!(retry > 800 && retry <= 901, "locked for the configured 900 s, got {retry}");
        r.problem(429);
    }

    async fn guesses_sent_at_once_get_no_more_tries_than_the_limit(srv: TestServer) {
        let (email, _) = staff_with_email(&srv).await;
        let anon = srv.anon();
        // 40 wrong passwords and the right one at once: each attempt is counted before its
        // password is checked, so at most the limit (5) of them are checked at all.
        let attempts = (0..41).map(|i| {
            let anon = anon.clone();
            let password = if i == 20 { PASSWORD.to_string() } else { format!("guess number {i}") };
            let email = email.clone();
            async move { anon.post("/api/v1/auth/login", json!({"email": email, "password": password})).await.status }
        });
        let statuses = futures_util::future::join_all(attempts).await;
        let checked = statuses.iter().filter(|s| matches!(s, 200 | 401)).count();
        let locked = statuses.iter().filter(|s| **s == 429).count();
        assert!(checked <= 5, "{checked} passwords were checked: {statuses:?}");
        assert_eq!(checked + locked, 41, "every answer is 200, 401 or 429: {statuses:?}");
        // The right password does not lift the lock either.
        anon.post("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await.problem(429);
    }

    async fn an_unknown_address_answers_as_a_known_one_does(srv: TestServer) {
        let (known, _) = staff_with_email(&srv).await;
        let unknown = format!("{}@test.example", unique("nobody"));
        let anon = srv.anon();
        let mut answers = Vec::new();
        for email in [&known, &unknown] {
            let mut seen = Vec::new();
            for _ in 0..6 {
                let r = anon.post("/api/v1/auth/login", json!({"email": email, "password": "guess guess guess"})).await;
                let retry = r.headers.get("retry-after").map(|v| v.to_str().expect("ascii").parse::<u64>().expect("seconds")).map(|s| (800..=901).contains(&s));
                seen.push((r.status, retry, r.body["title"].clone(), r.body["detail"].clone()));
            }
            answers.push(seen);
        }
        assert_eq!(answers[0], answers[1], "a stranger can tell which accounts exist");
        assert_eq!(answers[1].last().map(|a| a.0), Some(429), "unknown addresses lock too: {:?}", answers[1]);
        // Case and spaces name the same address.
        anon.post("/api/v1/auth/login", json!({"email": format!("  {}", unknown.to_uppercase()), "password": "x"})).await.problem(429);
    }

    async fn a_new_password_from_an_administrator_lifts_the_lock(srv: TestServer) {
        let (email, id) = staff_with_email(&srv).await;
        let anon = srv.anon();
        for _ in 0..5 {
            anon.post("/api/v1/auth/login", json!({"email": email, "password": "guess guess guess"})).await.problem(401);
        }
        anon.post("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await.problem(429);
        vigil_server::users::store::set_password(&srv.state.db, id, "a brand new passphrase".into(), None).await.expect("set");
        anon.post("/api/v1/auth/login", json!({"email": email, "password": "a brand new passphrase"})).await.expect(200);
    }

    async fn refresh_rotates_and_a_reused_token_ends_the_session(srv: TestServer) {
        let (email, _) = staff_with_email(&srv).await;
        let c = srv.anon().login(&email, PASSWORD).await;
        let first = c.refresh.clone().expect("refresh token");
        let next = srv.anon().post("/api/v1/auth/refresh", json!({"refresh_token": first})).await.expect(200);
        let second = next["refresh_token"].as_str().expect("rotated").to_string();
        assert_ne!(first, second);
        let fresh = c.with_token(next["access_token"].as_str().expect("access"));
        fresh.get("/api/v1/me").await.expect(200);
        // Someone replays the first token: treat it as theft and end the whole session.
        srv.anon().post("/api/v1/auth/refresh", json!({"refresh_token": first})).await.problem(401);
        srv.anon().post("/api/v1/auth/refresh", json!({"refresh_token": second})).await.problem(401);
        fresh.get("/api/v1/me").await.problem(401);
    }

    async fn logout_ends_access_and_refresh(srv: TestServer) {
        let (email, _) = staff_with_email(&srv).await;
        let c = srv.anon().login(&email, PASSWORD).await;
        let other_device = srv.anon().login(&email, PASSWORD).await;
        c.post("/api/v1/auth/logout", json!({})).await.expect(204);
        c.get("/api/v1/me").await.problem(401);
        srv.anon().post("/api/v1/auth/refresh", json!({"refresh_token": c.refresh.clone()})).await.problem(401);
        other_device.get("/api/v1/me").await.expect(200);
    }

    async fn forged_expired_and_garbage_tokens_are_refused(srv: TestServer) {
        let (email, id) = staff_with_email(&srv).await;
        let real = srv.anon().login(&email, PASSWORD).await;
        // Same claims, signed with a key the server never issued.
        let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let der = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_der(&other).expect("der");
        let now = vigil_server::db::now_ms() / 1000;
        let claims = json!({"iss": "vigil", "sub": id.to_string(), "sid": "x", "iat": now, "exp": now + 600});
        let forged = jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes())).expect("sign");
        real.with_token(&forged).get("/api/v1/me").await.problem(401);
        real.with_token("not-a-jwt").get("/api/v1/me").await.problem(401);
        // alg=none must never be accepted.
        let parts: Vec<&str> = real.token.as_deref().expect("token").split('.').collect();
        let none_header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
        real.with_token(&format!("{none_header}.{}.", parts[1])).get("/api/v1/me").await.problem(401);
        let body = srv.anon().send(reqwest::Method::GET, "/api/v1/me", None).await.problem(401);
        assert!(body["detail"].as_str().expect("detail").contains("Bearer"));
    }

    async fn jwks_verifies_issued_tokens(srv: TestServer) {
        let (email, id) = staff_with_email(&srv).await;
        let c = srv.anon().login(&email, PASSWORD).await;
        let jwks = srv.anon().get("/.well-known/jwks.json").await.expect(200);
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        let decoding = jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().expect("x")).expect("key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
        v.set_issuer(&["vigil"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(c.token.as_deref().expect("t"), &decoding, &v).expect("verifies");
        assert_eq!(data.claims["sub"], id.to_string());
        assert_eq!(data.header.kid.as_deref(), key["kid"].as_str());
    }

    async fn deactivation_and_password_change_end_sessions(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let me = staff.get("/api/v1/me").await.expect(200);
        let email = me["email"].as_str().expect("email").to_string();
        let second = srv.anon().login(&email, PASSWORD).await;
        staff.put("/api/v1/me/password", json!({"current_password": "wrong wrong wrong", "new_password": "a new long password"})).await.problem(403);
        staff.put("/api/v1/me/password", json!({"current_password": PASSWORD, "new_password": "short"})).await.problem(422);
        staff.put("/api/v1/me/password", json!({"current_password": PASSWORD, "new_password": "a new long password"})).await.expect(204);
        staff.get("/api/v1/me").await.expect(200);
        second.get("/api/v1/me").await.problem(401);
        srv.anon().post("/api/v1/auth/login", json!({"email": email, "password": PASSWORD})).await.problem(401);
        let again = srv.anon().login(&email, "a new long password").await;
        admin.patch(&format!("/api/v1/users/{}", staff.user_id), json!({"active": false})).await.expect(200);
        again.get("/api/v1/me").await.problem(401);
        srv.anon().post("/api/v1/auth/login", json!({"email": email, "password": "a new long password"})).await.problem(401);
    }
}

/// Token expiry does not touch storage, so SQLite alone covers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_say_so() {
    let srv = TestServer::start_with(crate::support::Backend::Sqlite, |s| {
        s.access_token_ttl_secs = 0
    })
    .await
    .expect("server");
    let (email, _) = staff_with_email(&srv).await;
    let c = srv.anon().login(&email, PASSWORD).await;
    // Past the 5 s clock-skew leeway.
    tokio::time::sleep(std::time::Duration::from_millis(6500)).await;
    let body = c.get("/api/v1/me").await.problem(401);
    assert!(body["detail"].as_str().expect("detail").contains("expired"));
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
