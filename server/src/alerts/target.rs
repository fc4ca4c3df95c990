//! Who an alert (and later a roll-call) reaches.
//!
//! Recipients are the union of:
//! - people in tracking mode whose last known position lies inside a target area or drawn
//!   shape and is fresher than `fresh_within_secs` (`inside_area`);
//! - people who follow a stored area that is targeted or that a drawn shape overlaps — this
//!   is how location-less staff are reached (`following_area`);
//! - everyone in a named organisation, with a named role, or at a named duty station
//!   (`organisation`, `role`, `duty_station`), and everyone (`everyone`);
//!
//! always limited to active people of the organisations the sender may alert (their own, plus
//! any a system admin granted them).

use std::collections::{BTreeMap, HashMap, HashSet};

use geojson::Feature;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vigil_geofences::Shape;

use crate::AppState;
use crate::areas::read_tracker;
use crate::db::{Backend, Db};
use crate::error::{AppError, AppResult, Issue};
use crate::on_reader;
use crate::policy::{Action, Actor, Role, authorize};

/// Most ids of one kind a target may name.
pub const MAX_IDS: usize = 1_000;
/// Most shapes drawn for one alert.
pub const MAX_SHAPES: usize = 50;
/// Oldest position the sender may still count as "inside", in seconds (30 days).
pub const MAX_FRESH_SECS: i64 = 30 * 86_400;

/// Why a person receives an alert; a person may have several reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// Last known position inside a target area or shape.
    InsideArea = 1,
    /// Follows a targeted or overlapped area.
    FollowingArea = 2,
    /// Member of a named organisation.
    Organisation = 4,
    /// Holds a named role.
    Role = 8,
    /// Assigned to a named duty station.
    DutyStation = 16,
    /// The alert is for everyone.
    Everyone = 32,
}

impl Reason {
    /// Every reason, in the order they are reported.
    pub const ALL: [Reason; 6] = [
        Reason::InsideArea,
        Reason::FollowingArea,
        Reason::Organisation,
        Reason::Role,
        Reason::DutyStation,
        Reason::Everyone,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsideArea => "inside_area",
            Reason::FollowingArea => "following_area",
            Reason::Organisation => "organisation",
            Reason::Role => "role",
            Reason::DutyStation => "duty_station",
            Reason::Everyone => "everyone",
        }
    }

    /// The names of the reasons in a bit set, comma-separated.
    pub fn names(bits: u8) -> String {
        Reason::ALL
            .iter()
            .filter(|r| bits & (**r as u8) != 0)
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Who receives an alert. Parts combine as a union; an empty target is refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Stored security areas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub areas: Vec<i64>,
    /// Shapes drawn for this alert: GeoJSON Features with a Polygon, a MultiPolygon, or a Point
    /// with `properties.radius_m` (a circle).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub shapes: Vec<serde_json::Value>,
    /// Everyone in these organisations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organisations: Vec<i64>,
    /// Everyone assigned to these duty stations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub duty_stations: Vec<i64>,
    /// Everyone holding one of these roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Everyone the sender may alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub everyone: bool,
    /// Count a position as "inside" only if it is at most this old (seconds); default
    /// `alert_position_max_age_secs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh_within_secs: Option<i64>,
}

/// How many people a target reaches, by reason (a person with two reasons counts in both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// Distinct people reached.
    pub total: usize,
    /// People per reason: `inside_area`, `following_area`, `organisation`, `role`,
    /// `duty_station`, `everyone`.
    pub by_reason: BTreeMap<String, usize>,
    /// People per organisation id.
    pub by_organisation: BTreeMap<i64, usize>,
    /// People inside the target whose position is older than the freshness limit (not reached
    /// through it).
    pub stale_positions: usize,
    /// The freshness limit applied, in seconds.
    pub fresh_within_secs: i64,
}

impl Preview {
    /// A 422 that says why nobody would be reached, or nothing.
    pub fn refuse_if_empty(&self) -> AppResult<()> {
        if self.total > 0 {
            return Ok(());
        }
        let mut why = format!(
            "this target reaches nobody: no one the sender may alert is inside it with a position \
             fresher than {} s, follows a targeted area, or is named by organisation, role or \
             duty station",
            self.fresh_within_secs
        );
        if self.stale_positions > 0 {
            why.push_str(&format!(
                " ({} people are inside with older positions: widen fresh_within_secs to reach them)",
                self.stale_positions
            ));
        }
        Err(AppError::from_issues(vec![Issue::new("target", why)]))
    }
}

/// The places a stored target was sent to, as phones check them: its stored areas (as they are
/// now; a deleted one is left out) and its drawn shapes. Checked when the alert was sent, so a
/// shape that no longer parses is left out rather than refused.
pub fn places(
    target: &Target,
    tracker: &vigil_geofences::Tracker,
) -> Vec<vigil_protocol::AlertArea> {
    let stored = target
        .areas
        .iter()
        .filter_map(|id| tracker.areas().get(*id))
        .map(|area| &area.shape);
    let drawn: Vec<Shape> = target
        .shapes
        .iter()
        .filter_map(|value| {
            let feature: Feature = serde_json::from_value(value.clone()).ok()?;
            let radius = feature
                .properties
                .as_ref()
                .and_then(|p| p.get("radius_m"))
                .and_then(serde_json::Value::as_f64);
            Shape::from_geometry(feature.geometry.as_ref()?, radius).ok()
        })
        .collect();
    stored
        .chain(drawn.iter())
        .filter_map(|shape| {
            Some(vigil_protocol::AlertArea {
                geometry: serde_json::to_value(shape.to_geometry()).ok()?,
                radius_m: shape.radius_m(),
            })
        })
        .collect()
}

/// What a target is for: the policy decides who may reach whom for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An alert (advisers).
    Alert,
    /// A roll-call (operators and advisers).
    Rollcall,
}

impl Purpose {
    fn action(self, org_id: i64, granted: bool) -> Action {
        match self {
            Purpose::Alert => Action::SendAlert { org_id, granted },
            Purpose::Rollcall => Action::StartRollcall { org_id, granted },
        }
    }
}

/// The organisations a sender may alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every organisation.
    All,
    /// These organisations.
    Orgs(Vec<i64>),
}

impl Scope {
    /// Whether `org` is within.
    pub fn contains(&self, org: i64) -> bool {
        match self {
            Scope::All => true,
            Scope::Orgs(orgs) => orgs.contains(&org),
        }
    }
}

/// Who the actor may alert: their own organisation and any granted by a system admin. Refuses
/// anyone the policy does not let send alerts at all.
pub async fn scope_of(db: &Db, actor: &Actor) -> AppResult<Scope> {
    scope_for(db, actor, Purpose::Alert).await
}

/// Who the actor may reach for `purpose`: their own organisation and any a system admin granted
/// them (broadcast grants cover roll-calls too).
pub async fn scope_for(db: &Db, actor: &Actor, purpose: Purpose) -> AppResult<Scope> {
    authorize(actor, purpose.action(actor.org_id, false))?;
    if actor.system_admin {
        return Ok(Scope::All);
    }
    let grants: Vec<Option<i64>> = on_reader!(db, pool => sqlx::query_scalar(
        "SELECT org_id FROM broadcast_grants WHERE user_id = $1")
        .bind(actor.user_id).fetch_all(pool).await?);
    if grants.contains(&None) {
        return Ok(Scope::All);
    }
    let mut orgs: Vec<i64> = grants.into_iter().flatten().collect();
    orgs.push(actor.org_id);
    orgs.sort_unstable();
    orgs.dedup();
    Ok(Scope::Orgs(orgs))
}

/// The people a target reaches.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    /// `(user id, reason bits)`, ascending by user id.
    pub recipients: Vec<(i64, u8)>,
    /// The counts.
    pub preview: Preview,
}

/// Checks a target and finds everyone it reaches at `now`.
pub async fn resolve(
    state: &AppState,
    actor: &Actor,
    scope: &Scope,
    target: &Target,
    now: i64,
) -> AppResult<Audience> {
    resolve_for(state, actor, Purpose::Alert, scope, target, now).await
}

/// Like [`resolve`], for a roll-call or an alert.
pub async fn resolve_for(
    state: &AppState,
    actor: &Actor,
    purpose: Purpose,
    scope: &Scope,
    target: &Target,
    now: i64,
) -> AppResult<Audience> {
    let shapes = check(state, actor, purpose, scope, target).await?;
    let fresh_secs = target
        .fresh_within_secs
        .unwrap_or(state.settings.alert_position_max_age_secs);
    let mut reasons: HashMap<i64, u8> = HashMap::new();
    let mut add = |id: i64, reason: Reason| *reasons.entry(id).or_default() |= reason as u8;

    // Memory first (no await while the tracker is locked). The lock is held per index query
    // (one shape's people, the areas under the drawn shapes from the area R-tree) and per
    // `LOOKUPS_PER_LOCK` fixes looked up, never across the whole target: the position writer
    // waits for readers, and readers behind it wait too.
    const LOOKUPS_PER_LOCK: usize = 4_096;
    let oldest = now - fresh_secs * 1_000;
    let mut candidates: Vec<i64> = Vec::new();
    for shape in &shapes {
        let found = read_tracker(&state.tracker).positions().within_shape(shape);
        // People are positive ids in the tracker; assets are negative.
        candidates.extend(found.into_iter().filter(|subject| *subject > 0));
    }
    // Someone forgotten between the two (gone location-less) is no longer anywhere.
    let mut located: Vec<(i64, i64)> = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(LOOKUPS_PER_LOCK) {
        let tracker = read_tracker(&state.tracker);
        located.extend(
            chunk
                .iter()
                .filter_map(|s| tracker.last_fix(*s).map(|f| (*s, f.at_ms))),
        );
    }
    let mut followed_areas = {
        let tracker = read_tracker(&state.tracker);
        // The targeted areas themselves (still there: `check` found them), and every area a
        // drawn shape overlaps; the first `target.areas.len()` shapes are the stored areas.
        let mut followed: Vec<i64> = target
            .areas
            .iter()
            .copied()
            .filter(|id| tracker.areas().get(*id).is_some())
            .collect();
        for drawn in shapes.iter().skip(target.areas.len()) {
            followed.extend(tracker.areas().intersecting(drawn));
        }
        followed
    };
    followed_areas.sort_unstable();
    followed_areas.dedup();
    let mut inside = HashSet::new();
    let mut stale = HashSet::new();
    for (subject, at) in located {
        if at >= oldest {
            inside.insert(subject);
        } else {
            stale.insert(subject);
        }
    }
    let people = people_in_scope(&state.db, scope).await?;
    for id in &inside {
        add(*id, Reason::InsideArea);
    }
    if !followed_areas.is_empty() {
        let sql = format!(
            "SELECT DISTINCT user_id FROM followed_areas WHERE area_id IN ({})",
            state.db.json_ints(1)
        );
        let ids = serde_json::to_string(&followed_areas).unwrap_or_default();
        let followers: Vec<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&ids).fetch_all(pool).await?);
        for id in followers {
            add(id, Reason::FollowingArea);
        }
    }
    if !target.roles.is_empty() {
        let sql = format!(
            "SELECT DISTINCT user_id FROM user_roles WHERE role IN ({})",
            state.db.json_texts(1)
        );
        let roles: Vec<&str> = target.roles.iter().map(|r| r.as_str()).collect();
        let roles = serde_json::to_string(&roles).unwrap_or_default();
        let holders: Vec<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
            .bind(&roles).fetch_all(pool).await?);
        for id in holders {
            add(id, Reason::Role);
        }
    }
    for (id, person) in &people {
        if target.everyone {
            add(*id, Reason::Everyone);
        }
        if target.organisations.contains(&person.org_id) {
            add(*id, Reason::Organisation);
        }
        if person
            .duty_station_id
            .is_some_and(|d| target.duty_stations.contains(&d))
        {
            add(*id, Reason::DutyStation);
        }
    }
    let mut recipients: Vec<(i64, u8)> = reasons
        .into_iter()
        .filter(|(id, _)| people.contains_key(id))
        .collect();
    recipients.sort_unstable();
    let mut preview = Preview {
        total: recipients.len(),
        fresh_within_secs: fresh_secs,
        stale_positions: stale
            .iter()
            .filter(|id| people.contains_key(id) && !inside.contains(id))
            .count(),
        ..Preview::default()
    };
    for (id, bits) in &recipients {
        for r in Reason::ALL {
            if bits & (r as u8) != 0 {
                *preview.by_reason.entry(r.as_str().to_string()).or_default() += 1;
            }
        }
        if let Some(p) = people.get(id) {
            *preview.by_organisation.entry(p.org_id).or_default() += 1;
        }
    }
    Ok(Audience {
        recipients,
        preview,
    })
}

/// Checks what can be checked of a target without the database — its parts, their limits and
/// its drawn shapes — adding what is wrong to `issues`, and returns the drawn shapes. Templates
/// are checked with this when stored, so that a broken target fails then, not when sent.
pub fn check_form(target: &Target, issues: &mut Vec<Issue>) -> Vec<Shape> {
    let nothing = target.areas.is_empty()
        && target.shapes.is_empty()
        && target.organisations.is_empty()
        && target.duty_stations.is_empty()
        && target.roles.is_empty()
        && !target.everyone;
    if nothing {
        issues.push(Issue::new(
            "target",
            "name at least one of areas, shapes, organisations, duty_stations, roles, or set everyone",
        ));
    }
    for (field, len) in [
        ("target/areas", target.areas.len()),
        ("target/organisations", target.organisations.len()),
        ("target/duty_stations", target.duty_stations.len()),
    ] {
        if len > MAX_IDS {
            issues.push(Issue::new(field, format!("at most {MAX_IDS} ids")));
        }
    }
    if target.shapes.len() > MAX_SHAPES {
        issues.push(Issue::new(
            "target/shapes",
            format!("at most {MAX_SHAPES} shapes"),
        ));
    }
    if let Some(f) = target.fresh_within_secs
        && !(1..=MAX_FRESH_SECS).contains(&f)
    {
        issues.push(Issue::new(
            "target/fresh_within_secs",
            format!("between 1 and {MAX_FRESH_SECS} seconds"),
        ));
    }
    let mut drawn = Vec::new();
    for (i, value) in target.shapes.iter().enumerate().take(MAX_SHAPES) {
        let at = format!("target/shapes/{i}");
        let feature: Feature = match serde_json::from_value(value.clone()) {
            Ok(f) => f,
            Err(e) => {
                issues.push(Issue::new(&at, format!("not a GeoJSON Feature: {e}")));
                continue;
            }
        };
        let radius = feature
            .properties
            .as_ref()
            .and_then(|p| p.get("radius_m"))
            .and_then(serde_json::Value::as_f64);
        match feature.geometry.as_ref() {
            None => issues.push(Issue::new(&at, "the Feature has no geometry")),
            Some(g) => match Shape::from_geometry(g, radius) {
                Ok(shape) => drawn.push(shape),
                Err(e) => issues.push(Issue::new(format!("{at}/geometry"), e.to_string())),
            },
        }
    }
    drawn
}

/// Validates the target's parts, returning the shapes to search: the stored areas' outlines
/// first, then the drawn ones.
async fn check(
    state: &AppState,
    actor: &Actor,
    purpose: Purpose,
    scope: &Scope,
    target: &Target,
) -> AppResult<Vec<Shape>> {
    let mut issues = Vec::new();
    let drawn = check_form(target, &mut issues);
    AppError::check(issues)?;
    let mut shapes = Vec::new();
    {
        let tracker = read_tracker(&state.tracker);
        for id in &target.areas {
            match tracker.areas().get(*id) {
                Some(area) => shapes.push(area.shape.clone()),
                None => return Err(AppError::NotFound(format!("area {id} does not exist"))),
            }
        }
    }
    shapes.extend(drawn);
    for org in &target.organisations {
        authorize(actor, purpose.action(*org, scope.contains(*org)))?;
        let exists: Option<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
            "SELECT id FROM organisations WHERE id = $1").bind(*org).fetch_optional(pool).await?);
        if exists.is_none() {
            return Err(AppError::NotFound(format!(
                "organisation {org} does not exist"
            )));
        }
    }
    for ds in &target.duty_stations {
        let exists: Option<i64> = on_reader!(&state.db, pool => sqlx::query_scalar(
            "SELECT id FROM duty_stations WHERE id = $1").bind(*ds).fetch_optional(pool).await?);
        if exists.is_none() {
            return Err(AppError::NotFound(format!(
                "duty station {ds} does not exist"
            )));
        }
    }
    Ok(shapes)
}

/// What targeting needs to know of a person.
#[derive(Debug, Clone, Copy)]
pub struct Person {
    /// Their organisation.
    pub org_id: i64,
    /// Their duty station.
    pub duty_station_id: Option<i64>,
}

/// Active people of the organisations in scope.
///
/// Tens of thousands of rows come back as one JSON array in one row: the driver's per-row
/// cost, not the query, was most of a 50,000-person broadcast's targeting time.
async fn people_in_scope(db: &Db, scope: &Scope) -> AppResult<HashMap<i64, Person>> {
    let (rows, orgs) = match scope {
        Scope::All => ("users WHERE active".to_string(), String::new()),
        Scope::Orgs(orgs) => (
            format!("users WHERE active AND org_id IN ({})", db.json_ints(1)),
            serde_json::to_string(orgs).unwrap_or_default(),
        ),
    };
    let sql = match db.backend() {
        Backend::Sqlite => {
            format!("SELECT json_group_array(json_array(id, org_id, duty_station_id)) FROM {rows}")
        }
        Backend::Postgres => format!(
            "SELECT COALESCE(json_agg(json_build_array(id, org_id, duty_station_id)), '[]')::text FROM {rows}"
        ),
    };
    let json: String = on_reader!(db, pool => {
        let q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()));
        let q = if orgs.is_empty() { q } else { q.bind(&orgs) };
        q.fetch_one(pool).await?
    });
    let people: Vec<(i64, i64, Option<i64>)> = serde_json::from_str(&json)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("people in scope: {e}")))?;
    Ok(people
        .into_iter()
        .map(|(id, org_id, duty_station_id)| {
            (
                id,
                Person {
                    org_id,
                    duty_station_id,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_in_a_stable_order() {
        let bits = Reason::Role as u8 | Reason::InsideArea as u8 | Reason::Everyone as u8;
        assert_eq!(Reason::names(bits), "inside_area,role,everyone");
        assert_eq!(Reason::names(0), "");
    }

    #[test]
    fn an_empty_preview_says_why() {
        let p = Preview {
            stale_positions: 3,
            fresh_within_secs: 600,
            ..Preview::default()
        };
        let AppError::Invalid { issues, .. } = p.refuse_if_empty().expect_err("refused") else {
            panic!("expected a 422");
        };
        assert_eq!(issues[0].at, "target");
        assert!(
            issues[0]
                .reason
                .contains("3 people are inside with older positions")
        );
        assert!(issues[0].reason.contains("600 s"));
    }
}
