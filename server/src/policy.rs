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
//!   device credentials; advisers also see its assets.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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

/// Decides whether `actor` may perform `action`.
pub fn authorize(actor: &Actor, action: Action) -> Result<(), Denied> {
    use Action::*;
    if actor.system_admin {
        return Ok(());
    }
    let allowed = match action {
        CreateOrganisation | ManageDutyStations => false,
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
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied(reason(action)))
    }
}

fn reason(action: Action) -> &'static str {
    use Action::*;
    match action {
        CreateOrganisation => "only a system admin creates organisations",
        ManageDutyStations => "only a system admin manages duty stations",
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
    }
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
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("admin"), None);
    }
}
