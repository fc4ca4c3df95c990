//! Roster import: an org admin uploads the organisation's personnel as CSV or JSON; rows create,
//! update or deactivate people; every bad row is reported with its line and reason, and nothing
//! is half-applied.

use reqwest::Method;
use serde_json::{Value, json};
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Backend, Client, PASSWORD, Resp, TestServer};

/// An organisation with its org admin, and a system admin (of another organisation) who keeps
/// the shared duty stations.
struct Office {
    org: i64,
    admin: Client,
    system_admin: Client,
}

async fn office(srv: &TestServer) -> Office {
    let org = srv.org().await;
    let operations = srv.org().await;
    Office {
        org,
        admin: srv.user(org, &[Role::OrgAdmin], false).await,
        system_admin: srv.user(operations, &[Role::Staff], true).await,
    }
}

async fn duty_station(system_admin: &Client, name: &str, country: &str) -> i64 {
    let station = system_admin
        .post(
            "/api/v1/duty-stations",
            json!({"name": name, "country_code": country}),
        )
        .await
        .expect(201);
    station["id"].as_i64().expect("station id")
}

/// Uploads a roster; `options` is the query string, e.g. `?dry_run=true`.
async fn upload(client: &Client, org: i64, options: &str, content_type: &str, body: &str) -> Resp {
    let path = format!("/api/v1/organisations/{org}/roster{options}");
    client
        .send_raw(Method::POST, &path, content_type, body.as_bytes().to_vec())
        .await
}

async fn personnel(client: &Client, org: i64) -> Vec<Value> {
    let list = client
        .get(&format!("/api/v1/organisations/{org}/users"))
        .await
        .expect(200);
    list.as_array().expect("a list of people").clone()
}

fn person<'a>(people: &'a [Value], email: &str) -> &'a Value {
    people
        .iter()
        .find(|p| p["email"] == email)
        .unwrap_or_else(|| panic!("{email} is not in the personnel list"))
}

/// The signed-in person's email and name, as a roster would list them.
async fn email_and_name(client: &Client) -> (String, String) {
    let me = client.get("/api/v1/me").await.expect(200);
    let field = |k: &str| me[k].as_str().expect("email and name").to_string();
    (field("email"), field("name"))
}

/// Ids of the active people, sorted.
fn active_ids(people: &[Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = people
        .iter()
        .filter(|p| p["active"] == true)
        .map(|p| p["id"].as_i64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// The organisation's `roster.import` audit entries, newest first.
async fn roster_imports(client: &Client, org: i64) -> Vec<Value> {
    let log = client
        .get(&format!("/api/v1/organisations/{org}/audit"))
        .await
        .expect(200);
    log.as_array()
        .expect("audit entries")
        .iter()
        .filter(|e| e["action"] == "roster.import")
        .cloned()
        .collect()
}

/// The `line N` (or `item N`) each issue names, in order.
fn issue_places(problem: &Value) -> Vec<&str> {
    problem["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|i| i["at"].as_str().expect("at"))
        .collect()
}

/// The reason given for the issue at `at`.
fn reason_at<'a>(problem: &'a Value, at: &str) -> &'a str {
    problem["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .find(|i| i["at"] == at)
        .and_then(|i| i["reason"].as_str())
        .unwrap_or_else(|| panic!("no issue at {at}: {problem}"))
}

fn report(rows: u64, created: u64, updated: u64, unchanged: u64, deactivated: u64) -> Value {
    json!({"dry_run": false, "rows": rows, "created": created, "updated": updated,
           "unchanged": unchanged, "deactivated": deactivated})
}

/// Gives an imported person a password (imports create none) and signs them in.
async fn sign_in_as(srv: &TestServer, admin: &Client, people: &[Value], email: &str) -> Client {
    let id = person(people, email)["id"].as_i64().expect("id");
    admin
        .put(
            &format!("/api/v1/users/{id}/password"),
            json!({"password": PASSWORD}),
        )
        .await
        .expect(204);
    srv.anon().login(email, PASSWORD).await
}

on_both_databases! {
    async fn a_csv_roster_creates_then_updates_counts_unchanged_and_deactivates(srv: TestServer) {
        let o = office(&srv).await;
        let juba = duty_station(&o.system_admin, "Juba", "SS").await;
        let bor = duty_station(&o.system_admin, "Bor", "SS").await;

        let first = "email,name,phone,duty_station,roles,preferred_language\n\
                     Amina@Unhcr.example,Amina Yusuf,+211 912 345 678,Juba,staff;operator,ar\n\
                     john@unhcr.example,John Deng,,bor,staff,\n\
                     grace@unhcr.example,Grace Akol,,Juba,adviser,en\n";
        let done = upload(&o.admin, o.org, "", "text/csv", first).await.expect(200);
        assert_eq!(done, report(3, 3, 0, 0, 0));

        let people = personnel(&o.admin, o.org).await;
        let amina = person(&people, "amina@unhcr.example");
        assert_eq!(amina["name"], "Amina Yusuf");
        assert_eq!(amina["phone"], "+211912345678", "phones are stored in E.164");
        assert_eq!(amina["duty_station_id"], juba);
        assert_eq!(amina["roles"], json!(["staff", "operator"]));
        assert_eq!(amina["preferred_language"], "ar");
        let john = person(&people, "john@unhcr.example");
        assert_eq!(john["duty_station_id"], bor, "station names match whatever the case");
        assert_eq!(john["roles"], json!(["staff"]));
        assert_eq!(john["preferred_language"], "en");
        assert_eq!(person(&people, "grace@unhcr.example")["roles"], json!(["adviser"]));
        let grace = sign_in_as(&srv, &o.admin, &people, "grace@unhcr.example").await;
        grace.get("/api/v1/me").await.expect(200);

        // Next month's roster: Amina as before, John renamed and made adviser, Grace gone.
        let second = "email,name,phone,duty_station,roles,active\n\
                      amina@unhcr.example,Amina Yusuf,+211912345678,Juba,staff;operator,true\n\
                      john@unhcr.example,John Deng Garang,,Bor,staff;adviser,true\n\
                      grace@unhcr.example,Grace Akol,,Juba,adviser,false\n";
        let done = upload(&o.admin, o.org, "", "text/csv", second).await.expect(200);
        assert_eq!(done, report(3, 0, 2, 1, 1));

        let people = personnel(&o.admin, o.org).await;
        let john = person(&people, "john@unhcr.example");
        assert_eq!(john["name"], "John Deng Garang");
        assert_eq!(john["roles"], json!(["staff", "adviser"]));
        assert_eq!(person(&people, "grace@unhcr.example")["active"], false);
        assert_eq!(person(&people, "amina@unhcr.example")["active"], true);
        grace.get("/api/v1/me").await.problem(401);
        srv.anon().post("/api/v1/auth/login", json!({"email": "grace@unhcr.example", "password": PASSWORD}))
            .await.problem(401);

        let imports = roster_imports(&o.admin, o.org).await;
        assert_eq!(imports.len(), 2, "each import is audited: {imports:?}");
        assert_eq!(imports[0]["actor_id"], o.admin.user_id);
        assert_eq!(imports[0]["target"], format!("organisation:{}", o.org));
        assert_eq!(imports[0]["detail"], "rows=3 created=0 updated=2 unchanged=1 deactivated=1 dry_run=false");
        assert_eq!(imports[1]["detail"], "rows=3 created=3 updated=0 unchanged=0 deactivated=0 dry_run=false");
    }

    async fn every_bad_row_is_named_with_its_line_and_nothing_is_applied(srv: TestServer) {
        let o = office(&srv).await;
        duty_station(&o.system_admin, "Juba", "SS").await;
        let elsewhere = srv.org().await;
        let stranger = srv.user(elsewhere, &[Role::Staff], false).await;
        let (stranger_email, _) = email_and_name(&stranger).await;
        let before = personnel(&o.admin, o.org).await;

        let csv = format!("email,name,roles,duty_station\n\
                           good@unicef.example,Good Person,staff,Juba\n\
                           not-an-email,Bad Email,staff,\n\
                           role@unicef.example,Bad Role,commander,\n\
                           station@unicef.example,Bad Station,staff,Atlantis\n\
                           GOOD@unicef.example,Good Again,staff,\n\
                           {stranger_email},Poacher,staff,\n\
                           watcher@unicef.example,Watcher,oversight,\n");
        let problem = upload(&o.admin, o.org, "", "text/csv", &csv).await.problem(422);

        let mut places = issue_places(&problem);
        places.sort_unstable();
        assert_eq!(places, ["line 3", "line 4", "line 5", "line 6", "line 7", "line 8"]);
        assert!(reason_at(&problem, "line 3").contains("not-an-email"));
        assert!(reason_at(&problem, "line 4").contains("commander"));
        assert!(reason_at(&problem, "line 5").contains("Atlantis"));
        assert!(reason_at(&problem, "line 6").contains("first at line 2"));
        assert!(reason_at(&problem, "line 7").contains("another organisation"));
        assert!(reason_at(&problem, "line 8").contains("oversight"));
        assert_eq!(problem["detail"], "6 of 7 rows are invalid; nothing was imported");

        assert_eq!(personnel(&o.admin, o.org).await, before, "the personnel list is exactly as before");
        assert_eq!(stranger.get("/api/v1/me").await.expect(200)["org_id"], elsewhere);
        assert!(roster_imports(&o.admin, o.org).await.is_empty());
    }

    async fn a_json_roster_creates_people_and_names_bad_items(srv: TestServer) {
        let o = office(&srv).await;
        let roster = json!([
            {"email": "fatima@wfp.example", "name": "Fatima Ali", "roles": ["staff", "operator"],
             "phone": "+254 700 123 456", "emergency_contact_name": "Omar Ali",
             "emergency_contact_phone": "+254 711 000 111", "active": true},
            {"email": "peter@wfp.example", "name": "Peter Otieno", "roles": [], "active": null},
        ]);
        let done = upload(&o.admin, o.org, "", "application/json", &roster.to_string()).await.expect(200);
        assert_eq!(done, report(2, 2, 0, 0, 0));
        let people = personnel(&o.admin, o.org).await;
        let fatima = person(&people, "fatima@wfp.example");
        assert_eq!(fatima["roles"], json!(["staff", "operator"]));
        assert_eq!(fatima["phone"], "+254700123456");
        assert_eq!(fatima["emergency_contact"], json!({"name": "Omar Ali", "phone": "+254711000111"}));
        assert_eq!(person(&people, "peter@wfp.example")["roles"], json!(["staff"]), "new people default to staff");

        let bad = json!([
            {"email": "ok@wfp.example", "name": "Fine"},
            {"email": "ko@wfp.example", "name": "Unknown Role", "roles": ["pilot"]},
            {"email": "salary@wfp.example", "name": "Salary", "salary": 1000},
        ]);
        let problem = upload(&o.admin, o.org, "", "application/json", &bad.to_string()).await.problem(422);
        assert_eq!(issue_places(&problem), ["item 3"], "unknown columns are refused before rows are checked");
        assert!(reason_at(&problem, "item 3").contains("salary"));
        let bad_role = json!([{"email": "ok@wfp.example", "name": "Fine"},
                              {"email": "ko@wfp.example", "name": "Unknown Role", "roles": ["pilot"]}]);
        let problem = upload(&o.admin, o.org, "", "application/json", &bad_role.to_string()).await.problem(422);
        assert_eq!(issue_places(&problem), ["item 2"]);
        assert!(reason_at(&problem, "item 2").contains("pilot"));
        assert_eq!(personnel(&o.admin, o.org).await.len(), 3, "the admin, Fatima and Peter; nothing more");
    }

    async fn a_dry_run_reports_what_would_happen_and_writes_nothing(srv: TestServer) {
        let o = office(&srv).await;
        let colleague = srv.user(o.org, &[Role::Staff], false).await;
        let (email, name) = email_and_name(&colleague).await;
        let before = personnel(&o.admin, o.org).await;
        let csv = format!("email,name,active\n\
                           new.one@ocha.example,New One,\n\
                           new.two@ocha.example,New Two,\n\
                           {email},{name},false\n");
        let done = upload(&o.admin, o.org, "?dry_run=true", "text/csv", &csv).await.expect(200);
        assert_eq!(done, json!({"dry_run": true, "rows": 3, "created": 2, "updated": 1, "unchanged": 0, "deactivated": 1}));
        assert_eq!(personnel(&o.admin, o.org).await, before);
        colleague.get("/api/v1/me").await.expect(200);
        assert!(roster_imports(&o.admin, o.org).await.is_empty(), "a dry run leaves no trace");
    }

    async fn deactivate_missing_retires_absent_members_but_never_the_importer(srv: TestServer) {
        let o = office(&srv).await;
        let stays = srv.user(o.org, &[Role::Staff], false).await;
        let leaves = srv.user(o.org, &[Role::Operator], false).await;
        let (email, name) = email_and_name(&stays).await;
        let csv = format!("email,name\n{email},{name}\n");
        let done = upload(&o.admin, o.org, "?deactivate_missing=true", "text/csv", &csv).await.expect(200);
        assert_eq!(done, report(1, 0, 0, 1, 1));

        let mut expected = vec![o.admin.user_id, stays.user_id];
        expected.sort_unstable();
        assert_eq!(active_ids(&personnel(&o.admin, o.org).await), expected,
            "only the importer and the person in the file stay active");
        leaves.get("/api/v1/me").await.problem(401);
        o.admin.get("/api/v1/me").await.expect(200);
        stays.get("/api/v1/me").await.expect(200);
    }

    async fn unreadable_uploads_are_refused_with_the_reason(srv: TestServer) {
        let o = office(&srv).await;
        let before = personnel(&o.admin, o.org).await;
        let problem = upload(&o.admin, o.org, "", "application/vnd.ms-excel", "email,name\na@b.example,A\n").await.problem(415);
        assert!(problem["detail"].as_str().expect("detail").contains("text/csv"));
        upload(&o.admin, o.org, "", "text/csv", "").await.problem(422);
        let problem = upload(&o.admin, o.org, "", "text/csv", "email,name\n").await.problem(422);
        assert!(problem["detail"].as_str().expect("detail").contains("no rows"));
        upload(&o.admin, o.org, "", "application/json", "[]").await.problem(422);
        upload(&o.admin, o.org, "", "application/json", "{\"email\": \"a@b.example\"}").await.problem(422);
        let problem = upload(&o.admin, o.org, "", "text/csv", "email,phone\na@b.example,+254700000000\n").await.problem(422);
        assert!(reason_at(&problem, "line 1").contains("name"));
        let problem = upload(&o.admin, o.org, "", "text/csv", "email,name,roles\na@b.example,A,staff\nb@b.example,B\n").await.problem(422);
        assert_eq!(issue_places(&problem), ["line 3"], "a short row is named by its line");
        assert_eq!(personnel(&o.admin, o.org).await, before);
    }

    async fn an_excel_csv_with_a_byte_order_mark_and_crlf_imports(srv: TestServer) {
        let o = office(&srv).await;
        let csv = "\u{feff}Email,Name,Roles\r\nlina@iom.example,Lina Haddad,staff\r\n";
        let done = upload(&o.admin, o.org, "", "text/csv; charset=utf-8", csv).await.expect(200);
        assert_eq!(done, report(1, 1, 0, 0, 0));
        let people = personnel(&o.admin, o.org).await;
        assert_eq!(person(&people, "lina@iom.example")["name"], "Lina Haddad");
    }

    async fn a_system_admin_reimports_a_person_who_holds_oversight(srv: TestServer) {
        // Oversight is granted only by a system admin, who may also name it in a roster.
        let o = office(&srv).await;
        let watcher = srv.user(o.org, &[Role::Staff, Role::Oversight], false).await;
        let (email, name) = email_and_name(&watcher).await;
        let csv = format!("email,name,roles\n{email},{name},staff;oversight;operator\n");
        let done = upload(&o.system_admin, o.org, "", "text/csv", &csv).await.expect(200);
        assert_eq!(done, report(1, 0, 1, 0, 0));
        let after = watcher.get("/api/v1/me").await.expect(200);
        assert_eq!(after["roles"], json!(["staff", "operator", "oversight"]));
    }

    async fn a_roster_cannot_leave_the_organisation_without_an_active_org_admin(srv: TestServer) {
        let o = office(&srv).await;
        let (email, name) = email_and_name(&o.admin).await;
        let before = personnel(&o.admin, o.org).await;

        let problem = upload(&o.admin, o.org, "", "text/csv", &format!("email,name,active\n{email},{name},false\n")).await.problem(422);
        assert!(reason_at(&problem, "line 2").contains("yourself"));
        let problem = upload(&o.admin, o.org, "", "text/csv", &format!("email,name,roles\n{email},{name},staff\n")).await.problem(409);
        assert!(problem["detail"].as_str().expect("detail").contains("org admin"));
        assert_eq!(personnel(&o.admin, o.org).await, before, "nothing was imported");
        assert_eq!(o.admin.get("/api/v1/me").await.expect(200)["roles"], json!(["org_admin"]));
    }

    async fn an_org_admin_roster_cannot_retire_the_system_admin_or_oversight_of_the_organisation(srv: TestServer) {
        let o = office(&srv).await;
        let root = srv.user(o.org, &[Role::Staff], true).await;
        let watcher = srv.user(o.org, &[Role::Oversight], false).await;
        // Whether the server refuses such rows or skips them, both accounts must stay usable.
        let mut csv = String::from("email,name,active\n");
        for account in [&root, &watcher] {
            let (email, name) = email_and_name(account).await;
            csv.push_str(&format!("{email},{name},false\n"));
        }
        let answer = upload(&o.admin, o.org, "", "text/csv", &csv).await;
        for account in [&root, &watcher] {
            assert_eq!(account.get("/api/v1/me").await.status, 200,
                "still signed in after an import that answered {} {}", answer.status, answer.body);
        }

        let answer = upload(&o.admin, o.org, "?deactivate_missing=true", "text/csv", "email,name\nsomeone@x.example,Someone\n").await;
        for account in [&root, &watcher] {
            assert_eq!(account.get("/api/v1/me").await.status, 200,
                "still signed in after a deactivate_missing import that answered {} {}", answer.status, answer.body);
        }
    }

    async fn an_org_admin_cannot_import_into_another_organisation(srv: TestServer) {
        let o = office(&srv).await;
        let other = srv.org().await;
        let theirs = srv.user(other, &[Role::OrgAdmin], false).await;
        let before = personnel(&theirs, other).await;
        upload(&o.admin, other, "", "text/csv", "email,name\nintruder@x.example,Intruder\n").await.problem(403);
        assert_eq!(personnel(&theirs, other).await, before);
    }
}

/// The roster route has its own body limit, apart from the ordinary one.
async fn roster_size_limits(backend: Backend) {
    let Some(srv) = TestServer::start_with(backend, |s| s.roster_max_bytes = 1000).await else {
        return;
    };
    let o = office(&srv).await;
    let mut csv = String::from("email,name\n");
    for i in 0..60 {
        csv.push_str(&format!("person{i}@big.example,Person Number {i}\n"));
    }
    assert!(csv.len() > 1000);
    let problem = upload(&o.admin, o.org, "", "text/csv", &csv)
        .await
        .problem(413);
    assert!(problem["detail"].is_string());
    assert_eq!(
        personnel(&o.admin, o.org).await.len(),
        1,
        "nothing was imported"
    );
    upload(
        &o.admin,
        o.org,
        "",
        "text/csv",
        "email,name\nsmall@big.example,Small\n",
    )
    .await
    .expect(200);

    // A roster limit larger than the ordinary one lets rosters through that other routes refuse.
    let Some(srv) = TestServer::start_with(backend, |s| {
        s.max_body_bytes = 2000;
        s.roster_max_bytes = 64 * 1024;
    })
    .await
    else {
        return;
    };
    let o = office(&srv).await;
    assert!(csv.len() > 2000, "the roster is over the ordinary limit");
    let done = upload(&o.admin, o.org, "", "text/csv", &csv)
        .await
        .expect(200);
    assert_eq!(done["created"], 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_roster_is_413_sqlite() {
    roster_size_limits(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_roster_is_413_postgres() {
    roster_size_limits(Backend::Postgres).await;
}

on_both_databases! {
    async fn an_org_admin_roster_cannot_rewrite_an_oversight_officers_contact_details(srv: TestServer) {
        let o = office(&srv).await;
        let watcher = srv.user(o.org, &[Role::Oversight], false).await;
        let (email, name) = email_and_name(&watcher).await;
        let before = watcher.get("/api/v1/me").await.expect(200);
        // Their phone is where their SMS alerts go: an org admin must not be able to redirect it.
        let csv = format!("email,name,phone\n{email},{name},+254700999888\n");
        let problem = upload(&o.admin, o.org, "", "text/csv", &csv).await.problem(422);
        assert!(reason_at(&problem, "line 2").contains("only a system admin"));
        assert_eq!(watcher.get("/api/v1/me").await.expect(200)["phone"], before["phone"]);
        // The same row from a system admin goes through; an unchanged row is fine for anyone.
        upload(&o.system_admin, o.org, "", "text/csv", &csv).await.expect(200);
        let done = upload(&o.admin, o.org, "", "text/csv", &csv).await.expect(200);
        assert_eq!(done["unchanged"], 1);
    }
}
