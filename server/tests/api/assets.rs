//! Assets: an organisation's vehicles, satellite phones and radios, managed by its operators and
//! org admins, seen by its advisers and by oversight.

use serde_json::{Value, json};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::Client;

async fn register(by: &Client, org: i64, body: Value) -> Value {
    by.post(&format!("/api/v1/organisations/{org}/assets"), body)
        .await
        .expect(201)
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect()
}

on_both_databases! {
    async fn an_operator_registers_renames_and_deactivates_a_vehicle(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let adviser = srv.user(org, &[Role::Adviser], false).await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;

        let car = register(&operator, org, json!({"kind": "vehicle", "name": "  Land Cruiser 7  ", "identifier": "UN-1234"})).await;
        let id = car["id"].as_i64().expect("id");
        assert_eq!((car["kind"].as_str(), car["name"].as_str(), car["identifier"].as_str()), (Some("vehicle"), Some("Land Cruiser 7"), Some("UN-1234")));
        assert_eq!((car["org_id"].as_i64(), car["active"].as_bool()), (Some(org), Some(true)));
        // The org admin keeps the inventory too.
        register(&admin, org, json!({"kind": "satellite_phone", "name": "Thuraya XT", "identifier": "+88216 1234567"})).await;

        // Advisers read the list (they plan movements), sorted by name.
        let list = adviser.get(&format!("/api/v1/organisations/{org}/assets")).await.expect(200);
        assert_eq!(names(&list), ["Land Cruiser 7", "Thuraya XT"]);
        assert_eq!(adviser.get(&format!("/api/v1/assets/{id}")).await.expect(200)["identifier"], "UN-1234");

        let renamed = operator.patch(&format!("/api/v1/assets/{id}"), json!({"name": "Land Cruiser 7 (Bor)", "identifier": ""})).await.expect(200);
        assert_eq!((renamed["name"].as_str(), renamed["identifier"].as_str(), renamed["kind"].as_str()), (Some("Land Cruiser 7 (Bor)"), None, Some("vehicle")));

        let off = operator.patch(&format!("/api/v1/assets/{id}"), json!({"active": false})).await.expect(200);
        assert_eq!(off["active"], false);
        let active = adviser.get(&format!("/api/v1/organisations/{org}/assets?active=true")).await.expect(200);
        assert_eq!(names(&active), ["Thuraya XT"]);
        let inactive = adviser.get(&format!("/api/v1/organisations/{org}/assets?active=false")).await.expect(200);
        assert_eq!(names(&inactive), ["Land Cruiser 7 (Bor)"]);

        // Every change is in the organisation's audit trail, under the operator's name.
        let audit = admin.get(&format!("/api/v1/organisations/{org}/audit")).await.expect(200);
        let mine: Vec<&str> = audit.as_array().expect("audit").iter()
            .filter(|e| e["actor_id"] == operator.user_id && e["target"] == format!("asset:{id}"))
            .map(|e| e["action"].as_str().expect("action")).collect();
        assert_eq!(mine, ["asset.deactivate", "asset.update", "asset.create"]);
    }

    async fn bad_assets_are_refused_with_each_reason(srv: TestServer) {
        let org = srv.org().await;
        let operator = srv.user(org, &[Role::Operator], false).await;
        let path = format!("/api/v1/organisations/{org}/assets");
        operator.post(&path, json!({"kind": "helicopter", "name": "Mi-8"})).await.problem(422);
        let empty = operator.post(&path, json!({"kind": "radio", "name": "   ", "identifier": "x".repeat(201)})).await.problem(422);
        let at: Vec<&str> = empty["issues"].as_array().expect("issues").iter().map(|i| i["at"].as_str().expect("at")).collect();
        assert_eq!(at, ["name", "identifier"]);
        operator.post(&path, json!({"kind": "radio", "name": "HF base", "colour": "white"})).await.problem(422);
        operator.patch("/api/v1/assets/999999", json!({"name": "Ghost"})).await.problem(404);
        operator.get("/api/v1/assets/999999").await.problem(404);
        let radio = register(&operator, org, json!({"kind": "radio", "name": "HF base"})).await;
        operator.patch(&format!("/api/v1/assets/{}", radio["id"]), json!({"name": ""})).await.problem(422);
        let list = operator.get(&path).await.expect(200);
        assert_eq!(names(&list), ["HF base"], "nothing else was stored");
    }

    async fn each_organisation_manages_only_its_own_assets(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let operator_a = srv.user(a, &[Role::Operator], false).await;
        let operator_b = srv.user(b, &[Role::Operator], false).await;
        let adviser_a = srv.user(a, &[Role::Adviser], false).await;
        let staff_a = srv.user(a, &[Role::Staff], false).await;
        let oversight = srv.user(a, &[Role::Oversight], false).await;
        let b_car = register(&operator_b, b, json!({"kind": "vehicle", "name": "B's truck"})).await;
        let b_car = b_car["id"].as_i64().expect("id");

        // Operators of A can neither see nor touch B's assets.
        operator_a.get(&format!("/api/v1/organisations/{b}/assets")).await.problem(403);
        operator_a.get(&format!("/api/v1/assets/{b_car}")).await.problem(403);
        operator_a.post(&format!("/api/v1/organisations/{b}/assets"), json!({"kind": "vehicle", "name": "Planted"})).await.problem(403);
        operator_a.patch(&format!("/api/v1/assets/{b_car}"), json!({"active": false})).await.problem(403);
        // Within A, advisers read but do not manage; staff do neither.
        adviser_a.post(&format!("/api/v1/organisations/{a}/assets"), json!({"kind": "radio", "name": "VHF"})).await.problem(403);
        staff_a.get(&format!("/api/v1/organisations/{a}/assets")).await.problem(403);
        // Oversight reads every organisation's assets and changes none.
        assert_eq!(names(&oversight.get(&format!("/api/v1/organisations/{b}/assets")).await.expect(200)), ["B's truck"]);
        oversight.patch(&format!("/api/v1/assets/{b_car}"), json!({"name": "Renamed"})).await.problem(403);
        srv.anon().get(&format!("/api/v1/organisations/{b}/assets")).await.problem(401);

        let still = operator_b.get(&format!("/api/v1/assets/{b_car}")).await.expect(200);
        assert_eq!((still["name"].as_str(), still["active"].as_bool()), (Some("B's truck"), Some(true)));
    }
}
