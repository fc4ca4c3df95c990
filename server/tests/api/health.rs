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
    }

    async fn shutdown_lets_a_request_in_flight_finish_then_refuses_new_ones(srv: TestServer) {
        let org = srv.org().await;
        let email = format!("{}@test.example", crate::support::unique("d"));
        let person = vigil_server::users::NewPerson {
            email: email.clone(), name: "Drain".into(), password: Some(crate::support::PASSWORD.into()),
            ..Default::default()
        };
        vigil_server::users::create_person(&srv.state.db, org, person, None).await.expect("user");
        let anon = srv.anon();
        // A login spends tens of milliseconds hashing: it is still in flight when shutdown begins.
        let in_flight = tokio::spawn(async move {
            anon.post("/api/v1/auth/login", serde_json::json!({"email": email, "password": crate::support::PASSWORD})).await
        });
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let url = srv.url.clone();
        srv.stop().await;
        assert_eq!(in_flight.await.expect("task").status, 200, "the request in flight was answered");
        assert!(reqwest::get(format!("{url}/healthz")).await.is_err(), "no new connections after shutdown");
    }

    async fn readiness_fails_once_shutdown_begins(srv: TestServer) {
        let anon = srv.anon();
        srv.state.shutdown.cancel();
        let body = anon.get("/readyz").await.problem(503);
        assert!(body["detail"].as_str().expect("detail").contains("shutting down"));
    }
}
