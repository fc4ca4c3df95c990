//! The one place that decides who may see or do what.
//!
//! Handlers never test roles themselves: they describe the [`Action`] and ask [`authorize`].
//! Rules, in short:
//! - a system admin may do anything;
//! - the organisation decides who has which role: its org admins grant and revoke the roles
//!   `staff`, `operator`, `adviser` and `org_admin` to its own members, never to another
//!   organisation's; `oversight` reads across organisations and so is granted only by a system
//!   admin, never by an organisation about itself;
//! - oversight reads everything of every organisation and changes nothing; the accounts of
//!   system admins and oversight officers reach beyond their organisation, so its org admins
//!   cannot change them (password, activation, profile) — only a system admin can;
//! - operators, advisers and org admins see their own organisation's personnel and their last
//!   known positions; staff see themselves;
//! - advisers draw and edit their own organisation's security areas; shared areas (no
//!   organisation: country outlines) belong to system admins; everyone signed in may read areas,
//!   because location-less staff choose the areas they follow;
//! - operators and org admins manage their own organisation's assets and issue and revoke its
//!   device credentials; advisers also see its assets;
//! - each WebSocket [`Topic`] has an action of its own: the positions feed is seen by
//!   whoever sees the positions, the operations feed (alert delivery counts and roll-call boards)
//!   by whoever sees both the alerts and the roll-calls.
//!
//! Queries that find people by role (who receives an SOS, who takes part in an SOS chat without
//! being listed) take their role sets from [`RoleReach`], which is read off [`authorize`] itself,
//! so the SQL cannot drift from the rules here.

use std::fmt;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use vigil_protocol::Topic;

use crate::error::AppError;

/// A role within an organisation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Field staff: receives alerts, answers roll-calls, presses SOS.
    Staff,
    /// Security operations centre: sees personnel on the map, runs emergency chats.
    Operator,
    /// Security adviser: draws areas and broadcasts alerts.
    Adviser,
    /// Decides who in the organisation has which role.
    OrgAdmin,
    /// Reads every organisation's messages and positions; changes nothing.
    Oversight,
}

impl Role {
    /// Every role, in order of increasing reach.
    pub const ALL: [Role; 5] = [
        Role::Staff,
        Role::Operator,
        Role::Adviser,
        Role::OrgAdmin,
        Role::Oversight,
    ];

    /// The name stored in the database and used in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Staff => "staff",
            Role::Operator => "operator",
            Role::Adviser => "adviser",
            Role::OrgAdmin => "org_admin",
            Role::Oversight => "oversight",
        }
    }

    /// Parses a stored or URL role name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated user a request acts for, with roles read fresh from the database.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The user's id.
    pub user_id: i64,
    /// The organisation the user belongs to.
    pub org_id: i64,
    /// Roles held in that organisation.
    pub roles: Vec<Role>,
    /// Operates the whole deployment.
    pub system_admin: bool,
}

impl Actor {
    /// True when the actor holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.has(*r))
    }

    fn oversees(&self) -> bool {
        self.system_admin || self.has(Role::Oversight)
    }

    fn manages(&self, org_id: i64) -> bool {
        self.org_id == org_id && self.has(Role::OrgAdmin)
    }
}

/// Something a request wants to do, with the data the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a new organisation.
    CreateOrganisation,
    /// Read an organisation's name and summary.
    ViewOrganisation {
        /// The organisation.
        org_id: i64,
    },
    /// List the personnel of an organisation.
    ListPersonnel {
        /// The organisation.
        org_id: i64,
    },
    /// Read one person's profile.
    ViewPerson {
        /// The person's organisation.
        org_id: i64,
        /// The person.
        user_id: i64,
    },
    /// Create, update, deactivate or import personnel of an organisation.
    ManagePersonnel {
        /// The organisation.
        org_id: i64,
    },
    /// Change one member's account: profile, activation, password.
    ManageAccount {
        /// The member's organisation.
        org_id: i64,
        /// The member is a system admin or holds oversight: their account reaches beyond the
        /// organisation, so only a system admin may change it.
        privileged: bool,
    },
    /// Grant or revoke a role to a member of an organisation.
    AssignRole {
        /// The member's organisation.
        org_id: i64,
        /// The role.
        role: Role,
    },
    /// Read an organisation's administrative reports and audit log.
    ViewOrgReports {
        /// The organisation.
        org_id: i64,
    },
    /// Read security areas.
    ViewAreas,
    /// Create, change or delete a security area owned by `org_id` (`None`: shared).
    ManageArea {
        /// The owning organisation, or `None` for shared areas.
        org_id: Option<i64>,
    },
    /// Create or change duty stations (shared by every organisation).
    ManageDutyStations,
    /// See last known positions of an organisation's people and assets (`None`: every
    /// organisation).
    ViewPositions {
        /// The organisation, or `None` for all.
        org_id: Option<i64>,
    },
    /// List an organisation's assets (vehicles, satellite phones, radios).
    ViewAssets {
        /// The organisation.
        org_id: i64,
    },
    /// Create, change or deactivate an organisation's assets.
    ManageAssets {
        /// The organisation.
        org_id: i64,
    },
    /// List the device credentials issued for an organisation's trackers (never their secrets).
    ViewDevices {
        /// The organisation.
        org_id: i64,
    },
    /// Issue or revoke a device credential for a person or asset of an organisation.
    ManageDevices {
        /// The organisation.
        org_id: i64,
    },
    /// Send an alert reaching people of `org_id`; `granted`: a system admin has allowed the
    /// sender to alert that organisation.
    SendAlert {
        /// An organisation the alert reaches.
        org_id: i64,
        /// The sender holds a broadcast grant for it.
        granted: bool,
    },
    /// Start a roll-call reaching people of `org_id`; `granted` as for [`Action::SendAlert`].
    StartRollcall {
        /// An organisation the roll-call reaches.
        org_id: i64,
        /// The starter holds a broadcast grant for it.
        granted: bool,
    },
    /// Follow an organisation's roll-calls and their boards (`None`: every organisation).
    ViewRollcalls {
        /// The organisation, or `None` for all.
        org_id: Option<i64>,
    },
    /// Run an organisation's roll-call: mark people accounted for, remind, close.
    RunRollcall {
        /// The roll-call's organisation.
        org_id: i64,
    },
    /// See an organisation's SOS cases (`None`: every organisation).
    ViewSos {
        /// The organisation, or `None` for all.
        org_id: Option<i64>,
    },
    /// Claim, annotate and close an organisation's SOS cases.
    HandleSos {
        /// The case's organisation.
        org_id: i64,
    },
    /// Let an adviser alert organisations beyond their own.
    GrantBroadcast,
    /// Read an organisation's alerts and their delivery ledgers (`None`: every organisation).
    ViewAlerts {
        /// The organisation, or `None` for all.
        org_id: Option<i64>,
    },
    /// Create, change or delete an organisation's alert templates.
    ManageAlertTemplates {
        /// The organisation.
        org_id: i64,
    },
    /// Register, list or remove the web-push subscriptions that wake a person's devices.
    ManagePushSubscriptions {
        /// The person.
        user_id: i64,
    },
    /// Read a conversation (an SOS chat or a crisis channel) and who takes part in it.
    ReadConversation {
        /// The conversation's organisation.
        org_id: i64,
        /// It is an SOS case's chat.
        sos: bool,
        /// The actor is a listed member.
        member: bool,
    },
    /// Write in a conversation: messages, receipts, typing.
    WriteConversation {
        /// The conversation's organisation.
        org_id: i64,
        /// It is an SOS case's chat.
        sos: bool,
        /// The actor is a listed member.
        member: bool,
    },
    /// Open an organisation's crisis channels, change their members, close them.
    ManageConversations {
        /// The organisation.
        org_id: i64,
    },
    /// List every conversation of an organisation, not just one's own.
    ListConversations {
        /// The organisation.
        org_id: i64,
    },
    /// List every organisation, not just one's own.
    ListOrganisations,
    /// Follow the WebSocket positions feed: live positions and geofence events of an
    /// organisation's people and assets (`None`: every organisation).
    WatchPositions {
        /// The organisation, or `None` for all.
        org_id: Option<i64>,
    },
    /// Follow the WebSocket operations feed: delivery counts of an organisation's alerts and
    /// its live roll-call boards (`None`: every organisation).
    WatchOperations {
        /// The organisation, or `None` for all.
        org_id: Option<i64>,
    },
}

impl Action {
    /// Following the WebSocket `topic` of `org_id` (`None`: every organisation): each topic is
    /// an action of its own, never one borrowed from a REST read.
    pub fn watch(topic: Topic, org_id: Option<i64>) -> Action {
        match topic {
            Topic::Positions => Action::WatchPositions { org_id },
            Topic::Operations => Action::WatchOperations { org_id },
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub &'static str);

impl From<Denied> for AppError {
    fn from(d: Denied) -> Self {
        AppError::Forbidden(d.0.to_string())
    }
}

/// Which organisation a listing shows: the one asked for, else every one for those who may see
/// all, else the caller's own; refused when the caller may not see that. `view` builds the
/// listing's action from an organisation (`None`: all).
pub fn listing_scope(
    actor: &Actor,
    requested: Option<i64>,
    view: impl Fn(Option<i64>) -> Action,
) -> Result<Option<i64>, Denied> {
    let org = match requested {
        Some(o) => Some(o),
        None if authorize(actor, view(None)).is_ok() => None,
        None => Some(actor.org_id),
    };
    authorize(actor, view(org))?;
    Ok(org)
}

/// Decides whether `actor` may perform `action`.
pub fn authorize(actor: &Actor, action: Action) -> Result<(), Denied> {
    if allows(actor, action) {
        Ok(())
    } else {
        Err(Denied(reason(action)))
    }
}

fn allows(actor: &Actor, action: Action) -> bool {
    use Action::*;
    if actor.system_admin {
        return true;
    }
    match action {
        CreateOrganisation | ManageDutyStations | GrantBroadcast => false,
        ListOrganisations => actor.oversees(),
        ViewOrganisation { org_id } => actor.org_id == org_id || actor.oversees(),
        ListPersonnel { .. } | ViewOrgReports { .. } if actor.oversees() => true,
        ListPersonnel { org_id } => {
            actor.org_id == org_id
                && actor.has_any(&[Role::Operator, Role::Adviser, Role::OrgAdmin])
        }
        ViewOrgReports { org_id } => actor.manages(org_id),
        ViewPerson { org_id, user_id } => {
            actor.user_id == user_id
                || actor.oversees()
                || (actor.org_id == org_id
                    && actor.has_any(&[Role::Operator, Role::Adviser, Role::OrgAdmin]))
        }
        ManagePersonnel { org_id } => actor.manages(org_id),
        ManageAccount { org_id, privileged } => !privileged && actor.manages(org_id),
        AssignRole { org_id, role } => role != Role::Oversight && actor.manages(org_id),
        ViewAreas => true,
        ManageArea { org_id: Some(org) } => actor.org_id == org && actor.has(Role::Adviser),
        ManageArea { org_id: None } => false,
        ViewPositions { .. } if actor.oversees() => true,
        ViewPositions { org_id: Some(org) } => {
            actor.org_id == org && actor.has_any(&[Role::Operator, Role::Adviser, Role::OrgAdmin])
        }
        ViewPositions { org_id: None } => false,
        // Advisers alert their own organisation; beyond it only where a system admin granted.
        // Oversight reads every alert but sends none.
        SendAlert { org_id, granted } => {
            actor.has(Role::Adviser) && (actor.org_id == org_id || granted)
        }
        StartRollcall { org_id, granted } => {
            actor.has_any(&[Role::Operator, Role::Adviser]) && (actor.org_id == org_id || granted)
        }
        RunRollcall { org_id } => {
            actor.org_id == org_id && actor.has_any(&[Role::Operator, Role::Adviser])
        }
        ViewRollcalls { .. } | ViewSos { .. } if actor.oversees() => true,
        ViewRollcalls { org_id: Some(org) } => {
            actor.org_id == org && actor.has_any(&[Role::Operator, Role::Adviser, Role::OrgAdmin])
        }
        // SOS cases carry a person's position and words in distress: the operations room
        // (operators) and oversight see them, not every adviser or admin.
        ViewSos { org_id: Some(org) } | HandleSos { org_id: org } => {
            actor.org_id == org && actor.has(Role::Operator)
        }
        ViewRollcalls { org_id: None } | ViewSos { org_id: None } => false,
        ViewAlerts { .. } if actor.oversees() => true,
        ViewAlerts { org_id: Some(org) } => {
            actor.org_id == org && actor.has_any(&[Role::Operator, Role::Adviser, Role::OrgAdmin])
        }
        ViewAlerts { org_id: None } => false,
        ManageAlertTemplates { org_id } => actor.org_id == org_id && actor.has(Role::Adviser),
        ViewAssets { .. } | ViewDevices { .. } if actor.oversees() => true,
        ViewAssets { org_id } => {
            actor.org_id == org_id
                && actor.has_any(&[Role::Operator, Role::Adviser, Role::OrgAdmin])
        }
        // Operators dispatch vehicles and hand out trackers day to day; org admins own the
        // inventory. Advisers draw areas and alert, which needs neither.
        ManageAssets { org_id } | ViewDevices { org_id } | ManageDevices { org_id } => {
            actor.org_id == org_id && actor.has_any(&[Role::Operator, Role::OrgAdmin])
        }
        // A subscription decides which device shows a person's alerts: only that person.
        ManagePushSubscriptions { user_id } => actor.user_id == user_id,
        // Members take part; an SOS chat also has its organisation's operators, so any
        // operator on duty sees a new case at once. Oversight reads every conversation and
        // writes only where listed.
        ReadConversation {
            org_id,
            sos,
            member,
        } => {
            member
                || actor.oversees()
                || (sos && actor.org_id == org_id && actor.has(Role::Operator))
        }
        WriteConversation {
            org_id,
            sos,
            member,
        } => member || (sos && actor.org_id == org_id && actor.has(Role::Operator)),
        ManageConversations { org_id } => {
            actor.org_id == org_id && actor.has_any(&[Role::Operator, Role::Adviser])
        }
        ListConversations { .. } => actor.oversees(),
        // A feed carries what the REST reads show, live: it is allowed to whoever may make
        // every read it carries.
        WatchPositions { org_id } => allows(actor, ViewPositions { org_id }),
        WatchOperations { org_id } => {
            allows(actor, ViewAlerts { org_id }) && allows(actor, ViewRollcalls { org_id })
        }
    }
}

fn reason(action: Action) -> &'static str {
    use Action::*;
    match action {
        CreateOrganisation => "only a system admin creates organisations",
        ManageDutyStations => "only a system admin manages duty stations",
        GrantBroadcast => "only a system admin lets advisers alert other organisations",
        ViewOrganisation { .. } => "you may only see your own organisation",
        ListPersonnel { .. } => {
            "listing personnel needs the operator, adviser or org_admin role in that organisation"
        }
        ViewPerson { .. } => "you may not see this person's profile",
        ManagePersonnel { .. }
        | ManageAccount {
            privileged: false, ..
        } => "managing personnel needs the org_admin role in that organisation",
        ManageAccount { .. } => {
            "the account of a system admin or an oversight officer is changed only by a system admin"
        }
        AssignRole {
            role: Role::Oversight,
            ..
        } => "the oversight role is granted only by a system admin",
        AssignRole { .. } => "assigning roles needs the org_admin role in that organisation",
        ViewOrgReports { .. } => "reports need the org_admin role in that organisation",
        ViewAreas => "you may not see areas",
        ManageArea { org_id: None } => "shared areas are managed by a system admin",
        ManageArea { .. } => "managing areas needs the adviser role in the area's organisation",
        ViewPositions { org_id: None } => {
            "seeing every organisation's positions needs the oversight role"
        }
        ViewPositions { .. } => {
            "positions are seen by the operator, adviser or org_admin roles of that organisation"
        }
        SendAlert { .. } => {
            "sending alerts needs the adviser role, and alerting another organisation a grant from a system admin"
        }
        StartRollcall { .. } => {
            "starting roll-calls needs the operator or adviser role, and reaching another organisation a grant from a system admin"
        }
        RunRollcall { .. } => {
            "running a roll-call needs the operator or adviser role in its organisation"
        }
        ViewRollcalls { org_id: None } | ViewSos { org_id: None } => {
            "seeing every organisation's roll-calls and SOS cases needs the oversight role"
        }
        ViewRollcalls { .. } => {
            "roll-calls are seen by the operator, adviser or org_admin roles of that organisation"
        }
        ViewSos { .. } | HandleSos { .. } => {
            "SOS cases are handled by the operators of the person's organisation"
        }
        ViewAlerts { org_id: None } => {
            "seeing every organisation's alerts needs the oversight role"
        }
        ViewAlerts { .. } => {
            "alerts are seen by the operator, adviser or org_admin roles of that organisation"
        }
        ManageAlertTemplates { .. } => {
            "managing alert templates needs the adviser role in that organisation"
        }
        ViewAssets { .. } => {
            "assets are seen by the operator, adviser or org_admin roles of that organisation"
        }
        ManageAssets { .. } => {
            "managing assets needs the operator or org_admin role in that organisation"
        }
        ViewDevices { .. } => {
            "device credentials are seen by the operator or org_admin roles of that organisation"
        }
        ManageDevices { .. } => {
            "issuing or revoking device credentials needs the operator or org_admin role in that organisation"
        }
        ManagePushSubscriptions { .. } => "you may only manage your own push subscriptions",
        ReadConversation { .. } => {
            "you do not take part in this conversation: its members, and for an SOS chat its organisation's operators, do"
        }
        WriteConversation { .. } => {
            "only members, and for an SOS chat its organisation's operators, write in this conversation"
        }
        ManageConversations { .. } => {
            "managing crisis channels needs the operator or adviser role in that organisation"
        }
        ListConversations { .. } => {
            "listing every conversation of an organisation needs the oversight role"
        }
        ListOrganisations => "listing every organisation needs the oversight role",
        WatchPositions { org_id: None } => {
            "following every organisation's live positions needs the oversight role"
        }
        WatchPositions { .. } => {
            "live positions are followed by the operator, adviser or org_admin roles of that organisation"
        }
        WatchOperations { org_id: None } => {
            "following every organisation's operations needs the oversight role"
        }
        WatchOperations { .. } => {
            "an organisation's operations (alert delivery, roll-call boards) are followed by whoever sees both its alerts and its roll-calls"
        }
    }
}

/// The roles that reach something of an organisation by role alone, without being listed or
/// named: within that organisation, and in every organisation. Read off [`authorize`] by
/// asking it about one-role actors, so a query that binds these sets says what the policy
/// says. System admins are not a role: they may act anywhere but are found by no role set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReach {
    /// Roles that reach it in their own organisation.
    pub own_org: Vec<Role>,
    /// Roles that reach it in every organisation.
    pub every_org: Vec<Role>,
}

impl RoleReach {
    /// The reach of `action`, an action on the organisation it is given.
    pub fn of(action: impl Fn(i64) -> Action) -> RoleReach {
        // Ids no real organisation or person has: the probes are nobody in particular.
        const HOME: i64 = -1;
        const ELSEWHERE: i64 = -2;
        let allowed = |role: Role, org_id: i64| {
            let probe = Actor {
                user_id: i64::MIN,
                org_id,
                roles: vec![role],
                system_admin: false,
            };
            allows(&probe, action(HOME))
        };
        RoleReach {
            own_org: Role::ALL
                .into_iter()
                .filter(|r| allowed(*r, HOME))
                .collect(),
            every_org: Role::ALL
                .into_iter()
                .filter(|r| allowed(*r, ELSEWHERE))
                .collect(),
        }
    }

    /// Whether `actor`'s roles (not a system admin's standing) reach it in `org_id`.
    pub fn reaches(&self, actor: &Actor, org_id: i64) -> bool {
        actor.has_any(&self.every_org) || (actor.org_id == org_id && actor.has_any(&self.own_org))
    }

    /// Whether `actor`'s roles reach it in every organisation.
    pub fn reaches_every_org(&self, actor: &Actor) -> bool {
        actor.has_any(&self.every_org)
    }

    /// [`Self::own_org`] as a JSON array of role names, to bind into SQL.
    pub fn own_org_json(&self) -> String {
        role_names_json(&self.own_org)
    }

    /// [`Self::every_org`] as a JSON array of role names, to bind into SQL.
    pub fn every_org_json(&self) -> String {
        role_names_json(&self.every_org)
    }
}

fn role_names_json(roles: &[Role]) -> String {
    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())
}

/// The roles that receive an organisation's SOS cases as they open and change: those that
/// may see its cases (the operations room, oversight).
pub fn sos_receivers() -> &'static RoleReach {
    static REACH: LazyLock<RoleReach> =
        LazyLock::new(|| RoleReach::of(|org| Action::ViewSos { org_id: Some(org) }));
    &REACH
}

/// The roles that take part in an organisation's SOS chats without being listed: those that
/// may write in them unlisted (its operators). They get its messages and are shown among its
/// participants.
pub fn sos_chat_participants() -> &'static RoleReach {
    static REACH: LazyLock<RoleReach> = LazyLock::new(|| {
        RoleReach::of(|org| Action::WriteConversation {
            org_id: org,
            sos: true,
            member: false,
        })
    });
    &REACH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(org_id: i64, roles: &[Role]) -> Actor {
        Actor {
            user_id: 100 + org_id,
            org_id,
            roles: roles.to_vec(),
            system_admin: false,
        }
    }

    #[test]
    fn org_admin_cannot_grant_oversight_even_in_own_org() {
        let admin = actor(1, &[Role::OrgAdmin]);
        assert!(
            authorize(
                &admin,
                Action::AssignRole {
                    org_id: 1,
                    role: Role::Operator
                }
            )
            .is_ok()
        );
        assert!(
            authorize(
                &admin,
                Action::AssignRole {
                    org_id: 1,
                    role: Role::Oversight
                }
            )
            .is_err()
        );
        assert!(
            authorize(
                &admin,
                Action::AssignRole {
                    org_id: 2,
                    role: Role::Staff
                }
            )
            .is_err()
        );
    }

    #[test]
    fn oversight_reads_everywhere_and_changes_nothing() {
        let o = actor(1, &[Role::Oversight]);
        assert!(authorize(&o, Action::ListPersonnel { org_id: 2 }).is_ok());
        assert!(authorize(&o, Action::ViewOrgReports { org_id: 2 }).is_ok());
        assert!(authorize(&o, Action::ManagePersonnel { org_id: 2 }).is_err());
        assert!(authorize(&o, Action::ManagePersonnel { org_id: 1 }).is_err());
        assert!(authorize(&o, Action::ManageArea { org_id: Some(1) }).is_err());
    }

    #[test]
    fn staff_see_only_themselves() {
        let s = actor(1, &[Role::Staff]);
        let me = Action::ViewPerson {
            org_id: 1,
            user_id: s.user_id,
        };
        let colleague = Action::ViewPerson {
            org_id: 1,
            user_id: 999,
        };
        assert!(authorize(&s, me).is_ok());
        assert!(authorize(&s, colleague).is_err());
        assert!(authorize(&s, Action::ListPersonnel { org_id: 1 }).is_err());
    }

    #[test]
    fn operators_and_org_admins_manage_their_own_assets_and_devices() {
        for roles in [[Role::Operator], [Role::OrgAdmin]] {
            let a = actor(1, &roles);
            for action in [
                Action::ManageAssets { org_id: 1 },
                Action::ManageDevices { org_id: 1 },
                Action::ViewDevices { org_id: 1 },
            ] {
                assert!(authorize(&a, action).is_ok());
            }
            assert!(authorize(&a, Action::ManageDevices { org_id: 2 }).is_err());
            assert!(authorize(&a, Action::ManageAssets { org_id: 2 }).is_err());
        }
        let adviser = actor(1, &[Role::Adviser]);
        assert!(authorize(&adviser, Action::ViewAssets { org_id: 1 }).is_ok());
        assert!(authorize(&adviser, Action::ManageAssets { org_id: 1 }).is_err());
        assert!(authorize(&adviser, Action::ManageDevices { org_id: 1 }).is_err());
        let o = actor(1, &[Role::Oversight]);
        assert!(authorize(&o, Action::ViewAssets { org_id: 2 }).is_ok());
        assert!(authorize(&o, Action::ViewDevices { org_id: 2 }).is_ok());
        assert!(authorize(&o, Action::ManageDevices { org_id: 2 }).is_err());
        let s = actor(1, &[Role::Staff]);
        assert!(authorize(&s, Action::ViewAssets { org_id: 1 }).is_err());
    }

    #[test]
    fn the_role_sets_queries_bind_are_the_policys() {
        assert_eq!(
            *sos_receivers(),
            RoleReach {
                own_org: vec![Role::Operator, Role::Oversight],
                every_org: vec![Role::Oversight],
            }
        );
        assert_eq!(
            *sos_chat_participants(),
            RoleReach {
                own_org: vec![Role::Operator],
                every_org: vec![],
            }
        );
    }

    /// Queries find people holding any one role of a set; that equals the policy only while
    /// no rule needs two roles together. Checked for every combination of roles.
    #[test]
    fn a_role_set_reaches_exactly_who_the_policy_allows_whatever_roles_they_combine() {
        type Probe = fn(i64) -> Action;
        let reaches: [(&str, &RoleReach, Probe); 2] = [
            ("sos receivers", sos_receivers(), |org| Action::ViewSos {
                org_id: Some(org),
            }),
            ("sos chat participants", sos_chat_participants(), |org| {
                Action::WriteConversation {
                    org_id: org,
                    sos: true,
                    member: false,
                }
            }),
        ];
        for (name, reach, action) in reaches {
            for mask in 0u32..(1 << Role::ALL.len()) {
                let roles: Vec<Role> = Role::ALL
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, r)| r)
                    .collect();
                for home in [1, 2] {
                    let a = actor(home, &roles);
                    assert_eq!(
                        reach.reaches(&a, 1),
                        authorize(&a, action(1)).is_ok(),
                        "{name}: {roles:?} of organisation {home}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_topic_has_its_own_action_and_needs_every_read_it_carries() {
        for roles in [
            vec![],
            vec![Role::Staff],
            vec![Role::Operator],
            vec![Role::Adviser],
            vec![Role::OrgAdmin],
            vec![Role::Oversight],
        ] {
            for org in [Some(1), Some(2), None] {
                let a = actor(1, &roles);
                let may = |action| authorize(&a, action).is_ok();
                for topic in Topic::ALL {
                    let reads = match topic {
                        Topic::Positions => may(Action::ViewPositions { org_id: org }),
                        Topic::Operations => {
                            may(Action::ViewAlerts { org_id: org })
                                && may(Action::ViewRollcalls { org_id: org })
                        }
                    };
                    assert_eq!(
                        may(Action::watch(topic, org)),
                        reads,
                        "{topic:?} {roles:?} {org:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
