//! The UN security levels and the kinds of area.

use serde::{Deserialize, Serialize};

/// UN Security Level System level, 1 (minimal) to 6 (extreme); serialised as the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub enum SecurityLevel {
    /// 1 — minimal.
    Minimal = 1,
    /// 2 — low.
    Low = 2,
    /// 3 — moderate.
    Moderate = 3,
    /// 4 — substantial.
    Substantial = 4,
    /// 5 — high.
    High = 5,
    /// 6 — extreme.
    Extreme = 6,
}

impl SecurityLevel {
    /// Every level, lowest first.
    pub const ALL: [SecurityLevel; 6] = [
        Self::Minimal,
        Self::Low,
        Self::Moderate,
        Self::Substantial,
        Self::High,
        Self::Extreme,
    ];

    /// The level's number, 1..=6.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// The level's English name as the UN system writes it ("minimal" … "extreme").
    pub fn name(self) -> &'static str {
        match self {
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Moderate => "moderate",
            Self::Substantial => "substantial",
            Self::High => "high",
            Self::Extreme => "extreme",
        }
    }
}

/// A number outside 1..=6 given as a security level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("security level {0} is not in 1..=6")]
pub struct InvalidSecurityLevel(pub i64);

impl TryFrom<i64> for SecurityLevel {
    type Error = InvalidSecurityLevel;

    fn try_from(n: i64) -> Result<Self, Self::Error> {
        match n {
            1..=6 => Ok(Self::ALL[(n - 1) as usize]),
            _ => Err(InvalidSecurityLevel(n)),
        }
    }
}

impl From<SecurityLevel> for i64 {
    fn from(level: SecurityLevel) -> i64 {
        level.as_i64()
    }
}

/// What an area is; serialised in snake_case (`security_area`, `ad_hoc`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AreaKind {
    /// A whole country.
    Country,
    /// A security area inside a country, carrying a security level.
    SecurityArea,
    /// A duty station (a town or compound where staff are posted).
    DutyStation,
    /// A building or compound of the organisation.
    Premises,
    /// Where staff gather in an emergency.
    AssemblyPoint,
    /// Drawn on the spot, usually for one alert.
    AdHoc,
}

impl AreaKind {
    /// Every kind, in declaration order.
    pub const ALL: [AreaKind; 6] = [
        Self::Country,
        Self::SecurityArea,
        Self::DutyStation,
        Self::Premises,
        Self::AssemblyPoint,
        Self::AdHoc,
    ];

    /// The snake_case name used in GeoJSON and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::SecurityArea => "security_area",
            Self::DutyStation => "duty_station",
            Self::Premises => "premises",
            Self::AssemblyPoint => "assembly_point",
            Self::AdHoc => "ad_hoc",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_as_numbers() {
        for n in 1..=6 {
            let level = SecurityLevel::try_from(n).expect("valid level");
            assert_eq!(level.as_i64(), n);
            assert_eq!(serde_json::to_string(&level).expect("json"), n.to_string());
        }
        assert_eq!(SecurityLevel::try_from(7), Err(InvalidSecurityLevel(7)));
        assert!(serde_json::from_str::<SecurityLevel>("0").is_err());
        assert!(SecurityLevel::Extreme > SecurityLevel::High);
    }

    #[test]
    fn kinds_are_snake_case() {
        for kind in AreaKind::ALL {
            let json = serde_json::to_string(&kind).expect("json");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(AreaKind::parse(kind.as_str()), Some(kind));
        }
    }
}
