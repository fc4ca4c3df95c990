//! People: profiles an org admin creates and staff keep current, roles that the organisation
//! grants and revokes (taking effect at once), oversight that reads but never changes, and the
//! report of profiles nobody uses any more.

use reqwest::Method;
use serde_json::{Value, json};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Client, Resp, TestServer};

async fn duty_station(system_admin: &Client, name: &str) -> i64 {
    let station = system_admin
        .post(
            "/api/v1/duty-stations",
            json!({"name": name, "country_code": "SD"}),
        )
        .await
        .expect(201);
    station["id"].as_i64().expect("station id")
}

/// Adds a staff member through the API; returns the new profile.
async fn add_person(admin: &Client, org: i64, email: &str, name: &str) -> Value {
    admin
        .post(
            &format!("/api/v1/organisations/{org}/users"),
            json!({"email": email, "name": name}),
        )
        .await
        .expect(201)
}

async fn grant(by: &Client, user: i64, role: &str) -> Resp {
    by.send(
        Method::PUT,
        &format!("/api/v1/users/{user}/roles/{role}"),
        None,
    )
    .await
}

async fn revoke(by: &Client, user: i64, role: &str) -> Resp {
    by.delete(&format!("/api/v1/users/{user}/roles/{role}"))
        .await
}

fn id(person: &Value) -> i64 {
    person["id"].as_i64().expect("id")
}

/// The places (`at`) a 422 problem names, sorted.
fn issue_places(problem: &Value) -> Vec<String> {
    let mut at: Vec<String> = problem["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["at"].as_str().expect("at").to_string())
        .collect();
    at.sort();
    at
}

/// The audit entries of `org` with this action, newest first.
async fn audit_entries(reader: &Client, org: i64, action: &str) -> Vec<Value> {
    let log = reader
        .get(&format!("/api/v1/organisations/{org}/audit"))
        .await
        .expect(200);
    log.as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

async fn personnel(reader: &Client, org: i64) -> Value {
    reader
        .get(&format!("/api/v1/organisations/{org}/users"))
        .await
        .expect(200)
}

/// Moves a profile's creation and last use into the past, as if the days had passed.
async fn pretend_days_passed(
    srv: &TestServer,
    user: i64,
    created_days_ago: i64,
    seen_days_ago: Option<i64>,
) {
    const DAY_MS: i64 = 86_400_000;
    let now = vigil_server::db::now_ms();
    let created = now - created_days_ago * DAY_MS;
    let seen = seen_days_ago.map(|d| now - d * DAY_MS);
    let done = vigil_server::on_writer!(&srv.state.db, pool => sqlx::query(
        "UPDATE users SET created_at = $1, last_seen_at = $2 WHERE id = $3")
        .bind(created).bind(seen).bind(user).execute(pool).await.map(|r| r.rows_affected()));
    assert_eq!(done.expect("update users"), 1);
}

on_both_databases! {
    async fn an_org_admin_creates_a_person_with_a_full_profile_and_reads_it_back(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let system_admin = srv.user(srv.org().await, &[Role::Staff], true).await;
        let khartoum = duty_station(&system_admin, "Khartoum").await;

        let created = admin.post(&format!("/api/v1/organisations/{org}/users"), json!({
            "email": "  Halima.Osman@UNDP.example ",
            "name": "Halima Osman",
            "phone": "+249 (912) 345-678",
            "duty_station_id": khartoum,
            "emergency_contact": {"name": "Yasir Osman", "phone": "+249912000111"},
            "preferred_language": "ar",
            "roles": ["staff", "operator"],
            "dependants": [
                {"name": "Sara Osman", "relationship": "child", "date_of_birth": "2015-04-30"},
                {"name": "Omar Osman", "relationship": "spouse", "date_of_birth": null},
            ],
        })).await.expect(201);
        assert_eq!(created["email"], "halima.osman@undp.example");
        assert_eq!(created["phone"], "+249912345678", "stored in E.164");
        assert_eq!(created["org_id"], org);
        assert_eq!(created["active"], true);
        assert_eq!(created["system_admin"], false);
        assert!(created["last_seen_at"].is_null(), "nobody has used the profile yet");

        let read = admin.get(&format!("/api/v1/users/{}", id(&created))).await.expect(200);
        assert_eq!(read, created);
        assert_eq!(read["duty_station_id"], khartoum);
        assert_eq!(read["emergency_contact"], json!({"name": "Yasir Osman", "phone": "+249912000111"}));
        assert_eq!(read["preferred_language"], "ar");
        assert_eq!(read["roles"], json!(["staff", "operator"]));
        // Each dependant gets an id (roll-call answers name it).
        let ids: Vec<i64> = read["dependants"].as_array().expect("dependants").iter().filter_map(|d| d["id"].as_i64()).collect();
        assert_eq!(ids.len(), 2);
        assert_eq!(read["dependants"], json!([
            {"id": ids[0], "name": "Sara Osman", "relationship": "child", "date_of_birth": "2015-04-30"},
            {"id": ids[1], "name": "Omar Osman", "relationship": "spouse", "date_of_birth": null},
        ]));

        let creations = audit_entries(&admin, org, "user.create").await;
        assert!(creations.iter().any(|e| e["target"] == format!("user:{}", id(&created)) && e["actor_id"] == admin.user_id),
            "the creation is audited: {creations:?}");
        admin.post(&format!("/api/v1/organisations/{org}/users"),
            json!({"email": "HALIMA.OSMAN@undp.example", "name": "Someone Else"})).await.problem(409);
    }

    async fn staff_keep_their_own_phone_and_dependants_current_and_nothing_else(srv: TestServer) {
        let org = srv.org().await;
        let staff = srv.user(org, &[Role::Staff], false).await;
        let updated = staff.patch("/api/v1/me", json!({
            "phone": "+254 722 000 333",
            "dependants": [{"name": "Achieng", "relationship": "child", "date_of_birth": "2019-01-02"}],
        })).await.expect(200);
        assert_eq!(updated["phone"], "+254722000333");
        let achieng = &updated["dependants"][0];
        assert!(achieng["id"].is_i64(), "{achieng}");
        assert_eq!(updated["dependants"], json!([{"id": achieng["id"], "name": "Achieng", "relationship": "child", "date_of_birth": "2019-01-02"}]));
        let me = staff.get("/api/v1/me").await.expect(200);
        assert_eq!(me["phone"], "+254722000333");
        assert_eq!(me["dependants"].as_array().expect("dependants").len(), 1);

        for field in [json!({"roles": ["org_admin"]}), json!({"name": "New Name"}), json!({"active": false}),
                      json!({"system_admin": true}), json!({"duty_station_id": 1})] {
            let problem = staff.patch("/api/v1/me", field.clone()).await.problem(422);
            assert!(problem["detail"].as_str().expect("detail").contains("unknown field"), "{field}: {problem}");
        }
        let after = staff.get("/api/v1/me").await.expect(200);
        assert_eq!(after["roles"], json!(["staff"]));
        assert_eq!(after["name"], me["name"]);
        assert_eq!(after["active"], true);
        assert_eq!(after["system_admin"], false);
    }

    async fn every_invalid_field_is_named_in_the_issues(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let before = personnel(&admin, org).await;
        let problem = admin.post(&format!("/api/v1/organisations/{org}/users"), json!({
            "email": "not an email",
            "name": "   ",
            "phone": "0700 123 456",
            "preferred_language": "French",
            "password": "short",
            "dependants": [
                {"name": "", "relationship": "child"},
                {"name": "Kofi", "relationship": " ", "date_of_birth": "30/04/2015"},
            ],
        })).await.problem(422);
        assert_eq!(issue_places(&problem), ["dependants/0/name", "dependants/1/date_of_birth",
            "dependants/1/relationship", "email", "name", "password", "phone", "preferred_language"]);
        assert_eq!(personnel(&admin, org).await, before, "nothing was created");
        let problem = admin.post(&format!("/api/v1/organisations/{org}/users"),
            json!({"email": "ok@wfp.example", "name": "Ok", "duty_station_id": 987_654})).await.problem(422);
        assert_eq!(issue_places(&problem), ["duty_station_id"]);
        assert_eq!(personnel(&admin, org).await, before, "nothing was created");

        let staff = srv.user(org, &[Role::Staff], false).await;
        let problem = staff.patch("/api/v1/me", json!({"phone": "call me", "preferred_language": "Swahili"})).await.problem(422);
        assert_eq!(issue_places(&problem), ["phone", "preferred_language"]);
        let me = staff.get("/api/v1/me").await.expect(200);
        assert!(me["phone"].is_null());
        assert_eq!(me["preferred_language"], "en");
    }

    async fn an_email_address_has_exactly_one_at_sign_and_no_empty_labels(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        for email in ["amina@@wfp.example", "amina@wfp..example", "amina@wfp@example.org"] {
            let problem = admin.post(&format!("/api/v1/organisations/{org}/users"),
                json!({"email": email, "name": "Amina"})).await.problem(422);
            assert_eq!(issue_places(&problem), ["email"], "{email}");
        }
    }

    async fn an_emergency_contact_must_be_reachable(srv: TestServer) {
        // The roster import checks the emergency contact's phone; the profile API must too,
        // or the SMS fallback has nobody to call.
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let problem = admin.post(&format!("/api/v1/organisations/{org}/users"), json!({
            "email": "nour@unfpa.example", "name": "Nour",
            "emergency_contact": {"name": "", "phone": "ask at the gate"},
        })).await.problem(422);
        assert!(issue_places(&problem).iter().any(|at| at.contains("emergency_contact")), "{problem}");
        let staff = srv.user(org, &[Role::Staff], false).await;
        let problem = staff.patch("/api/v1/me", json!({"emergency_contact": {"name": "Mum", "phone": "not a phone"}}))
            .await.problem(422);
        assert!(issue_places(&problem).iter().any(|at| at.contains("emergency_contact")), "{problem}");
    }

    async fn a_revoked_role_takes_effect_on_the_members_very_next_request(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let operator = srv.user(org, &[Role::Staff, Role::Operator], false).await;
        personnel(&operator, org).await;

        let person = revoke(&admin, operator.user_id, "operator").await.expect(200);
        assert_eq!(person["roles"], json!(["staff"]));
        let problem = operator.get(&format!("/api/v1/organisations/{org}/users")).await.problem(403);
        assert!(problem["detail"].as_str().expect("detail").contains("operator"));
        assert_eq!(operator.get("/api/v1/me").await.expect(200)["roles"], json!(["staff"]));

        let person = grant(&admin, operator.user_id, "operator").await.expect(200);
        assert_eq!(person["roles"], json!(["staff", "operator"]));
        personnel(&operator, org).await;

        let target = format!("user:{}", operator.user_id);
        let revokes = audit_entries(&admin, org, "role.revoke").await;
        assert_eq!(revokes.len(), 1);
        assert_eq!((&revokes[0]["target"], &revokes[0]["detail"], &revokes[0]["actor_id"]), (&json!(target), &json!("operator"), &json!(admin.user_id)));
        let grants = audit_entries(&admin, org, "role.grant").await;
        assert_eq!(grants.len(), 1);
        assert_eq!((&grants[0]["target"], &grants[0]["detail"], &grants[0]["actor_id"]), (&json!(target), &json!("operator"), &json!(admin.user_id)));

        // Granting a role already held, or revoking one not held, changes nothing and records nothing.
        grant(&admin, operator.user_id, "operator").await.expect(200);
        revoke(&admin, operator.user_id, "adviser").await.expect(200);
        assert_eq!(audit_entries(&admin, org, "role.grant").await.len(), 1);
        assert_eq!(audit_entries(&admin, org, "role.revoke").await.len(), 1);
    }

    async fn an_org_admin_grants_nothing_in_another_organisation_and_never_oversight(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let a_admin = srv.user(a, &[Role::OrgAdmin], false).await;
        let a_member = srv.user(a, &[Role::Staff], false).await;
        let b_admin = srv.user(b, &[Role::OrgAdmin], false).await;
        let b_member = srv.user(b, &[Role::Staff], false).await;
        let b_before = personnel(&b_admin, b).await;

        grant(&a_admin, b_member.user_id, "operator").await.problem(403);
        revoke(&a_admin, b_member.user_id, "staff").await.problem(403);
        revoke(&a_admin, b_admin.user_id, "org_admin").await.problem(403);
        a_admin.patch(&format!("/api/v1/users/{}", b_member.user_id), json!({"active": false})).await.problem(403);
        assert_eq!(personnel(&b_admin, b).await, b_before, "B is untouched");

        let problem = grant(&a_admin, a_member.user_id, "oversight").await.problem(403);
        assert!(problem["detail"].as_str().expect("detail").contains("system admin"));
        grant(&a_admin, a_admin.user_id, "oversight").await.problem(403);
        a_admin.post(&format!("/api/v1/organisations/{a}/users"),
            json!({"email": "watcher@a.example", "name": "Watcher", "roles": ["oversight"]})).await.problem(403);
        a_admin.post(&format!("/api/v1/organisations/{a}/users"),
            json!({"email": "root@a.example", "name": "Root", "system_admin": true})).await.problem(403);
        assert_eq!(a_member.get("/api/v1/me").await.expect(200)["roles"], json!(["staff"]));
        assert_eq!(a_admin.get("/api/v1/me").await.expect(200)["roles"], json!(["org_admin"]));
        assert!(personnel(&a_admin, a).await.as_array().expect("list").iter().all(|p| p["email"] != "watcher@a.example" && p["email"] != "root@a.example"));
    }

    async fn an_org_admin_cannot_take_over_accounts_that_reach_beyond_the_organisation(srv: TestServer) {
        // A system admin and an oversight officer belong to an organisation like everyone else;
        // its org admin must not be able to set their password (and log in as them) or retire them.
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let root = srv.user(org, &[Role::Staff], true).await;
        let watcher = srv.user(org, &[Role::Oversight], false).await;
        for target in [&root, &watcher] {
            let account = format!("/api/v1/users/{}", target.user_id);
            admin.put(&format!("{account}/password"), json!({"password": "taken over by the org admin"})).await.problem(403);
            admin.patch(&account, json!({"active": false})).await.problem(403);
            target.get("/api/v1/me").await.expect(200);
        }
        srv.anon().post("/api/v1/auth/login", json!({"email": root.get("/api/v1/me").await.expect(200)["email"],
            "password": "taken over by the org admin"})).await.problem(401);
    }

    async fn the_last_org_admin_cannot_be_revoked(srv: TestServer) {
        let org = srv.org().await;
        let first = srv.user(org, &[Role::OrgAdmin], false).await;
        let problem = revoke(&first, first.user_id, "org_admin").await.problem(409);
        assert!(problem["detail"].as_str().expect("detail").contains("last org admin"));
        assert_eq!(first.get("/api/v1/me").await.expect(200)["roles"], json!(["org_admin"]));
        assert!(audit_entries(&first, org, "role.revoke").await.is_empty());

        let second = srv.user(org, &[Role::Staff], false).await;
        grant(&first, second.user_id, "org_admin").await.expect(200);
        revoke(&second, first.user_id, "org_admin").await.expect(200);
        revoke(&second, second.user_id, "org_admin").await.problem(409);
        first.get(&format!("/api/v1/organisations/{org}/users")).await.problem(403);
        assert_eq!(second.get("/api/v1/me").await.expect(200)["roles"], json!(["staff", "org_admin"]));
    }

    async fn two_admins_revoking_each_other_at_once_leave_one_admin(srv: TestServer) {
        for round in 0..10 {
            let org = srv.org().await;
            let one = srv.user(org, &[Role::OrgAdmin], false).await;
            let two = srv.user(org, &[Role::OrgAdmin], false).await;
            let (r1, r2) = tokio::join!(
                revoke(&one, two.user_id, "org_admin"),
                revoke(&two, one.user_id, "org_admin"),
            );
            let statuses = [r1.status, r2.status];
            let system_admin = srv.user(org, &[Role::Staff], true).await;
            let admins = system_admin.get(&format!("/api/v1/organisations/{org}/users?role=org_admin")).await.expect(200);
            assert_eq!(admins.as_array().expect("list").len(), 1,
                "round {round}: revokes answered {statuses:?} and left {admins}");
        }
    }

    async fn oversight_reads_another_organisations_personnel_and_audit_but_changes_nothing(srv: TestServer) {
        let own = srv.org().await;
        let b = srv.org().await;
        let watcher = srv.user(own, &[Role::Oversight], false).await;
        let b_admin = srv.user(b, &[Role::OrgAdmin], false).await;
        let b_member = srv.user(b, &[Role::Staff], false).await;
        let b_before = personnel(&b_admin, b).await;

        assert_eq!(personnel(&watcher, b).await, b_before);
        assert_eq!(watcher.get(&format!("/api/v1/users/{}", b_member.user_id)).await.expect(200)["org_id"], b);
        let audit = watcher.get(&format!("/api/v1/organisations/{b}/audit")).await.expect(200);
        assert!(audit.as_array().expect("entries").iter().any(|e| e["action"] == "user.create"));
        watcher.get(&format!("/api/v1/organisations/{b}/reports/stale-profiles")).await.expect(200);

        let member = format!("/api/v1/users/{}", b_member.user_id);
        watcher.patch(&member, json!({"phone": "+252 61 000 0000"})).await.problem(403);
        watcher.put(&format!("{member}/password"), json!({"password": "a takeover password"})).await.problem(403);
        grant(&watcher, b_member.user_id, "operator").await.problem(403);
        revoke(&watcher, b_member.user_id, "staff").await.problem(403);
        watcher.post(&format!("/api/v1/organisations/{b}/users"), json!({"email": "x@b.example", "name": "X"})).await.problem(403);
        watcher.send_raw(Method::POST, &format!("/api/v1/organisations/{b}/roster"), "text/csv",
            b"email,name\ny@b.example,Y\n".to_vec()).await.problem(403);
        watcher.post(&format!("/api/v1/organisations/{own}/users"), json!({"email": "z@own.example", "name": "Z"})).await.problem(403);
        grant(&watcher, watcher.user_id, "org_admin").await.problem(403);
        assert_eq!(personnel(&b_admin, b).await, b_before, "B is exactly as before");
        assert_eq!(watcher.get("/api/v1/me").await.expect(200)["roles"], json!(["oversight"]));
    }

    async fn the_stale_profile_report_lists_exactly_the_profiles_nobody_uses(srv: TestServer) {
        let org = srv.org().await;
        let admin = srv.user(org, &[Role::OrgAdmin], false).await;
        let new_hire = add_person(&admin, org, "new.hire@ifrc.example", "New Hire").await;
        let never_came = add_person(&admin, org, "never.came@ifrc.example", "Never Came").await;
        let long_gone = add_person(&admin, org, "long.gone@ifrc.example", "Long Gone").await;
        let regular = add_person(&admin, org, "regular@ifrc.example", "Regular").await;
        let retired = add_person(&admin, org, "retired@ifrc.example", "Retired").await;
        pretend_days_passed(&srv, id(&never_came), 60, None).await;
        pretend_days_passed(&srv, id(&long_gone), 400, Some(45)).await;
        pretend_days_passed(&srv, id(&regular), 400, Some(2)).await;
        pretend_days_passed(&srv, id(&retired), 400, Some(200)).await;
        admin.patch(&format!("/api/v1/users/{}", id(&retired)), json!({"active": false})).await.expect(200);

        let stale = admin.get(&format!("/api/v1/organisations/{org}/reports/stale-profiles?days=30")).await.expect(200);
        let emails: Vec<&str> = stale.as_array().expect("list").iter().map(|p| p["email"].as_str().expect("email")).collect();
        assert_eq!(emails, ["never.came@ifrc.example", "long.gone@ifrc.example"], "oldest first; {stale}");
        assert!(stale[0]["last_seen_at"].is_null(), "never used: counted from creation");
        assert!(stale[1]["last_seen_at"].is_string());

        let quarter = admin.get(&format!("/api/v1/organisations/{org}/reports/stale-profiles")).await.expect(200);
        assert_eq!(quarter, json!([]), "by default, 90 days");
        let everyone = admin.get(&format!("/api/v1/organisations/{org}/reports/stale-profiles?days=0")).await.expect(200);
        assert_eq!(everyone.as_array().expect("list").len(), 5, "every active profile: {everyone}");
        assert!(everyone.as_array().expect("list").iter().any(|p| p["id"] == new_hire["id"]));

        let problem = admin.get(&format!("/api/v1/organisations/{org}/reports/stale-profiles?days=-1")).await.problem(422);
        assert_eq!(issue_places(&problem), ["days"]);
        admin.get(&format!("/api/v1/organisations/{org}/reports/stale-profiles?days=3651")).await.problem(422);
        admin.get(&format!("/api/v1/organisations/{org}/reports/stale-profiles?days=many")).await.problem(400);
    }
}
