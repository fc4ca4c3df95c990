//! The role × route matrix: every kind of caller against every `/api/v1` route, on their own
//! organisation's data and on another organisation's. Allowed callers get the route's success
//! status; everyone else gets a 403 problem (401 when not signed in). A route that appears in
//! the OpenAPI document without a row here fails the test, so new routes cannot skip the policy.
//!
//! The same for the WebSocket's topics: every kind of caller subscribes to every topic of their
//! own organisation and of another, over a real socket, and is answered `subscribed` or the
//! error `forbidden`; a topic the server accepts without a row here fails the test. A role
//! removed while subscribed takes the feed with it.

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use reqwest::Method;
use serde_json::{Value, json};
use vigil_protocol::Topic;
use vigil_server::db::Timestamp;
use vigil_server::policy::Role;

use crate::on_both_databases;
use crate::support::{Backend, Client, PASSWORD, Resp, TestServer, unique};
use crate::ws::Ws;

/// Who is calling. Everyone but the anonymous caller belongs to organisation A.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    Staff,
    Operator,
    Adviser,
    OrgAdmin,
    Oversight,
    SystemAdmin,
}

use Who::*;

const EVERYONE: &[Who] = &[
    Anonymous,
    Staff,
    Operator,
    Adviser,
    OrgAdmin,
    Oversight,
    SystemAdmin,
];
const SIGNED_IN: &[Who] = &[Staff, Operator, Adviser, OrgAdmin, Oversight, SystemAdmin];
const A_PERSONNEL_READERS: &[Who] = &[Operator, Adviser, OrgAdmin, Oversight, SystemAdmin];
const A_ADMINS: &[Who] = &[OrgAdmin, SystemAdmin];
const A_REPORT_READERS: &[Who] = &[OrgAdmin, Oversight, SystemAdmin];
const A_ADVISERS: &[Who] = &[Adviser, SystemAdmin];
const A_DISPATCHERS: &[Who] = &[Operator, OrgAdmin, SystemAdmin];
const A_DEVICE_READERS: &[Who] = &[Operator, OrgAdmin, Oversight, SystemAdmin];
const OVERSEERS: &[Who] = &[Oversight, SystemAdmin];
const A_RUNNERS: &[Who] = &[Operator, Adviser, SystemAdmin];
const A_SOS: &[Who] = &[Operator, Oversight, SystemAdmin];
const A_SOS_HANDLERS: &[Who] = &[Operator, SystemAdmin];
/// An SOS chat of A: its operators take part, oversight reads it.
const A_SOS_CHAT_READERS: &[Who] = &[Operator, Oversight, SystemAdmin];
const A_SOS_CHAT_WRITERS: &[Who] = &[Operator, SystemAdmin];
/// Who opens A's crisis channels, changes their members and closes them.
const A_CHANNEL_KEEPERS: &[Who] = &[Operator, Adviser, SystemAdmin];
const SYSTEM_ADMIN: &[Who] = &[SystemAdmin];

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const PUT: Method = Method::PUT;
const PATCH: Method = Method::PATCH;
const DELETE: Method = Method::DELETE;

/// A signed-in (or anonymous) caller and the credentials it can log in with again.
struct Caller {
    who: Who,
    client: Client,
    /// Own email; the anonymous caller knows a colleague's, to show that login is open.
    email: String,
}

/// Two organisations and the things the rows act on.
struct World {
    a: i64,
    b: i64,
    callers: Vec<Caller>,
    /// Staff member of A whom the rows read, change and grant roles to.
    a_member: i64,
    /// Staff member of B, likewise.
    b_member: i64,
    a_area: i64,
    b_area: i64,
    shared_area: i64,
    a_asset: i64,
    b_asset: i64,
    /// Device credentials issued for the two members' phones.
    a_device: i64,
    b_device: i64,
    /// An alert a system admin sent to everyone in A, and one B's adviser sent to B.
    a_alert: i64,
    b_alert: i64,
    /// Roll-calls of A (asking everyone in A) and of B.
    a_rollcall: i64,
    b_rollcall: i64,
    /// SOS cases of A's and B's members.
    a_case: i64,
    b_case: i64,
    /// Alert templates of A and B.
    a_template: i64,
    b_template: i64,
    /// Draws fresh areas for the DELETE rows.
    system_admin: Client,
    /// B's adviser, who keeps B's templates.
    b_adviser: Client,
    /// An SOS chat of A's member (no caller is listed in it), a crisis channel of A with A's
    /// member, and one of B with B's member; each holds a message.
    a_sos_chat: i64,
    a_channel: i64,
    b_channel: i64,
}

/// What a row sends; anything that creates something gets fresh names on every attempt.
enum Payload {
    Nothing,
    Json(Value),
    NewOrganisation,
    NewDutyStation,
    NewPerson {
        roles: &'static [&'static str],
    },
    NewArea {
        org: Option<i64>,
    },
    /// A CSV roster with one new person.
    Roster,
    /// A position fix taken just now.
    Fix,
    /// A vehicle with a fresh name.
    NewAsset,
    /// A browser's push subscription with a fresh endpoint.
    NewPushSubscription,
    /// An alert template with a fresh name.
    NewTemplate,
    /// A CAP 1.2 alert with a fresh identifier over the Juba square, where A's member is.
    CapDocument,
    /// The caller's own email and password.
    OwnCredentials,
    /// A refresh token from a fresh login of the caller.
    OwnRefreshToken,
    /// Nothing, but on a fresh session of the caller (logout ends the session it is sent on).
    OnFreshSession,
}

/// What the parameters of the row's route stand for.
enum Subject {
    /// The route has no parameters.
    Plain,
    /// The route with this query string.
    Query(String),
    /// `{id}` is this organisation, user or area.
    Id(i64),
    /// `{id}` is this user and `{role}` this role.
    IdRole(i64, &'static str),
    /// `{id}` is the caller.
    Me,
    /// `{id}` is a new area owned by this organisation (`None`: shared), drawn for every attempt.
    FreshArea(Option<i64>),
    /// `{id}` is a new alert of A (sent by a system admin) or of B (`true`, sent by B's
    /// adviser), for every attempt.
    FreshAlert(bool),
    /// `{id}` is a new template of A (`false`) or B (`true`) for every attempt.
    FreshTemplate(bool),
    /// `{id}` is an open roll-call of A (`false`) or B (`true`), new for every attempt.
    FreshRollcall(bool),
    /// `{id}` is an open SOS case of A's system admin (`false`) or B's adviser (`true`).
    FreshCase(bool),
    /// `{id}` is a new crisis channel of A (`false`) or B (`true`) for every attempt.
    FreshChannel(bool),
    /// `{device_id}` is a native app installation the caller has just registered (a new id
    /// when the caller cannot register one).
    OwnDevice,
}

struct Row {
    method: Method,
    /// The route as the OpenAPI document names it.
    route: &'static str,
    /// Whose data the row touches, for messages.
    on: &'static str,
    subject: Subject,
    send: Payload,
    allowed: &'static [Who],
    success: u16,
}

impl fmt::Display for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} on {}", self.method, self.route, self.on)
    }
}

fn row(
    method: Method,
    route: &'static str,
    on: &'static str,
    subject: Subject,
    send: Payload,
    allowed: &'static [Who],
    success: u16,
) -> Row {
    Row {
        method,
        route,
        on,
        subject,
        send,
        allowed,
        success,
    }
}

/// A small square near Juba; without `org_id`, so a replacement keeps the area's owner.
fn square(name: &str) -> Value {
    json!({
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[31.5, 4.8], [31.7, 4.8], [31.7, 4.9], [31.5, 4.9], [31.5, 4.8]]]},
        "properties": {"name": name, "kind": "security_area", "security_level": 3},
    })
}

/// The square, owned by `org` (`None`: shared).
fn owned_square(name: &str, org: Option<i64>) -> Value {
    let mut feature = square(name);
    feature["properties"]["org_id"] = json!(org);
    feature
}

async fn draw_area(system_admin: &Client, org: Option<i64>) -> i64 {
    let feature = system_admin
        .post("/api/v1/areas", owned_square(&unique("Area "), org))
        .await
        .expect(201);
    feature["id"].as_i64().expect("area id")
}

async fn register_asset(system_admin: &Client, org: i64) -> i64 {
    let asset = system_admin
        .post(
            &format!("/api/v1/organisations/{org}/assets"),
            json!({"kind": "vehicle", "name": unique("Land Cruiser ")}),
        )
        .await
        .expect(201);
    asset["id"].as_i64().expect("asset id")
}

async fn issue_device(system_admin: &Client, org: i64, user: i64) -> i64 {
    let issued = system_admin
        .post(
            &format!("/api/v1/organisations/{org}/devices"),
            json!({"user_id": user}),
        )
        .await
        .expect(201);
    issued["id"].as_i64().expect("device id")
}

fn alert_to(org: i64) -> Value {
    json!({"translations": {"en": {"title": "Test", "body": "Matrix"}}, "severity": "minor",
        "target": {"organisations": [org]}})
}

async fn send_alert(system_admin: &Client, org: i64) -> i64 {
    let alert = system_admin
        .post("/api/v1/alerts", alert_to(org))
        .await
        .expect(201);
    alert["id"].as_i64().expect("alert id")
}

async fn save_template(adviser: &Client) -> i64 {
    let t = adviser
        .post(
            "/api/v1/alert-templates",
            json!({"name": unique("Template "), "content": {"severity": "minor"}}),
        )
        .await
        .expect(201);
    t["id"].as_i64().expect("template id")
}

async fn start_rollcall(starter: &Client, org: i64) -> i64 {
    let rc = starter
        .post(
            "/api/v1/rollcalls",
            json!({"title": unique("Roll-call "), "target": {"organisations": [org]}}),
        )
        .await
        .expect(201);
    rc["id"].as_i64().expect("roll-call id")
}

/// The caller's open SOS case (pressing again returns it), or a new one.
async fn press_sos(person: &Client) -> i64 {
    let case = person.post("/api/v1/sos", json!({})).await;
    assert!(case.status == 200 || case.status == 201, "{:?}", case.body);
    case.body["id"].as_i64().expect("case id")
}

async fn email_of(client: &Client) -> String {
    let me = client.get("/api/v1/me").await.expect(200);
    me["email"].as_str().expect("email").to_string()
}

/// Organisation A with one caller per role and a system admin; organisation B with a staff
/// member, an org admin and an area of its own.
async fn build_world(srv: &TestServer) -> World {
    let a = srv.org().await;
    let b = srv.org().await;
    let a_member = srv.user(a, &[Role::Staff], false).await;
    let b_member = srv.user(b, &[Role::Staff], false).await;
    let _b_admin = srv.user(b, &[Role::OrgAdmin], false).await;
    let system_admin = srv.user(a, &[Role::Staff], true).await;
    let b_adviser = srv.user(b, &[Role::Adviser], false).await;
    let mut callers = vec![Caller {
        who: Anonymous,
        client: srv.anon(),
        email: email_of(&a_member).await,
    }];
    for (who, role) in [
        (Staff, Role::Staff),
        (Operator, Role::Operator),
        (Adviser, Role::Adviser),
        (OrgAdmin, Role::OrgAdmin),
        (Oversight, Role::Oversight),
    ] {
        let client = srv.user(a, &[role], false).await;
        let email = email_of(&client).await;
        callers.push(Caller { who, client, email });
    }
    callers.push(Caller {
        who: SystemAdmin,
        client: system_admin.clone(),
        email: email_of(&system_admin).await,
    });
    let a_alert = send_alert(&system_admin, a).await;
    let a_rollcall = start_rollcall(&system_admin, a).await;
    let b_rollcall = start_rollcall(&b_adviser, b).await;
    let a_case = press_sos(&a_member).await;
    // A's member is in the Juba square, so a CAP alert over it reaches someone.
    let now = Timestamp(vigil_server::db::now_ms()).to_rfc3339();
    a_member
        .post(
            "/api/v1/positions",
            json!({"fixes": [{"lat": 4.85, "lon": 31.6, "recorded_at": now}]}),
        )
        .await
        .expect(200);
    let b_case = press_sos(&b_member).await;
    let a_sos_chat = open_chat(srv, a, vigil_server::chat::Kind::Sos, a_member.user_id).await;
    let a_channel = open_chat(srv, a, vigil_server::chat::Kind::Group, a_member.user_id).await;
    let b_channel = open_chat(srv, b, vigil_server::chat::Kind::Group, b_member.user_id).await;
    // An alert belongs to the sender's organisation: B's is sent by B's adviser.
    let b_alert = send_alert(&b_adviser, b).await;
    World {
        a,
        b,
        a_alert,
        b_alert,
        a_rollcall,
        b_rollcall,
        a_case,
        b_case,
        callers,
        a_member: a_member.user_id,
        b_member: b_member.user_id,
        a_area: draw_area(&system_admin, Some(a)).await,
        b_area: draw_area(&system_admin, Some(b)).await,
        shared_area: draw_area(&system_admin, None).await,
        a_asset: register_asset(&system_admin, a).await,
        b_asset: register_asset(&system_admin, b).await,
        a_device: issue_device(&system_admin, a, a_member.user_id).await,
        b_device: issue_device(&system_admin, b, b_member.user_id).await,
        a_template: save_template(&system_admin).await,
        b_template: save_template(&b_adviser).await,
        system_admin,
        b_adviser,
        a_sos_chat,
        a_channel,
        b_channel,
    }
}

/// A conversation of `org` whose one member has written in it.
async fn open_chat(srv: &TestServer, org: i64, kind: vigil_server::chat::Kind, member: i64) -> i64 {
    let new = vigil_server::chat::NewConversation {
        org_id: org,
        kind,
        ref_id: None,
        title: unique("Chat "),
        created_by: None,
        members: vec![member],
    };
    let id = vigil_server::chat::open(&srv.state, new)
        .await
        .expect("chat opens");
    vigil_server::chat::post(&srv.state, id, member, "seed", "First message")
        .await
        .expect("first message");
    id
}

fn channel_in(org: i64) -> Value {
    json!({"kind": "group", "title": unique("Channel "), "org_id": org})
}

/// One row per route and whose data it touches.
#[rustfmt::skip]
fn table(w: &World) -> Vec<Row> {
    use Subject::{FreshAlert, FreshArea, FreshCase, FreshChannel, FreshRollcall, FreshTemplate, Id, IdRole, Me, OwnDevice, Plain, Query};
    use Payload::{Fix, Nothing, OnFreshSession, OwnCredentials, OwnRefreshToken, Roster};
    let (a, b, a_member, b_member) = (w.a, w.b, w.a_member, w.b_member);
    let phone = || Payload::Json(json!({"phone": "+254 700 000 001"}));
    let same_password = || Payload::Json(json!({"password": PASSWORD}));
    let renamed = || Payload::Json(square("Renamed area"));
    let vehicle = || Payload::Json(json!({"name": "Land Cruiser UN-123"}));
    let person = |roles| Payload::NewPerson { roles };
    let area = |org| Payload::NewArea { org };
    vec![
        // Signing in is open to everyone; everything else needs a session.
        row(POST,   "/api/v1/auth/login",   "own account", Plain, OwnCredentials,  EVERYONE,  200),
        row(POST,   "/api/v1/auth/refresh", "own session", Plain, OwnRefreshToken, EVERYONE,  200),
        row(POST,   "/api/v1/auth/logout",  "own session", Plain, OnFreshSession,  SIGNED_IN, 204),
        // Everyone signed in keeps their own profile.
        row(GET,    "/api/v1/me",           "self", Plain, Nothing, SIGNED_IN, 200),
        row(PATCH,  "/api/v1/me",           "self", Plain, Payload::Json(json!({"preferred_language": "fr"})), SIGNED_IN, 200),
        row(PUT,    "/api/v1/me/password",  "self", Plain,
            Payload::Json(json!({"current_password": PASSWORD, "new_password": PASSWORD})), SIGNED_IN, 204),
        row(GET,    "/api/v1/users/{id}",   "self", Me, Nothing, SIGNED_IN, 200),
        // Organisations: members see their own, oversight sees every one, a system admin creates.
        row(GET,    "/api/v1/organisations",      "own or all", Plain, Nothing, SIGNED_IN, 200),
        row(POST,   "/api/v1/organisations",      "a new one",  Plain, Payload::NewOrganisation, SYSTEM_ADMIN, 201),
        row(GET,    "/api/v1/organisations/{id}", "A", Id(a), Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/organisations/{id}", "B", Id(b), Nothing, OVERSEERS, 200),
        // Personnel: managed by the organisation's admins, read by its operators and advisers too.
        row(GET,    "/api/v1/organisations/{id}/users", "A", Id(a), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/users", "B", Id(b), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/organisations/{id}/users", "A", Id(a), person(&["staff", "operator"]), A_ADMINS, 201),
        row(POST,   "/api/v1/organisations/{id}/users", "A, as oversight", Id(a), person(&["oversight"]), SYSTEM_ADMIN, 201),
        row(POST,   "/api/v1/organisations/{id}/users", "B", Id(b), person(&["staff"]), SYSTEM_ADMIN, 201),
        row(GET,    "/api/v1/users/{id}",          "A's member", Id(a_member), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/users/{id}",          "B's member", Id(b_member), Nothing, OVERSEERS, 200),
        row(PATCH,  "/api/v1/users/{id}",          "A's member", Id(a_member), phone(), A_ADMINS, 200),
        row(PATCH,  "/api/v1/users/{id}",          "B's member", Id(b_member), phone(), SYSTEM_ADMIN, 200),
        row(PUT,    "/api/v1/users/{id}/password", "A's member", Id(a_member), same_password(), A_ADMINS, 204),
        row(PUT,    "/api/v1/users/{id}/password", "B's member", Id(b_member), same_password(), SYSTEM_ADMIN, 204),
        // Roles: an organisation's admins decide for its own members; oversight comes from a system admin.
        row(PUT,    "/api/v1/users/{id}/roles/{role}", "A's member, operator",  IdRole(a_member, "operator"),  Nothing, A_ADMINS, 200),
        row(PUT,    "/api/v1/users/{id}/roles/{role}", "A's member, oversight", IdRole(a_member, "oversight"), Nothing, SYSTEM_ADMIN, 200),
        row(PUT,    "/api/v1/users/{id}/roles/{role}", "B's member, operator",  IdRole(b_member, "operator"),  Nothing, SYSTEM_ADMIN, 200),
        row(DELETE, "/api/v1/users/{id}/roles/{role}", "A's member, operator",  IdRole(a_member, "operator"),  Nothing, A_ADMINS, 200),
        row(DELETE, "/api/v1/users/{id}/roles/{role}", "A's member, oversight", IdRole(a_member, "oversight"), Nothing, SYSTEM_ADMIN, 200),
        row(DELETE, "/api/v1/users/{id}/roles/{role}", "B's member, operator",  IdRole(b_member, "operator"),  Nothing, SYSTEM_ADMIN, 200),
        // Roster import and the administrative reports.
        row(POST,   "/api/v1/organisations/{id}/roster", "A", Id(a), Roster, A_ADMINS, 200),
        row(POST,   "/api/v1/organisations/{id}/roster", "B", Id(b), Roster, SYSTEM_ADMIN, 200),
        row(GET,    "/api/v1/organisations/{id}/reports/stale-profiles", "A", Id(a), Nothing, A_REPORT_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/reports/stale-profiles", "B", Id(b), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/organisations/{id}/audit", "A", Id(a), Nothing, A_REPORT_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/audit", "B", Id(b), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/organisations/{id}/audit/export.csv", "A", Id(a), Nothing, A_REPORT_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/audit/export.csv", "B", Id(b), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/organisations/{id}/audit/verify", "A", Id(a), Nothing, A_REPORT_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/audit/verify", "B", Id(b), Nothing, OVERSEERS, 200),
        // Duty stations are shared: everyone reads them, a system admin adds them.
        row(GET,    "/api/v1/duty-stations", "all",       Plain, Nothing, SIGNED_IN, 200),
        row(POST,   "/api/v1/duty-stations", "a new one", Plain, Payload::NewDutyStation, SYSTEM_ADMIN, 201),
        // Areas: everyone reads; advisers draw their own organisation's; shared ones are a system admin's.
        row(GET,    "/api/v1/areas",      "all",    Plain, Nothing, SIGNED_IN, 200),
        row(POST,   "/api/v1/areas",      "A",      Plain, area(Some(a)), A_ADVISERS, 201),
        row(POST,   "/api/v1/areas",      "B",      Plain, area(Some(b)), SYSTEM_ADMIN, 201),
        row(POST,   "/api/v1/areas",      "shared", Plain, area(None), SYSTEM_ADMIN, 201),
        row(GET,    "/api/v1/areas/{id}", "A",      Id(w.a_area), Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/areas/{id}", "B",      Id(w.b_area), Nothing, SIGNED_IN, 200),
        row(PUT,    "/api/v1/areas/{id}", "A",      Id(w.a_area), renamed(), A_ADVISERS, 200),
        row(PUT,    "/api/v1/areas/{id}", "B",      Id(w.b_area), renamed(), SYSTEM_ADMIN, 200),
        row(PUT,    "/api/v1/areas/{id}", "shared", Id(w.shared_area), renamed(), SYSTEM_ADMIN, 200),
        row(PUT,    "/api/v1/areas/{id}", "A, handed to B", FreshArea(Some(a)),
            Payload::Json(owned_square("Handed over", Some(b))), SYSTEM_ADMIN, 200),
        row(DELETE, "/api/v1/areas/{id}", "A",      FreshArea(Some(a)), Nothing, A_ADVISERS, 204),
        row(DELETE, "/api/v1/areas/{id}", "B",      FreshArea(Some(b)), Nothing, SYSTEM_ADMIN, 204),
        row(DELETE, "/api/v1/areas/{id}", "shared", FreshArea(None), Nothing, SYSTEM_ADMIN, 204),
        // Positions: everyone reports and controls their own; their organisation's operators,
        // advisers and org admins see where they are, oversight sees everyone.
        row(POST,   "/api/v1/positions",          "own fixes", Plain, Fix, SIGNED_IN, 200),
        row(GET,    "/api/v1/positions",          "own organisation", Plain, Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/positions",          "A", Query(format!("?org_id={a}")), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/positions",          "B", Query(format!("?org_id={b}")), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/me/location-mode",   "self", Plain, Nothing, SIGNED_IN, 200),
        row(PUT,    "/api/v1/me/location-mode",   "self", Plain, Payload::Json(json!({"mode": "tracking"})), SIGNED_IN, 200),
        row(GET,    "/api/v1/me/followed-areas",  "self", Plain, Nothing, SIGNED_IN, 200),
        row(PUT,    "/api/v1/me/followed-areas",  "self, A's and B's areas", Plain,
            Payload::Json(json!({"area_ids": [w.a_area, w.b_area]})), SIGNED_IN, 200),
        row(GET,    "/api/v1/me/location-access", "self", Plain, Nothing, SIGNED_IN, 200),
        // Assets: operators and org admins keep the inventory, advisers and oversight read it.
        row(GET,    "/api/v1/organisations/{id}/assets", "A", Id(a), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/assets", "B", Id(b), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/organisations/{id}/assets", "A", Id(a), Payload::NewAsset, A_DISPATCHERS, 201),
        row(POST,   "/api/v1/organisations/{id}/assets", "B", Id(b), Payload::NewAsset, SYSTEM_ADMIN, 201),
        row(GET,    "/api/v1/assets/{id}", "A's asset", Id(w.a_asset), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/assets/{id}", "B's asset", Id(w.b_asset), Nothing, OVERSEERS, 200),
        row(PATCH,  "/api/v1/assets/{id}", "A's asset", Id(w.a_asset), vehicle(), A_DISPATCHERS, 200),
        row(PATCH,  "/api/v1/assets/{id}", "B's asset", Id(w.b_asset), vehicle(), SYSTEM_ADMIN, 200),
        // Device credentials let a tracker write positions for a person or asset: operators and
        // org admins issue them for their own organisation only.
        row(GET,    "/api/v1/organisations/{id}/devices", "A", Id(a), Nothing, A_DEVICE_READERS, 200),
        row(GET,    "/api/v1/organisations/{id}/devices", "B", Id(b), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/organisations/{id}/devices", "A's member", Id(a),
            Payload::Json(json!({"user_id": a_member})), A_DISPATCHERS, 201),
        row(POST,   "/api/v1/organisations/{id}/devices", "B's member", Id(b),
            Payload::Json(json!({"user_id": b_member})), SYSTEM_ADMIN, 201),
        // Even a system admin cannot file B's member under A (422); A's operators may not try (403).
        row(POST,   "/api/v1/organisations/{id}/devices", "A, for B's member", Id(a),
            Payload::Json(json!({"user_id": b_member})), SYSTEM_ADMIN, 422),
        row(DELETE, "/api/v1/devices/{id}", "A's device", Id(w.a_device), Nothing, A_DISPATCHERS, 204),
        row(DELETE, "/api/v1/devices/{id}", "B's device", Id(w.b_device), Nothing, SYSTEM_ADMIN, 204),
        // Trackers authenticate with a device credential, never with a person's session, and the
        // WebSocket authenticates in its first message: no role opens these as plain requests.
        row(POST,   "/api/v1/ingest/owntracks", "a session, no device credential", Plain,
            Payload::Json(json!({"_type": "location", "lat": 4.85, "lon": 31.6, "tst": 1_700_000_000})), EVERYONE, 401),
        row(GET,    "/api/v1/ingest/osmand", "a session, no device credential", Query("?lat=4.85&lon=31.6".into()),
            Nothing, EVERYONE, 401),
        row(POST,   "/api/v1/ingest/osmand", "a session, no device credential", Query("?lat=4.85&lon=31.6".into()),
            Nothing, EVERYONE, 401),
        row(GET,    "/api/v1/ws", "a plain request, no upgrade", Plain, Nothing, EVERYONE, 400),
        // The protocol's description is public, like the OpenAPI document.
        row(GET,    "/api/v1/ws/schema.json", "the protocol's", Plain, Nothing, EVERYONE, 200),
        // Web push: everyone signed in registers and removes the subscriptions of their own
        // devices; there is no way to name anyone else's.
        row(GET,    "/api/v1/push/vapid-public-key", "the deployment's", Plain, Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/push/subscriptions", "own", Plain, Nothing, SIGNED_IN, 200),
        row(POST,   "/api/v1/push/subscriptions", "own, a new browser", Plain, Payload::NewPushSubscription, SIGNED_IN, 201),
        row(DELETE, "/api/v1/push/subscriptions", "own", Plain,
            Payload::Json(json!({"endpoint": "https://push.example.invalid/never-registered"})), SIGNED_IN, 204),
        // Native apps: everyone signed in registers, lists and removes their own installations.
        row(GET,    "/api/v1/me/devices", "own", Plain, Nothing, SIGNED_IN, 200),
        row(PUT,    "/api/v1/me/devices/{device_id}", "own, known", OwnDevice,
            Payload::Json(json!({"platform": "apns", "token": "ab".repeat(32)})), SIGNED_IN, 200),
        row(DELETE, "/api/v1/me/devices/{device_id}", "own", OwnDevice, Nothing, SIGNED_IN, 204),
        // Alerts: advisers send within their organisation, a system admin anywhere; the
        // organisation's operators, advisers and org admins follow them, oversight sees all.
        row(POST,   "/api/v1/alerts",          "A", Plain, Payload::Json(alert_to(a)), A_ADVISERS, 201),
        row(POST,   "/api/v1/alerts",          "B", Plain, Payload::Json(alert_to(b)), SYSTEM_ADMIN, 201),
        row(POST,   "/api/v1/alerts/preview",  "A", Plain, Payload::Json(json!({"organisations": [a]})), A_ADVISERS, 200),
        row(POST,   "/api/v1/alerts/preview",  "B", Plain, Payload::Json(json!({"organisations": [b]})), SYSTEM_ADMIN, 200),
        row(GET,    "/api/v1/alerts",          "own organisation", Plain, Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/alerts",          "B", Query(format!("?org_id={b}")), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/alerts/{id}",     "A's alert", Id(w.a_alert), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/alerts/{id}",     "B's alert", Id(w.b_alert), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/alerts/{id}/recipients", "A's alert", Id(w.a_alert), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/alerts/{id}/recipients", "B's alert", Id(w.b_alert), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/alerts/{id}/cancel", "A's alert", FreshAlert(false), Nothing, A_ADVISERS, 200),
        row(POST,   "/api/v1/alerts/{id}/cancel", "B's alert", FreshAlert(true), Nothing, SYSTEM_ADMIN, 200),
        // Everyone in A received A's alert and confirms their own copy.
        row(POST,   "/api/v1/alerts/{id}/receipt", "own copy", Id(w.a_alert),
            Payload::Json(json!({"state": "read"})), SIGNED_IN, 204),
        row(GET,    "/api/v1/me/alerts",       "own inbox", Plain, Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/me/alert-areas",  "own alerts in force", Plain, Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/alert-templates", "own organisation", Plain, Nothing, A_PERSONNEL_READERS, 200),
        row(POST,   "/api/v1/alert-templates", "own organisation", Plain, Payload::NewTemplate, A_ADVISERS, 201),
        row(PUT,    "/api/v1/alert-templates/{id}", "A's", Id(w.a_template), Payload::NewTemplate, A_ADVISERS, 200),
        row(PUT,    "/api/v1/alert-templates/{id}", "B's", Id(w.b_template), Payload::NewTemplate, SYSTEM_ADMIN, 200),
        row(DELETE, "/api/v1/alert-templates/{id}", "A's", FreshTemplate(false), Nothing, A_ADVISERS, 204),
        row(DELETE, "/api/v1/alert-templates/{id}", "B's", FreshTemplate(true), Nothing, SYSTEM_ADMIN, 204),
        // Broadcast grants reach beyond an organisation: only a system admin gives them.
        row(GET,    "/api/v1/users/{id}/broadcast-grants", "A's member", Id(a_member), Nothing, SYSTEM_ADMIN, 200),
        row(PUT,    "/api/v1/users/{id}/broadcast-grants", "A's member", Id(a_member), Payload::Json(json!({"org_ids": []})), SYSTEM_ADMIN, 200),
        // CAP: the alerts as CAP documents and an Atom index for those who may see them;
        // importing a foreign CAP alert is sending one.
        row(GET,    "/api/v1/alerts/{id}/cap.xml", "A's alert", Id(w.a_alert), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/alerts/{id}/cap.xml", "B's alert", Id(w.b_alert), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/cap/feed.atom", "own organisation", Plain, Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/cap/feed.atom", "B", Query(format!("?org_id={b}")), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/cap/import", "A", Plain, Payload::CapDocument, A_ADVISERS, 201),
        // Roll-calls: operators and advisers run their organisation's; everyone asked answers.
        row(POST,   "/api/v1/rollcalls", "A", Plain, Payload::Json(json!({"title": "Check", "target": {"organisations": [a]}})), A_RUNNERS, 201),
        row(POST,   "/api/v1/rollcalls", "B", Plain, Payload::Json(json!({"title": "Check", "target": {"organisations": [b]}})), SYSTEM_ADMIN, 201),
        row(GET,    "/api/v1/rollcalls", "own organisation", Plain, Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/rollcalls", "B", Query(format!("?org_id={b}")), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/rollcalls/{id}", "A's", Id(w.a_rollcall), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/rollcalls/{id}", "B's", Id(w.b_rollcall), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/rollcalls/{id}/people", "A's", Id(w.a_rollcall), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/rollcalls/{id}/people", "B's", Id(w.b_rollcall), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/rollcalls/{id}/export.csv", "A's", Id(w.a_rollcall), Nothing, A_PERSONNEL_READERS, 200),
        row(GET,    "/api/v1/rollcalls/{id}/export.csv", "B's", Id(w.b_rollcall), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/rollcalls/{id}/answer", "own row", Id(w.a_rollcall), Payload::Json(json!({"status": "safe"})), SIGNED_IN, 204),
        row(POST,   "/api/v1/rollcalls/{id}/account", "A's member", Id(w.a_rollcall),
            Payload::Json(json!({"user_id": a_member, "status": "safe", "how": "phoned"})), A_RUNNERS, 204),
        row(POST,   "/api/v1/rollcalls/{id}/account", "B's member", Id(w.b_rollcall),
            Payload::Json(json!({"user_id": b_member, "status": "safe", "how": "phoned"})), SYSTEM_ADMIN, 204),
        row(POST,   "/api/v1/rollcalls/{id}/close", "A's", FreshRollcall(false), Nothing, A_RUNNERS, 200),
        row(POST,   "/api/v1/rollcalls/{id}/close", "B's", FreshRollcall(true), Nothing, SYSTEM_ADMIN, 200),
        row(GET,    "/api/v1/me/rollcalls", "own", Plain, Nothing, SIGNED_IN, 200),
        // SOS: anyone presses; their organisation's operators handle it; oversight watches.
        row(POST,   "/api/v1/sos", "own", Plain, Payload::Json(json!({})), SIGNED_IN, 201),
        row(GET,    "/api/v1/sos", "own or organisation's", Plain, Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/sos", "B", Query(format!("?org_id={b}")), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/sos/{id}", "A's member's", Id(w.a_case), Nothing, A_SOS, 200),
        row(GET,    "/api/v1/sos/{id}", "B's member's", Id(w.b_case), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/sos/{id}/claim", "A's member's", Id(w.a_case), Payload::Json(json!({"take_over": true})), A_SOS_HANDLERS, 200),
        row(POST,   "/api/v1/sos/{id}/claim", "B's member's", Id(w.b_case), Payload::Json(json!({"take_over": true})), SYSTEM_ADMIN, 200),
        row(POST,   "/api/v1/sos/{id}/notes", "A's member's", Id(w.a_case), Payload::Json(json!({"text": "called"})), A_SOS_HANDLERS, 200),
        row(POST,   "/api/v1/sos/{id}/notes", "B's member's", Id(w.b_case), Payload::Json(json!({"text": "called"})), SYSTEM_ADMIN, 200),
        row(POST,   "/api/v1/sos/{id}/close", "A's", FreshCase(false), Payload::Json(json!({"outcome": "safe"})), A_SOS_HANDLERS, 200),
        row(POST,   "/api/v1/sos/{id}/close", "B's", FreshCase(true), Payload::Json(json!({"outcome": "safe"})), SYSTEM_ADMIN, 200),
        // Chat: members take part; an SOS chat also has its organisation's operators; oversight
        // reads every conversation and writes in none; operators and advisers keep channels.
        row(GET,    "/api/v1/conversations", "own", Plain, Nothing, SIGNED_IN, 200),
        row(GET,    "/api/v1/conversations", "B's", Query(format!("?org_id={b}")), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/conversations", "A", Plain, Payload::Json(channel_in(a)), A_CHANNEL_KEEPERS, 201),
        row(POST,   "/api/v1/conversations", "B", Plain, Payload::Json(channel_in(b)), SYSTEM_ADMIN, 201),
        row(GET,    "/api/v1/conversations/{id}", "A's SOS chat", Id(w.a_sos_chat), Nothing, A_SOS_CHAT_READERS, 200),
        row(GET,    "/api/v1/conversations/{id}", "B's channel", Id(w.b_channel), Nothing, OVERSEERS, 200),
        row(GET,    "/api/v1/conversations/{id}/messages", "A's SOS chat", Id(w.a_sos_chat), Nothing, A_SOS_CHAT_READERS, 200),
        row(GET,    "/api/v1/conversations/{id}/messages", "B's channel", Id(w.b_channel), Nothing, OVERSEERS, 200),
        row(POST,   "/api/v1/conversations/{id}/messages", "A's SOS chat", Id(w.a_sos_chat),
            Payload::Json(json!({"client_id": "matrix-1", "body": "On our way"})), A_SOS_CHAT_WRITERS, 201),
        row(POST,   "/api/v1/conversations/{id}/messages", "B's channel", Id(w.b_channel),
            Payload::Json(json!({"client_id": "matrix-1", "body": "Hello"})), SYSTEM_ADMIN, 201),
        row(POST,   "/api/v1/conversations/{id}/read", "A's SOS chat", Id(w.a_sos_chat), Payload::Json(json!({"seq": 1})), A_SOS_CHAT_WRITERS, 204),
        row(POST,   "/api/v1/conversations/{id}/read", "B's channel", Id(w.b_channel), Payload::Json(json!({"seq": 1})), SYSTEM_ADMIN, 204),
        row(POST,   "/api/v1/conversations/{id}/members", "A's channel", Id(w.a_channel),
            Payload::Json(json!({"user_ids": [a_member]})), A_CHANNEL_KEEPERS, 204),
        row(POST,   "/api/v1/conversations/{id}/members", "B's channel", Id(w.b_channel),
            Payload::Json(json!({"user_ids": [b_member]})), SYSTEM_ADMIN, 204),
        row(DELETE, "/api/v1/conversations/{id}/members", "A's channel", Id(w.a_channel),
            Payload::Json(json!({"user_ids": [a_member]})), A_CHANNEL_KEEPERS, 204),
        row(DELETE, "/api/v1/conversations/{id}/members", "B's channel", Id(w.b_channel),
            Payload::Json(json!({"user_ids": [b_member]})), SYSTEM_ADMIN, 204),
        row(POST,   "/api/v1/conversations/{id}/close", "A's channel", FreshChannel(false), Nothing, A_CHANNEL_KEEPERS, 200),
        row(POST,   "/api/v1/conversations/{id}/close", "B's channel", FreshChannel(true), Nothing, SYSTEM_ADMIN, 200),
    ]
}

/// The row's route with its parameters filled in for this attempt.
async fn path_for(w: &World, row: &Row, caller: &Caller) -> String {
    let id = match &row.subject {
        Subject::Plain => return row.route.to_string(),
        Subject::Query(query) => return format!("{}{query}", row.route),
        Subject::Id(id) | Subject::IdRole(id, _) => *id,
        Subject::Me => caller.client.user_id,
        Subject::OwnDevice => {
            let device = unique("device-");
            // Whoever may not register one (nobody signed in) meets the route with a new id.
            let _ = caller
                .client
                .put(
                    &format!("/api/v1/me/devices/{device}"),
                    json!({"platform": "fcm", "token": unique("matrix-token-")}),
                )
                .await;
            return row.route.replace("{device_id}", &device);
        }
        Subject::FreshArea(owner) => draw_area(&w.system_admin, *owner).await,
        Subject::FreshAlert(of_b) => {
            send_alert(
                if *of_b { &w.b_adviser } else { &w.system_admin },
                if *of_b { w.b } else { w.a },
            )
            .await
        }
        Subject::FreshRollcall(of_b) => {
            if *of_b {
                start_rollcall(&w.b_adviser, w.b).await
            } else {
                start_rollcall(&w.system_admin, w.a).await
            }
        }
        Subject::FreshCase(of_b) => {
            press_sos(if *of_b { &w.b_adviser } else { &w.system_admin }).await
        }
        Subject::FreshChannel(of_b) => {
            let channel = w
                .system_admin
                .post(
                    "/api/v1/conversations",
                    channel_in(if *of_b { w.b } else { w.a }),
                )
                .await
                .expect(201);
            channel["id"].as_i64().expect("channel id")
        }
        Subject::FreshTemplate(of_b) => {
            save_template(if *of_b { &w.b_adviser } else { &w.system_admin }).await
        }
    };
    let path = row.route.replace("{id}", &id.to_string());
    match row.subject {
        Subject::IdRole(_, role) => path.replace("{role}", role),
        _ => path,
    }
}

/// Makes one attempt of `row` as `caller`, with fresh data where the row needs it.
async fn attempt(srv: &TestServer, w: &World, row: &Row, caller: &Caller) -> Resp {
    let path = path_for(w, row, caller).await;
    let method = row.method.clone();
    let client = &caller.client;
    let fresh_session = || srv.anon().login(&caller.email, PASSWORD);
    let body = match &row.send {
        Payload::Nothing => return client.send(method, &path, None).await,
        Payload::Json(body) => body.clone(),
        Payload::NewOrganisation => json!({"name": unique("Org "), "short_name": unique("S")}),
        Payload::NewDutyStation => json!({"name": unique("Station "), "country_code": "SS"}),
        Payload::NewPerson { roles } => {
            let email = format!("{}@new.example", unique("p"));
            json!({"email": email, "name": "New Person", "roles": roles})
        }
        Payload::NewArea { org } => owned_square(&unique("Area "), *org),
        Payload::NewAsset => json!({"kind": "vehicle", "name": unique("Vehicle ")}),
        Payload::NewTemplate => {
            json!({"name": unique("Template "), "content": {"severity": "minor"}})
        }
        Payload::CapDocument => {
            let sent = vigil_server::cap::format_time(time::OffsetDateTime::now_utc());
            let xml = format!(
                r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{}</identifier>
<sender>matrix@example.org</sender><sent>{sent}</sent><status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
<info><category>Security</category><event>Test</event><urgency>Immediate</urgency><severity>Minor</severity><certainty>Observed</certainty>
<area><areaDesc>Juba</areaDesc><polygon>4.8,31.5 4.8,31.7 4.9,31.7 4.9,31.5 4.8,31.5</polygon></area></info></alert>"#,
                unique("cap")
            );
            return client
                .send_raw(method, &path, "application/cap+xml", xml.into_bytes())
                .await;
        }
        Payload::NewPushSubscription => {
            use base64::Engine;
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let key = p256::SecretKey::random(&mut rand::rngs::OsRng).public_key();
            json!({"endpoint": format!("https://push.example.invalid/{}", unique("s")),
                "keys": {"p256dh": b64.encode(key.to_encoded_point(false).as_bytes()), "auth": b64.encode([9u8; 16])}})
        }
        Payload::Fix => {
            let now = Timestamp(vigil_server::db::now_ms()).to_rfc3339();
            json!({"fixes": [{"lat": 4.85, "lon": 31.6, "accuracy_m": 12.0, "recorded_at": now}]})
        }
        Payload::Roster => {
            let email = format!("{}@roster.example", unique("r"));
            let csv = format!("email,name,roles\n{email},Roster Person,staff\n");
            return client
                .send_raw(method, &path, "text/csv", csv.into_bytes())
                .await;
        }
        Payload::OwnCredentials => json!({"email": caller.email, "password": PASSWORD}),
        Payload::OwnRefreshToken => {
            let refresh = fresh_session().await.refresh.expect("refresh token");
            json!({"refresh_token": refresh})
        }
        Payload::OnFreshSession => {
            let session = match caller.who {
                Anonymous => client.clone(),
                _ => fresh_session().await,
            };
            return session.send(method, &path, None).await;
        }
    };
    client.send(method, &path, Some(body)).await
}

/// Every (method, path) the OpenAPI document lists.
async fn documented_routes(srv: &TestServer) -> BTreeSet<(String, String)> {
    let doc = srv.anon().get("/api/openapi.json").await.expect(200);
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

on_both_databases! {
    async fn every_role_meets_every_route_on_its_own_and_another_organisations_data(srv: TestServer) {
        let world = build_world(&srv).await;
        let rows = table(&world);

        let documented = documented_routes(&srv).await;
        let covered: BTreeSet<(String, String)> =
            rows.iter().map(|r| (r.method.to_string(), r.route.to_string())).collect();
        let missing: Vec<_> = documented.difference(&covered).collect();
        assert!(missing.is_empty(), "routes in the OpenAPI document without a matrix row: {missing:?}");
        let unknown: Vec<_> = covered.difference(&documented).collect();
        assert!(unknown.is_empty(), "matrix rows for routes the OpenAPI document does not list: {unknown:?}");

        let mut wrong = Vec::new();
        // Every refusal the matrix sees must be one the OpenAPI document promises.
        let mut refusals: BTreeSet<(String, String, u16)> = BTreeSet::new();
        for row in &rows {
            for caller in &world.callers {
                let expected = if row.allowed.contains(&caller.who) {
                    row.success
                } else if caller.who == Anonymous {
                    401
                } else {
                    403
                };
                let resp = attempt(&srv, &world, row, caller).await;
                let is_problem = resp.headers.get("content-type").and_then(|v| v.to_str().ok())
                    == Some("application/problem+json");
                if resp.status != expected {
                    wrong.push(format!("{row} as {:?}: expected {expected}, got {} {}", caller.who, resp.status, resp.body));
                } else if expected >= 400 && !is_problem {
                    wrong.push(format!("{row} as {:?}: {expected} is not problem+json", caller.who));
                } else if expected >= 400 {
                    refusals.insert((row.method.to_string(), row.route.to_string(), expected));
                    resp.problem(expected);
                }
            }
        }
        assert!(wrong.is_empty(), "{} of {} attempts went wrong:\n{}", wrong.len(),
            rows.len() * world.callers.len(), wrong.join("\n"));

        let doc = srv.anon().get("/api/openapi.json").await.expect(200);
        let undocumented: Vec<String> = refusals
            .iter()
            .filter(|(method, route, status)| {
                doc["paths"][route][method.to_lowercase()]["responses"]
                    .get(status.to_string())
                    .is_none()
            })
            .map(|(method, route, status)| format!("{method} {route}: {status}"))
            .collect();
        assert!(undocumented.is_empty(), "answers served but not in the OpenAPI document:\n{}",
            undocumented.join("\n"));
    }
}

/// Whose feed a topic row follows.
#[derive(Clone, Copy, Debug)]
enum FeedOf {
    /// No `org_id`: one's own organisation, or every one for those who may follow all.
    Default,
    /// Organisation A, the callers' own.
    A,
    /// Organisation B.
    B,
}

/// One row per WebSocket topic and whose feed it follows.
struct TopicRow {
    topic: &'static str,
    feed: FeedOf,
    allowed: &'static [Who],
}

/// Every topic, on A's feed (named or by default) and on B's. The operations feed carries alert
/// delivery counts and roll-call boards, so it is allowed to whoever reads both; its old names
/// are the same feed.
#[rustfmt::skip]
fn topic_table() -> Vec<TopicRow> {
    let row = |topic, feed, allowed| TopicRow { topic, feed, allowed };
    let mut rows = Vec::new();
    for topic in TOPIC_NAMES {
        rows.push(row(topic, FeedOf::Default, A_PERSONNEL_READERS));
        rows.push(row(topic, FeedOf::A, A_PERSONNEL_READERS));
        rows.push(row(topic, FeedOf::B, OVERSEERS));
    }
    rows
}

/// Every name a client may subscribe with: each topic's own, and the old names of operations.
const TOPIC_NAMES: [&str; 4] = ["positions", "operations", "alerts", "rollcalls"];

/// The topic a name subscribes to (an old name answers with the topic's own).
fn topic_named(name: &str) -> Topic {
    serde_json::from_value(json!(name)).unwrap_or_else(|e| panic!("{name:?} names no topic: {e}"))
}

/// The answer to a subscription: `subscribed` or an `error`, skipping live traffic.
async fn answer(ws: &mut Ws) -> Value {
    loop {
        let m = ws.next().await;
        if matches!(m["type"].as_str(), Some("subscribed" | "error" | "closed")) {
            return m;
        }
    }
}

on_both_databases! {
    async fn every_role_meets_every_topic_on_its_own_and_another_organisations_feed(srv: TestServer) {
        let a = srv.org().await;
        let b = srv.org().await;
        let mut callers = Vec::new();
        for (who, role) in [(Staff, Role::Staff), (Operator, Role::Operator), (Adviser, Role::Adviser),
            (OrgAdmin, Role::OrgAdmin), (Oversight, Role::Oversight)] {
            callers.push((who, srv.user(a, &[role], false).await));
        }
        callers.push((SystemAdmin, srv.user(a, &[Role::Staff], true).await));
        let rows = topic_table();

        // Every topic of the protocol has rows, and every row names a topic.
        let covered: HashSet<Topic> = rows.iter().map(|r| topic_named(r.topic)).collect();
        let topics: HashSet<Topic> = Topic::ALL.into_iter().collect();
        assert_eq!(covered, topics, "topics of the protocol and topics the matrix checks");

        let mut wrong = Vec::new();
        for (who, client) in &callers {
            // Skip the replay: the answers are what this socket is for.
            let (mut ws, _) = Ws::hello(&srv, client, i64::MAX).await;
            for row in &rows {
                let org_id = match row.feed { FeedOf::Default => None, FeedOf::A => Some(a), FeedOf::B => Some(b) };
                ws.send(json!({"type": "subscribe", "topic": row.topic, "org_id": org_id})).await;
                let got = answer(&mut ws).await;
                let allowed = row.allowed.contains(who);
                // By default the feed is one's own organisation's, or every one's for those
                // who may follow all.
                let scope = match row.feed {
                    FeedOf::Default if OVERSEERS.contains(who) => Value::Null,
                    FeedOf::Default | FeedOf::A => json!(a),
                    FeedOf::B => json!(b),
                };
                let ok = if allowed {
                    got["type"] == "subscribed" && got["topic"] == topic_named(row.topic).as_str() && got["org_id"] == scope
                } else {
                    got["type"] == "error" && got["code"] == "forbidden"
                };
                if !ok {
                    wrong.push(format!("{} on {:?} as {who:?}: expected {}, got {got}", row.topic, row.feed,
                        if allowed { format!("subscribed to {scope}") } else { "forbidden".into() }));
                }
            }
            // A name that is no topic is refused as such, not as forbidden.
            ws.send(json!({"type": "subscribe", "topic": "everything"})).await;
            let got = answer(&mut ws).await;
            if got["code"] != "bad_message" {
                wrong.push(format!("an unknown topic as {who:?}: expected bad_message, got {got}"));
            }
        }
        assert!(wrong.is_empty(), "{} of {} subscriptions went wrong:\n{}", wrong.len(),
            (rows.len() + 1) * callers.len(), wrong.join("\n"));
    }
}

/// A feed lasts only as long as the role that opened it: removing the role while subscribed
/// closes every socket following a feed it opened (4001), on every topic, within a heartbeat
/// (one second here); a socket following nothing stays; subscribing again is forbidden.
async fn a_role_removed_while_subscribed_loses_every_feed(backend: Backend) {
    let Some(srv) = TestServer::start_with(backend, |s| s.ws_heartbeat_secs = 1).await else {
        return;
    };
    let a = srv.org().await;
    let system_admin = srv.user(a, &[Role::Staff], true).await;
    // Someone else keeps A administered, so its org admin role may be removed below.
    let _keeper = srv.user(a, &[Role::OrgAdmin], false).await;
    for role in [
        Role::Operator,
        Role::Adviser,
        Role::OrgAdmin,
        Role::Oversight,
    ] {
        let holder = srv.user(a, &[Role::Staff, role], false).await;
        let mut feeds = Vec::new();
        for topic in TOPIC_NAMES {
            let (mut ws, _) = Ws::hello(&srv, &holder, i64::MAX).await;
            ws.send(json!({"type": "subscribe", "topic": topic})).await;
            assert_eq!(
                answer(&mut ws).await["type"],
                "subscribed",
                "{role} subscribing to {topic}"
            );
            feeds.push((topic, ws));
        }
        let (mut idle, _) = Ws::hello(&srv, &holder, i64::MAX).await;
        system_admin
            .delete(&format!("/api/v1/users/{}/roles/{role}", holder.user_id))
            .await
            .expect(200);
        for (topic, ws) in &mut feeds {
            let end = ws.next_of("closed").await;
            assert_eq!(
                end["code"], 4001,
                "{role} removed: the {topic} feed is closed"
            );
        }
        idle.send(json!({"type": "ping", "ref": "still-here"}))
            .await;
        assert_eq!(
            idle.next_of("pong").await["ref"],
            "still-here",
            "a socket following nothing stays"
        );
        for topic in TOPIC_NAMES {
            idle.send(json!({"type": "subscribe", "topic": topic}))
                .await;
            assert_eq!(
                answer(&mut idle).await["code"],
                "forbidden",
                "{role} removed: {topic} again"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_removed_while_subscribed_loses_every_feed_on_sqlite() {
    a_role_removed_while_subscribed_loses_every_feed(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_removed_while_subscribed_loses_every_feed_on_postgres() {
    a_role_removed_while_subscribed_loses_every_feed(Backend::Postgres).await;
}
