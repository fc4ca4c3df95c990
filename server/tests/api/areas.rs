//! Security areas: drawn as GeoJSON, validated precisely, stored, and mirrored in the in-memory
//! index that decides who is inside.

use serde_json::{Value, json};
use vigil_server::policy::Role;

use crate::on_both_databases;

fn polygon(name: &str, level: i64, ring: Value) -> Value {
    json!({"type": "Feature", "properties": {"name": name, "kind": "security_area", "security_level": level},
           "geometry": {"type": "Polygon", "coordinates": [ring]}})
}

fn juba_ring() -> Value {
    json!([
        [31.50, 4.80],
        [31.65, 4.80],
        [31.65, 4.92],
        [31.50, 4.92],
        [31.50, 4.80]
    ])
}

fn indexed(srv: &crate::support::TestServer, lon: f64, lat: f64) -> Vec<i64> {
    vigil_server::areas::read_tracker(&srv.state.tracker)
        .areas()
        .containing(lon, lat, vigil_server::db::now_ms())
}

on_both_databases! {
    async fn an_adviser_draws_edits_and_deletes_an_area(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let created = adviser.post("/api/v1/areas", polygon("Juba town", 4, juba_ring())).await.expect(201);
        let id = created["id"].as_i64().expect("numeric id");
        assert_eq!(created["properties"]["org_id"], org);
        assert_eq!(created["properties"]["security_level_name"], "substantial");
        assert_eq!(created["geometry"]["coordinates"][0], juba_ring());
        assert!(indexed(&srv, 31.58, 4.85).contains(&id), "the index knows the new area");

        // Staff read areas (location-less staff pick the ones they follow) but cannot draw.
        let listed = staff.get("/api/v1/areas?kind=security_area").await;
        assert_eq!(listed.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/geo+json"),
            "served as the OpenAPI document says");
        let list = listed.expect(200);
        assert_eq!(list["type"], "FeatureCollection");
        assert!(list["features"].as_array().expect("features").iter().any(|f| f["id"] == id));
        staff.post("/api/v1/areas", polygon("Mine", 1, juba_ring())).await.problem(403);

        let mut moved = polygon("Juba town", 5, json!([[32.0, 5.0], [32.1, 5.0], [32.1, 5.1], [32.0, 5.0]]));
        moved["properties"]["valid_until"] = json!("2030-01-01T00:00:00+03:00");
        let updated = adviser.put(&format!("/api/v1/areas/{id}"), moved).await.expect(200);
        assert_eq!(updated["properties"]["security_level"], 5);
        assert_eq!(updated["properties"]["valid_until"], "2029-12-31T21:00:00Z");
        assert!(!indexed(&srv, 31.58, 4.85).contains(&id), "the old outline is gone from the index");
        assert!(indexed(&srv, 32.07, 5.03).contains(&id));

        adviser.delete(&format!("/api/v1/areas/{id}")).await.expect(204);
        adviser.get(&format!("/api/v1/areas/{id}")).await.problem(404);
        assert!(!indexed(&srv, 32.07, 5.03).contains(&id));
    }

    async fn circles_are_geodesic_and_cross_the_antimeridian(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let circle = json!({"type": "Feature", "properties": {"name": "Compound", "kind": "premises", "radius_m": 300.0},
                            "geometry": {"type": "Point", "coordinates": [31.5825, 4.8462]}});
        let c = adviser.post("/api/v1/areas", circle).await.expect(201);
        let cid = c["id"].as_i64().expect("id");
        // 0.0025° of latitude is about 276 m: inside; 0.003° is about 332 m: outside.
        assert!(indexed(&srv, 31.5825, 4.8462 + 0.0025).contains(&cid));
        assert!(!indexed(&srv, 31.5825, 4.8462 + 0.0030).contains(&cid));
        let fiji = polygon("Fiji waters", 3, json!([[179.0, -17.0], [-179.0, -17.0], [-179.0, -19.0], [179.0, -19.0], [179.0, -17.0]]));
        let f = adviser.post("/api/v1/areas", fiji).await.expect(201);
        let fid = f["id"].as_i64().expect("id");
        assert!(indexed(&srv, 179.9, -18.0).contains(&fid));
        assert!(indexed(&srv, -179.9, -18.0).contains(&fid));
        assert!(!indexed(&srv, 0.0, -18.0).contains(&fid));
    }

    async fn invalid_areas_say_exactly_what_is_wrong(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let cases = [
            (polygon("Bow tie", 3, json!([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])), "intersects"),
            (polygon("Open", 3, json!([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])), "not closed"),
            (polygon("Pole", 3, json!([[0.0, 0.0], [1.0, 91.0], [1.0, 0.0], [0.0, 0.0]])), "out of range"),
            (polygon("Level 9", 9, juba_ring()), "security level"),
            (json!({"type": "Feature", "properties": {"name": "No radius"}, "geometry": {"type": "Point", "coordinates": [1.0, 1.0]}}), "radius"),
            (json!({"type": "Feature", "properties": {"kind": "security_area"}, "geometry": {"type": "Polygon", "coordinates": [juba_ring()]}}), "name"),
            (json!({"type": "Feature", "properties": {"name": "Line"}, "geometry": {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]}}), "LineString"),
        ];
        for (feature, says) in cases {
            let body = adviser.post("/api/v1/areas", feature).await.problem(422);
            assert!(body["detail"].as_str().expect("detail").contains(says), "expected {says:?} in {body}");
        }
        let garbage = adviser.send_raw(reqwest::Method::POST, "/api/v1/areas", "application/json", b"{\"type\":\"Feature\"".to_vec()).await;
        garbage.problem(400);
        assert!(adviser.get("/api/v1/areas").await.expect(200)["features"].as_array().expect("f").iter()
            .all(|f| f["properties"]["org_id"] != org), "nothing was stored");
    }

    async fn a_parent_cannot_be_deleted_under_its_children(srv: TestServer) {
        let org = srv.org().await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let parent = adviser.post("/api/v1/areas", polygon("State", 3, juba_ring())).await.expect(201);
        let pid = parent["id"].as_i64().expect("id");
        let mut child = polygon("Town", 4, juba_ring());
        child["properties"]["parent_id"] = json!(pid);
        adviser.post("/api/v1/areas", child).await.expect(201);
        adviser.delete(&format!("/api/v1/areas/{pid}")).await.problem(409);
        let mut orphan = polygon("Orphan", 4, juba_ring());
        orphan["properties"]["parent_id"] = json!(987654);
        adviser.post("/api/v1/areas", orphan).await.problem(422);
    }
}
