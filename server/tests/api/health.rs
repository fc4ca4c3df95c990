//! Health, readiness, metrics, the OpenAPI document and graceful shutdown.

use crate::on_both_databases;

on_both_databases! {
    async fn health_ready_and_metrics_answer(srv: TestServer) {
        let anon = srv.anon();
        assert_eq!(anon.get("/healthz").await.expect(200), "ok");
        assert_eq!(anon.get("/readyz").await.expect(200), "ready");
        let _ = anon.get("/healthz").await;
        let metrics = anon.get("/metrics").await.expect(200);
        let text = metrics.as_str().expect("text");
        assert!(text.contains("vigil_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"), "{text}");
        assert!(text.contains("vigil_http_request_duration_seconds_bucket"));
    }

    async fn openapi_describes_every_v1_route(srv: TestServer) {
        let doc = srv.anon().get("/api/openapi.json").await.expect(200);
        assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
        let paths = doc["paths"].as_object().expect("paths");
        for p in ["/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/auth/logout", "/api/v1/me",
                  "/api/v1/organisations/{id}/roster", "/api/v1/users/{id}/roles/{role}", "/api/v1/areas/{id}"] {
            assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
        }
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());

        // What the extractors answer before any handler runs is documented on every route.
        let mut missing = Vec::new();
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                let has = |status: &str| op["responses"].get(status).is_some();
                let params = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| matches!(p["in"].as_str(), Some("path" | "query")))
                });
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                for (needed, status) in [
                    (op.get("requestBody").is_some(), "400"),
                    (op.get("requestBody").is_some(), "422"),
                    (params, "400"),
                    (secured, "401"),
                ] {
                    if needed && !has(status) {
                        missing.push(format!("{method} {path}: {status}"));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "undocumented answers: {missing:?}");
    }

    async fn shutdown_lets_a_request_in_flight_finish_then_refuses_new_ones(srv: TestServer) {
        let org = srv.org().await;
        let email = format!("{}@test.example", crate::support::unique("d"));
        let person = vigil_server::users::NewPerson {
            email: email.clone(), name: "Drain".into(), password: Some(crate::support::PASSWORD.into()),
            ..Default::default()
        };
        vigil_server::users::create_person(&srv.state.db, org, person, None).await.expect("user");
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A raw connection the server has certainly accepted (it answered a first request on
        // it), then a login whose body is only half sent when shutdown begins: the request is
        // in flight however loaded the machine is, and cannot finish before the rest arrives.
        let addr = srv.url.trim_start_matches("http://").to_string();
        let mut conn = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        conn.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("write");
        let mut first = vec![0u8; 4096];
        let n = conn.read(&mut first).await.expect("read");
        assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "first request answered");
        let body = serde_json::json!({"email": email, "password": crate::support::PASSWORD}).to_string();
        let (head, tail) = body.split_at(body.len() / 2);
        conn.write_all(format!("POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
            Content-Length: {}\r\n\r\n{head}", body.len()).as_bytes()).await.expect("write");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let url = srv.url.clone();
        let stopping = tokio::spawn(srv.stop());
        let mut refused = false;
        for _ in 0..100 {
            if reqwest::get(format!("{url}/healthz")).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(refused, "no new connections once shutdown began");
        conn.write_all(tail.as_bytes()).await.expect("the rest of the body");
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.expect("read the answer");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "the request in flight was answered: {answer}");
        assert!(answer.contains("access_token"), "{answer}");
        stopping.await.expect("server stopped");
    }

    async fn readiness_fails_once_shutdown_begins(srv: TestServer) {
        let anon = srv.anon();
        srv.state.shutdown.cancel();
        let body = anon.get("/readyz").await.problem(503);
        assert!(body["detail"].as_str().expect("detail").contains("shutting down"));
    }
}
