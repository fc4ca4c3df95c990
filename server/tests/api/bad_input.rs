//! Bad input never yields a 500 or a panic: each is a 4xx problem+json saying what is wrong,
//! and nothing is half-written.

use reqwest::Method;
use serde_json::json;
use vigil_server::policy::Role;

use crate::on_both_databases;

on_both_databases! {
    async fn malformed_bodies_are_named_problems(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let path = format!("/api/v1/organisations/{org}/users");
        let syntax = admin.send_raw(Method::POST, &path, "application/json", b"{\"email\": ".to_vec()).await.problem(400);
        assert!(syntax["detail"].as_str().expect("detail").contains("EOF"), "{syntax}");
        let types = admin.post(&path, json!({"email": 42, "name": "X"})).await.problem(422);
        assert!(types["detail"].as_str().expect("detail").contains("email"), "{types}");
        let missing = admin.post(&path, json!({"email": "a@b.example"})).await.problem(422);
        assert!(missing["detail"].as_str().expect("detail").contains("name"), "{missing}");
        let unknown = admin.post(&path, json!({"email": "a@b.example", "name": "A", "salary": 1})).await.problem(422);
        assert!(unknown["detail"].as_str().expect("detail").contains("salary"), "{unknown}");
        admin.send_raw(Method::POST, &path, "text/plain", b"hello".to_vec()).await.problem(415);
        let huge = format!("{{\"email\":\"a@b.example\",\"name\":\"{}\"}}", "x".repeat(1_100_000));
        admin.send_raw(Method::POST, &path, "application/json", huge.into_bytes()).await.problem(413);
    }

    async fn unknown_ids_routes_and_methods(srv: TestServer) {
        let org = srv.org().await;
        let sysadmin = srv.user(org, &[Role::Staff], true).await;
        sysadmin.get("/api/v1/users/999999").await.problem(404);
        sysadmin.get("/api/v1/areas/999999").await.problem(404);
        sysadmin.get("/api/v1/organisations/999999").await.problem(404);
        sysadmin.get("/api/v1/users/abc").await.problem(400);
        sysadmin.put("/api/v1/users/1/roles/emperor", json!({})).await.problem(400);
        sysadmin.get("/api/v1/nothing-here").await.problem(404);
        sysadmin.delete("/api/v1/me").await.problem(405);
        sysadmin.get("/api/v1/organisations/1/reports/stale-profiles?days=many").await.problem(400);
    }

    async fn an_invalid_person_leaves_nothing_behind(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let path = format!("/api/v1/organisations/{org}/users");
        let body = admin.post(&path, json!({
            "email": "new.person@test.example", "name": "New Person", "phone": "12",
            "preferred_language": "Klingon", "dependants": [{"name": "", "relationship": "child", "date_of_birth": "yesterday"}]
        })).await.problem(422);
        let at: Vec<&str> = body["issues"].as_array().expect("issues").iter().map(|i| i["at"].as_str().expect("at")).collect();
        assert_eq!(at, ["phone", "preferred_language", "dependants/0/name", "dependants/0/date_of_birth"]);
        let people = admin.get(&path).await.expect(200);
        assert!(people.as_array().expect("list").iter().all(|p| p["email"] != "new.person@test.example"));
        admin.post(&path, json!({"email": "dup@test.example", "name": "One"})).await.expect(201);
        admin.post(&path, json!({"email": "DUP@test.example", "name": "Two"})).await.problem(409);
        admin.post(&path, json!({"email": "x@test.example", "name": "X", "duty_station_id": 424242})).await.problem(422);
    }
}
