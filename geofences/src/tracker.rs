//! Geofence transitions: which areas a subject entered and left, without flapping at borders.
//!
//! # The hysteresis rule
//!
//! A fix is a point with an accuracy radius `r` (the phone's 68 % circle; missing, negative
//! or NaN counts as 0; above [`MAX_MARGIN_M`] counts as [`MAX_MARGIN_M`]). For each area valid at
//! the fix's time the fix is
//!
//! * **clearly inside** if some polygon of the area (or the circle) contains the point and
//!   none of that polygon's borders passes within `r` of it (the whole accuracy circle is in);
//! * **clearly outside** if no polygon contains the point and no border passes within `r`;
//! * **on the border** otherwise: the accuracy circle straddles the border.
//!
//! Clearly inside makes the subject a member, clearly outside makes it a non-member, and on the
//! border keeps whatever the subject was before. When there is no "before" — the subject's
//! first fix, or an area added since — the point itself decides (border counts as inside).
//! So a subject standing on a border with 30 m accuracy stays where it was until a fix puts
//! its whole accuracy circle on one side; with `r = 0` the point alone decides.
//!
//! An area whose validity window has closed is left at the subject's next fix, or at once
//! through [`Tracker::area_changed`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::area::Area;
use crate::areas::AreaIndex;
use crate::geodesy;
use crate::hash::{IdMap, IdSet};
use crate::positions::{InvalidPosition, PositionIndex, check_position};
use crate::{AreaId, SubjectId};

/// The largest accuracy radius used for hysteresis, in metres. A fix vaguer than this (a
/// cell-tower guess) still moves the subject across borders more than 10 km away.
pub const MAX_MARGIN_M: f64 = 10_000.0;

/// One position report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fix {
    /// Longitude, degrees, [-180, 180].
    pub lon: f64,
    /// Latitude, degrees, [-90, 90].
    pub lat: f64,
    /// Radius of the accuracy circle in metres, if the device reported one.
    pub accuracy_m: Option<f64>,
    /// When the fix was taken, Unix ms.
    pub at_ms: i64,
}

/// Areas a subject entered and left with one fix, each ascending by id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Areas the subject is now in and was not before.
    pub entered: Vec<AreaId>,
    /// Areas the subject was in and is not any more.
    pub left: Vec<AreaId>,
}

impl Transitions {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.entered.is_empty() && self.left.is_empty()
    }
}

/// One subject entering or leaving one area.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The subject became a member of the area.
    Entered(AreaId),
    /// The subject stopped being a member of the area.
    Left(AreaId),
}

/// Fixes whose effect [`Tracker::prepare`] worked out from a shared borrow of the tracker,
/// for [`Tracker::apply`] to make under an exclusive one.
///
/// This is how a server holding the tracker behind a read-write lock keeps the write lock
/// short: the geometry (the costly part) runs under the read lock, beside other readers, and
/// the write lock only stores the results.
#[derive(Debug)]
pub struct PreparedFixes {
    /// The tracker's version when prepared: [`Tracker::apply`] trusts the work only if
    /// nothing changed since.
    version: u64,
    fixes: Vec<PreparedFix>,
}

impl PreparedFixes {
    /// Number of fixes.
    pub fn len(&self) -> usize {
        self.fixes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fixes.is_empty()
    }
}

/// One fix of [`PreparedFixes`].
#[derive(Clone, Debug)]
struct PreparedFix {
    subject: SubjectId,
    /// Longitude folded as stored (unless the position is invalid).
    fix: Fix,
    outcome: Outcome,
}

#[derive(Clone, Debug)]
enum Outcome {
    Invalid(InvalidPosition),
    /// Older than the subject's last fix: ignored.
    Older,
    /// Accepted. `areas` is the subject's membership afterwards when it changed (or the
    /// subject is new); otherwise the membership stays as it is.
    Moved {
        transitions: Transitions,
        areas: Option<Vec<AreaId>>,
    },
}

/// Versions are unique across trackers, so fixes prepared on one tracker are never applied
/// as they are to another.
static VERSIONS: AtomicU64 = AtomicU64::new(1);

fn next_version() -> u64 {
    VERSIONS.fetch_add(1, Ordering::Relaxed)
}

/// What the tracker remembers of a subject.
#[derive(Clone, Debug)]
struct SubjectState {
    /// The last accepted fix (the position index has the same point).
    fix: Fix,
    /// Areas the subject is a member of, ascending.
    areas: Vec<AreaId>,
}

/// How one fix relates to one area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Inside,
    Outside,
    /// The accuracy circle straddles a border; `centre_inside` says where the point itself is.
    Border {
        centre_inside: bool,
    },
}

/// Areas, positions and memberships: what one server node holds.
pub struct Tracker {
    /// Changes with every change of areas, subjects or memberships (see [`PreparedFixes`]).
    version: u64,
    /// Every area; changed only through the tracker so memberships stay right.
    areas: AreaIndex,
    /// Latest position of every subject.
    positions: PositionIndex,
    /// Last fix and memberships of every subject.
    subjects: IdMap<SubjectId, SubjectState>,
    /// Members of every area (the inverse of `SubjectState::areas`), for alerts and area edits.
    members: IdMap<AreaId, IdSet<SubjectId>>,
    /// Reused by every update (see [`Tracker::update`]).
    scratch_statuses: Vec<(AreaId, Status)>,
    scratch_now: Vec<AreaId>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            version: next_version(),
            areas: AreaIndex::default(),
            positions: PositionIndex::default(),
            subjects: IdMap::default(),
            members: IdMap::default(),
            scratch_statuses: Vec::new(),
            scratch_now: Vec::new(),
        }
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("areas", &self.areas)
            .field("positions", &self.positions)
            .finish()
    }
}

impl Tracker {
    /// A tracker with no areas and no subjects.
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker over existing areas (e.g. bulk-loaded at start-up), with no subjects yet.
    pub fn with_areas(areas: AreaIndex) -> Self {
        Self {
            areas,
            ..Self::default()
        }
    }

    /// Loads many subjects at once (e.g. last known positions at start-up): memberships are
    /// computed as for a first fix and the position R-tree is bulk-loaded. Replaces any
    /// subjects already tracked; invalid fixes are skipped and counted in the result.
    pub fn load(&mut self, fixes: impl IntoIterator<Item = (SubjectId, Fix)>) -> usize {
        self.version = next_version();
        let mut skipped = 0;
        let mut statuses = Vec::new();
        self.subjects.clear();
        self.members.clear();
        for (subject, fix) in fixes {
            let Ok((lon, lat)) = check_position(fix.lon, fix.lat) else {
                skipped += 1;
                continue;
            };
            let fix = Fix { lon, lat, ..fix };
            let mut areas = Vec::new();
            self.memberships(
                lon,
                lat,
                fix.accuracy_m,
                fix.at_ms,
                None,
                &mut statuses,
                &mut areas,
            );
            for &a in &areas {
                self.members.entry(a).or_default().insert(subject);
            }
            self.subjects.insert(subject, SubjectState { fix, areas });
        }
        self.positions = PositionIndex::bulk_load(
            self.subjects
                .iter()
                .map(|(&s, st)| (s, st.fix.lon, st.fix.lat)),
        );
        skipped
    }

    /// The areas.
    pub fn areas(&self) -> &AreaIndex {
        &self.areas
    }

    /// The latest positions.
    pub fn positions(&self) -> &PositionIndex {
        &self.positions
    }

    /// Records a fix and returns the areas the subject entered and left since its previous one.
    ///
    /// A fix older than the subject's last one is ignored (no move, no transitions); an
    /// invalid position is refused and changes nothing.
    pub fn update(&mut self, subject: SubjectId, fix: Fix) -> Result<Transitions, InvalidPosition> {
        let (lon, lat) = check_position(fix.lon, fix.lat)?;
        self.version = next_version();
        let fix = Fix { lon, lat, ..fix };
        let previous = self.subjects.get(&subject);
        if previous.is_some_and(|s| fix.at_ms < s.fix.at_ms) {
            return Ok(Transitions::default());
        }
        let old: Option<&[AreaId]> = previous.map(|s| s.areas.as_slice());
        // Scratch vectors live in the tracker so a fix that changes nothing allocates nothing.
        let mut statuses = std::mem::take(&mut self.scratch_statuses);
        let mut now = std::mem::take(&mut self.scratch_now);
        self.memberships(
            lon,
            lat,
            fix.accuracy_m,
            fix.at_ms,
            old,
            &mut statuses,
            &mut now,
        );
        let transitions = diff(old.unwrap_or(&[]), &now);
        for &a in &transitions.entered {
            self.members.entry(a).or_default().insert(subject);
        }
        for &a in &transitions.left {
            if let Some(set) = self.members.get_mut(&a) {
                set.remove(&subject);
            }
        }
        // The position was checked above, so this cannot fail.
        self.positions.upsert(subject, lon, lat)?;
        match self.subjects.get_mut(&subject) {
            Some(state) => {
                state.fix = fix;
                if !transitions.is_empty() {
                    state.areas.clone_from(&now);
                }
            }
            None => {
                self.subjects.insert(
                    subject,
                    SubjectState {
                        fix,
                        areas: now.clone(),
                    },
                );
            }
        }
        self.scratch_statuses = statuses;
        self.scratch_now = now;
        Ok(transitions)
    }

    /// Works out what [`Tracker::update`] would do with each fix, in order (a later fix of a
    /// subject sees the effect of its earlier ones), without changing anything; give the
    /// result to [`Tracker::apply`].
    pub fn prepare(&self, fixes: &[(SubjectId, Fix)]) -> PreparedFixes {
        let mut out: Vec<PreparedFix> = Vec::with_capacity(fixes.len());
        // Subjects already moved by this batch: their newest time, and which prepared fix
        // holds their memberships (`None`: still those in the tracker).
        let mut moved: IdMap<SubjectId, (i64, Option<usize>)> = IdMap::default();
        let mut statuses = Vec::new();
        let mut now = Vec::new();
        for &(subject, fix) in fixes {
            let (lon, lat) = match check_position(fix.lon, fix.lat) {
                Ok(p) => p,
                Err(e) => {
                    out.push(PreparedFix {
                        subject,
                        fix,
                        outcome: Outcome::Invalid(e),
                    });
                    continue;
                }
            };
            let fix = Fix { lon, lat, ..fix };
            let tracked = self.subjects.get(&subject);
            let previous: Option<(i64, &[AreaId])> = match moved.get(&subject) {
                Some(&(at, held)) => {
                    let areas = match held.map(|i| &out[i].outcome) {
                        Some(Outcome::Moved {
                            areas: Some(areas), ..
                        }) => areas.as_slice(),
                        _ => tracked.map_or(&[][..], |s| s.areas.as_slice()),
                    };
                    Some((at, areas))
                }
                None => tracked.map(|s| (s.fix.at_ms, s.areas.as_slice())),
            };
            if previous.is_some_and(|(at, _)| fix.at_ms < at) {
                out.push(PreparedFix {
                    subject,
                    fix,
                    outcome: Outcome::Older,
                });
                continue;
            }
            let old = previous.map(|(_, areas)| areas);
            self.memberships(
                lon,
                lat,
                fix.accuracy_m,
                fix.at_ms,
                old,
                &mut statuses,
                &mut now,
            );
            let transitions = diff(old.unwrap_or(&[]), &now);
            let areas = (old.is_none() || !transitions.is_empty()).then(|| now.clone());
            let held = match (&areas, moved.get(&subject)) {
                (Some(_), _) => Some(out.len()),
                (None, Some(&(_, held))) => held,
                (None, None) => None,
            };
            moved.insert(subject, (fix.at_ms, held));
            out.push(PreparedFix {
                subject,
                fix,
                outcome: Outcome::Moved { transitions, areas },
            });
        }
        PreparedFixes {
            version: self.version,
            fixes: out,
        }
    }

    /// Records prepared fixes and returns, for each in order, exactly what
    /// [`Tracker::update`] would have. If the tracker changed since [`Tracker::prepare`]
    /// (an area edited, a subject forgotten, another fix recorded), the fixes are worked out
    /// again here, one [`Tracker::update`] each.
    pub fn apply(&mut self, prepared: PreparedFixes) -> Vec<Result<Transitions, InvalidPosition>> {
        if prepared.version != self.version {
            return prepared
                .fixes
                .into_iter()
                .map(|p| match p.outcome {
                    Outcome::Invalid(e) => Err(e),
                    Outcome::Older | Outcome::Moved { .. } => self.update(p.subject, p.fix),
                })
                .collect();
        }
        self.version = next_version();
        let mut results = Vec::with_capacity(prepared.fixes.len());
        for PreparedFix {
            subject,
            fix,
            outcome,
        } in prepared.fixes
        {
            let (transitions, areas) = match outcome {
                Outcome::Invalid(e) => {
                    results.push(Err(e));
                    continue;
                }
                Outcome::Older => {
                    results.push(Ok(Transitions::default()));
                    continue;
                }
                Outcome::Moved { transitions, areas } => (transitions, areas),
            };
            for &a in &transitions.entered {
                self.members.entry(a).or_default().insert(subject);
            }
            for &a in &transitions.left {
                if let Some(set) = self.members.get_mut(&a) {
                    set.remove(&subject);
                }
            }
            if let Err(e) = self.positions.upsert(subject, fix.lon, fix.lat) {
                // Checked when prepared, so this cannot happen.
                results.push(Err(e));
                continue;
            }
            match self.subjects.get_mut(&subject) {
                Some(state) => {
                    state.fix = fix;
                    if let Some(areas) = areas {
                        state.areas = areas;
                    }
                }
                None => {
                    self.subjects.insert(
                        subject,
                        SubjectState {
                            fix,
                            areas: areas.unwrap_or_default(),
                        },
                    );
                }
            }
            results.push(Ok(transitions));
        }
        results
    }

    /// Stops tracking a subject; returns the areas it was in (now left).
    pub fn forget(&mut self, subject: SubjectId) -> Vec<AreaId> {
        self.version = next_version();
        self.positions.remove(subject);
        let Some(state) = self.subjects.remove(&subject) else {
            return Vec::new();
        };
        for a in &state.areas {
            if let Some(set) = self.members.get_mut(a) {
                set.remove(&subject);
            }
        }
        state.areas
    }

    /// The areas a subject is a member of, ascending; `None` if it is not tracked.
    pub fn areas_of(&self, subject: SubjectId) -> Option<&[AreaId]> {
        self.subjects.get(&subject).map(|s| s.areas.as_slice())
    }

    /// The subject's last accepted fix.
    pub fn last_fix(&self, subject: SubjectId) -> Option<Fix> {
        self.subjects.get(&subject).map(|s| s.fix)
    }

    /// The members of an area (by the hysteresis rule, not just the points inside), ascending.
    pub fn members_of(&self, area: AreaId) -> Vec<SubjectId> {
        let mut v: Vec<SubjectId> = self
            .members
            .get(&area)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Number of tracked subjects.
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether no subject is tracked.
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    /// Adds or replaces an area and recomputes memberships (see [`Tracker::area_changed`]).
    pub fn upsert_area(&mut self, area: Area, at_ms: i64) -> Vec<(SubjectId, Transition)> {
        let id = area.id;
        let is_new = self.areas.upsert(area).is_none();
        self.recompute(id, at_ms, is_new)
    }

    /// Removes an area; every member leaves it.
    pub fn remove_area(&mut self, id: AreaId) -> (Option<Area>, Vec<(SubjectId, Transition)>) {
        self.version = next_version();
        let removed = self.areas.remove(id);
        let members = self.members.remove(&id).unwrap_or_default();
        let mut out: Vec<(SubjectId, Transition)> = Vec::with_capacity(members.len());
        for s in members {
            if let Some(state) = self.subjects.get_mut(&s)
                && let Ok(pos) = state.areas.binary_search(&id)
            {
                state.areas.remove(pos);
                out.push((s, Transition::Left(id)));
            }
        }
        out.sort_unstable_by_key(|x| x.0);
        (removed, out)
    }

    /// Re-evaluates one area for every subject, using each subject's last fix and the area's
    /// validity at `at_ms`, and returns who entered and left it, ascending by subject.
    ///
    /// [`Tracker::upsert_area`] calls it; call it yourself when an area's validity window opens
    /// or closes. The hysteresis rule applies with the subject's current membership as "before".
    pub fn area_changed(&mut self, id: AreaId, at_ms: i64) -> Vec<(SubjectId, Transition)> {
        self.recompute(id, at_ms, false)
    }

    fn recompute(&mut self, id: AreaId, at_ms: i64, is_new: bool) -> Vec<(SubjectId, Transition)> {
        self.version = next_version();
        let current: Vec<SubjectId> = self
            .members
            .get(&id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let Some(area) = self.areas.get(id) else {
            return self.remove_area(id).1;
        };
        // Only members and subjects whose point is in the shape can end up members.
        let mut candidates = self.positions.within_shape(&area.shape);
        candidates.extend(current);
        candidates.sort_unstable();
        candidates.dedup();
        let valid = area.is_valid_at(at_ms);
        let shape = area.shape.clone();

        let mut out = Vec::new();
        for s in candidates {
            let Some(state) = self.subjects.get_mut(&s) else {
                continue;
            };
            let was = state.areas.binary_search(&id);
            let status = if valid {
                let (lon, lat) = (state.fix.lon, state.fix.lat);
                let margin = margin_of(state.fix.accuracy_m);
                shape
                    .pieces()
                    .iter()
                    .map(|p| {
                        let inside = crate::shape::in_box(&p.env, lon, lat)
                            && shape.piece_contains(p.part, p.offset, lon, lat);
                        let near = margin > 0.0
                            && shape.piece_border_within(p.part, p.offset, lon, lat, margin);
                        status_of(inside, near)
                    })
                    .fold(Status::Outside, combine)
            } else {
                Status::Outside
            };
            let member = match status {
                Status::Inside => true,
                Status::Outside => false,
                Status::Border { centre_inside } => {
                    if is_new {
                        centre_inside
                    } else {
                        was.is_ok()
                    }
                }
            };
            match (was, member) {
                (Err(pos), true) => {
                    state.areas.insert(pos, id);
                    self.members.entry(id).or_default().insert(s);
                    out.push((s, Transition::Entered(id)));
                }
                (Ok(pos), false) => {
                    state.areas.remove(pos);
                    if let Some(set) = self.members.get_mut(&id) {
                        set.remove(&s);
                    }
                    out.push((s, Transition::Left(id)));
                }
                _ => {}
            }
        }
        out
    }

    /// Areas the fix makes the subject a member of, ascending, into `now`, given its
    /// memberships before (`None` for a first fix). `statuses` is scratch space.
    #[allow(clippy::too_many_arguments)]
    fn memberships(
        &self,
        lon: f64,
        lat: f64,
        accuracy_m: Option<f64>,
        at_ms: i64,
        old: Option<&[AreaId]>,
        statuses: &mut Vec<(AreaId, Status)>,
        now: &mut Vec<AreaId>,
    ) {
        statuses.clear();
        now.clear();
        self.statuses(lon, lat, margin_of(accuracy_m), at_ms, statuses);
        statuses.sort_unstable_by_key(|s| s.0);
        let mut i = 0;
        while i < statuses.len() {
            let id = statuses[i].0;
            let mut combined = Status::Outside;
            while i < statuses.len() && statuses[i].0 == id {
                combined = combine(combined, statuses[i].1);
                i += 1;
            }
            let member = match combined {
                Status::Inside => true,
                Status::Outside => false,
                Status::Border { centre_inside } => match old {
                    Some(old) => old.binary_search(&id).is_ok(),
                    None => centre_inside,
                },
            };
            if member {
                now.push(id);
            }
        }
    }

    /// `(area, status)` for every piece of every valid area that the fix's accuracy circle
    /// can reach (pieces it cannot reach are clearly outside), appended to `out`.
    fn statuses(
        &self,
        lon: f64,
        lat: f64,
        margin: f64,
        at_ms: i64,
        out: &mut Vec<(AreaId, Status)>,
    ) {
        let boxes = if margin > 0.0 {
            geodesy::boxes_around(lon, lat, margin)
        } else {
            geodesy::Boxes::one([lon, lat, lon, lat])
        };
        for b in boxes.as_slice() {
            self.areas.for_each_entry_in(b, |e| {
                if !e.valid_at(at_ms) {
                    return;
                }
                let inside = crate::shape::in_box(&e.piece.env, lon, lat) && e.contains(lon, lat);
                let near = margin > 0.0 && e.border_within(lon, lat, margin);
                if inside || near {
                    out.push((e.id, status_of(inside, near)));
                }
            });
        }
    }
}

fn margin_of(accuracy_m: Option<f64>) -> f64 {
    match accuracy_m {
        Some(a) if a.is_finite() && a > 0.0 => a.min(MAX_MARGIN_M),
        _ => 0.0,
    }
}

fn status_of(inside: bool, near: bool) -> Status {
    match (inside, near) {
        (true, false) => Status::Inside,
        (false, false) => Status::Outside,
        (centre_inside, true) => Status::Border { centre_inside },
    }
}

/// Status of an area from the statuses of its pieces: clearly inside one piece wins, then a
/// border, then outside.
fn combine(a: Status, b: Status) -> Status {
    match (a, b) {
        (Status::Inside, _) | (_, Status::Inside) => Status::Inside,
        (Status::Border { centre_inside: x }, Status::Border { centre_inside: y }) => {
            Status::Border {
                centre_inside: x || y,
            }
        }
        (s @ Status::Border { .. }, Status::Outside)
        | (Status::Outside, s @ Status::Border { .. }) => s,
        (Status::Outside, Status::Outside) => Status::Outside,
    }
}

/// Entered and left between two ascending lists.
fn diff(old: &[AreaId], now: &[AreaId]) -> Transitions {
    let mut t = Transitions::default();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < now.len() {
        match (old.get(i), now.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                t.left.push(*a);
                i += 1;
            }
            (Some(a), None) => {
                t.left.push(*a);
                i += 1;
            }
            (_, Some(b)) => {
                t.entered.push(*b);
                j += 1;
            }
            (None, None) => break,
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tracker_can_be_shared_between_threads() {
        // The server keeps it in an `Arc<RwLock<Tracker>>`.
        fn shareable<T: Send + Sync>() {}
        shareable::<Tracker>();
    }

    #[test]
    fn diff_of_sorted_lists() {
        let t = diff(&[1, 3, 5], &[2, 3, 6]);
        assert_eq!(t.entered, vec![2, 6]);
        assert_eq!(t.left, vec![1, 5]);
        assert!(diff(&[1], &[1]).is_empty());
    }
}
