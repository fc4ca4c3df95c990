//! OASIS CAP 1.2 (Common Alerting Protocol): the vocabulary alerts are described in, a typed
//! model of a CAP message, reading foreign CAP documents ([`parse`], with the CAP 1.2 rules
//! checked by [`validate`]) and writing Vigil's alerts as CAP XML ([`to_xml`]) and an Atom index
//! ([`atom_feed`]). Pure functions: no I/O, no database; the alerts module wires the routes.
//!
//! # Why our own model over `roxmltree`, not a CAP crate
//! The one CAP 1.2 crate worth a look, `oasiscap` (MIT/Apache-2.0, edition 2021), was judged
//! and not taken: its latest release, 0.2.0, dates from early 2022; it is built on `chrono` (we
//! use `time`), on `xml_serde`/`xml-rs` and `thiserror` 1; its errors are serde messages that
//! do not name the element at fault (our 422 must say `info[0].area[1].polygon[0]`), and it
//! cannot tell us what it tolerated. What CAP needs beyond XML is small and specific (enumerations, times with
//! offsets, `lat,lon` points, kilometre radii, group lists), so we read with `roxmltree` — a
//! read-only, namespace-aware DOM with no dependencies that refuses DTDs by default (no XXE, no
//! billion laughs) and bounds its node count — into the model below, and write the flat CAP
//! shape by hand with escaping that also survives `\r` (see the `write` submodule).
//!
//! # What is checked, and where we are lenient
//! Required elements, enumerations (case-sensitive, as in the schema), repeated singletons,
//! unknown elements in the CAP namespace, `identifier`/`sender` syntax, every time, polygons
//! (at least 4 `lat,lon` pairs, first = last, in range), circles (`lat,lon radius`, radius in
//! kilometres, non-negative), `references` triples (required for Update, Cancel, Ack, Error),
//! `restriction` for Restricted and `addresses` for Private scope, `ceiling` only with
//! `altitude`, `language` per RFC 3066, `web` an absolute URI. Lenient on purpose, because
//! rejecting a genuine warning from a national system over cosmetics helps nobody:
//! - a time written with `Z` or fractional seconds is read (the instant is unambiguous; CAP 1.2
//!   says `-00:00`, and that is what we write). A time *without* an offset is refused: its
//!   instant is unknown.
//! - element order is not enforced (it carries no meaning); elements of other namespaces (an
//!   XML signature, profile extensions) are ignored; surrounding whitespace of every value is
//!   dropped, and an empty optional element counts as absent.
//! - the document may be UTF-8 (with or without BOM) or declare ISO-8859-1.
//!
//! The model keeps coordinates as `geo` types with x = longitude, y = latitude (CAP writes
//! `lat,lon`), circle radii in metres (CAP writes kilometres), and times as
//! [`OffsetDateTime`] with the sender's offset preserved. CAP times have whole seconds:
//! [`to_xml`] drops sub-second parts.

mod parse;
mod write;

#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, UtcOffset};
use utoipa::ToSchema;

pub use parse::{parse, validate};
pub use write::{FeedEntry, atom_feed, to_xml};

/// The XML namespace of CAP 1.2.
pub const NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// The media type of a CAP document, for `Content-Type` and the Atom index's links.
pub const MEDIA_TYPE: &str = "application/cap+xml";

/// The largest CAP document [`parse`] reads. Real alerts are a few to a few tens of kilobytes;
/// the limit leaves room for embedded resources (`derefUri`) without letting a client make us
/// build a huge tree.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Defines CAP's spelling of a vocabulary enum, both ways.
macro_rules! cap_spelling {
    ($ty:ident { $($variant:ident => $cap:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order the CAP 1.2 specification lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The value as CAP spells it (for example `Extreme`, `CBRNE`).
            pub fn as_cap(self) -> &'static str {
                match self {
                    $($ty::$variant => $cap),+
                }
            }

            /// Reads CAP's spelling; case-sensitive, as the CAP schema is.
            pub fn from_cap(value: &str) -> Option<Self> {
                match value {
                    $($cap => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl parse::Vocabulary for $ty {
            fn from_cap(value: &str) -> Option<Self> {
                $ty::from_cap(value)
            }
            fn spellings() -> Vec<&'static str> {
                $ty::ALL.iter().map(|v| v.as_cap()).collect()
            }
        }
    };
}

/// How bad it is (CAP `severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Extraordinary threat to life or property.
    Extreme,
    /// Significant threat to life or property.
    Severe,
    /// Possible threat to life or property.
    Moderate,
    /// Minimal to no known threat.
    Minor,
    /// Not known.
    Unknown,
}

cap_spelling!(Severity {
    Extreme => "Extreme",
    Severe => "Severe",
    Moderate => "Moderate",
    Minor => "Minor",
    Unknown => "Unknown",
});

/// How soon to act (CAP `urgency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Act now.
    Immediate,
    /// Act soon (within the next hour).
    Expected,
    /// Act in the near future.
    Future,
    /// No longer required.
    Past,
    /// Not known.
    Unknown,
}

cap_spelling!(Urgency {
    Immediate => "Immediate",
    Expected => "Expected",
    Future => "Future",
    Past => "Past",
    Unknown => "Unknown",
});

/// How sure the sender is (CAP `certainty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Certainty {
    /// Determined to have occurred or to be ongoing.
    Observed,
    /// Likely (p > ~50%).
    Likely,
    /// Possible but not likely (p <= ~50%).
    Possible,
    /// Not expected to occur.
    Unlikely,
    /// Not known.
    Unknown,
}

cap_spelling!(Certainty {
    Observed => "Observed",
    Likely => "Likely",
    Possible => "Possible",
    Unlikely => "Unlikely",
    Unknown => "Unknown",
});

/// What the alert is about (CAP `category`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Geophysical (landslide, earthquake).
    Geo,
    /// Meteorological (flood, storm).
    Met,
    /// General emergency and public safety.
    Safety,
    /// Law enforcement, military, homeland and local/private security.
    Security,
    /// Rescue and recovery.
    Rescue,
    /// Fire suppression and rescue.
    Fire,
    /// Medical and public health.
    Health,
    /// Pollution and other environmental.
    Env,
    /// Public and private transportation.
    Transport,
    /// Utility, telecommunication, other non-transport infrastructure.
    Infra,
    /// Chemical, biological, radiological, nuclear or high-yield explosive.
    Cbrne,
    /// Other events.
    Other,
}

cap_spelling!(Category {
    Geo => "Geo",
    Met => "Met",
    Safety => "Safety",
    Security => "Security",
    Rescue => "Rescue",
    Fire => "Fire",
    Health => "Health",
    Env => "Env",
    Transport => "Transport",
    Infra => "Infra",
    Cbrne => "CBRNE",
    Other => "Other",
});

/// How the message is meant to be handled (CAP `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Actionable by all targeted recipients.
    Actual,
    /// Actionable only by designated exercise participants.
    Exercise,
    /// For messages that support alert network internal functions.
    System,
    /// Technical testing only; all recipients disregard.
    Test,
    /// A preliminary template or draft, not actionable in its current form.
    Draft,
}

cap_spelling!(Status {
    Actual => "Actual",
    Exercise => "Exercise",
    System => "System",
    Test => "Test",
    Draft => "Draft",
});

/// What kind of message it is (CAP `msgType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    /// Initial information requiring attention by targeted recipients.
    Alert,
    /// Updates and supersedes the earlier message(s) in `references`.
    Update,
    /// Cancels the earlier message(s) in `references`.
    Cancel,
    /// Acknowledges receipt and acceptance of the message(s) in `references`.
    Ack,
    /// Rejects the message(s) in `references`.
    Error,
}

cap_spelling!(MsgType {
    Alert => "Alert",
    Update => "Update",
    Cancel => "Cancel",
    Ack => "Ack",
    Error => "Error",
});

impl MsgType {
    /// Whether CAP requires `references` for this type (it acts on earlier messages).
    pub fn needs_references(self) -> bool {
        !matches!(self, MsgType::Alert)
    }
}

/// Who the message is for (CAP `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// General dissemination to unrestricted audiences.
    Public,
    /// Users with a known operational requirement (see `restriction`).
    Restricted,
    /// Specified addresses only (see `addresses`).
    Private,
}

cap_spelling!(Scope {
    Public => "Public",
    Restricted => "Restricted",
    Private => "Private",
});

/// What the audience should do (CAP `responseType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    /// Take shelter in place.
    Shelter,
    /// Relocate.
    Evacuate,
    /// Make preparations.
    Prepare,
    /// Execute a pre-planned activity.
    Execute,
    /// Avoid the subject event.
    Avoid,
    /// Attend to information sources.
    Monitor,
    /// Evaluate the information in this message (not for public warnings).
    Assess,
    /// The subject event no longer poses a threat.
    AllClear,
    /// No action recommended.
    None,
}

cap_spelling!(ResponseType {
    Shelter => "Shelter",
    Evacuate => "Evacuate",
    Prepare => "Prepare",
    Execute => "Execute",
    Avoid => "Avoid",
    Monitor => "Monitor",
    Assess => "Assess",
    AllClear => "AllClear",
    None => "None",
});

/// One CAP message (`<alert>`).
#[derive(Debug, Clone, PartialEq)]
pub struct CapAlert {
    /// The sender's id for this message; with `sender` it identifies the message.
    pub identifier: String,
    /// Who sent it (often an e-mail address or `urn:oid:`).
    pub sender: String,
    /// When it was sent, with the sender's UTC offset.
    pub sent: OffsetDateTime,
    /// Actual, Exercise, System, Test or Draft.
    pub status: Status,
    /// Alert, Update, Cancel, Ack or Error.
    pub msg_type: MsgType,
    /// The particular source (an operator, a system).
    pub source: Option<String>,
    /// Public, Restricted or Private.
    pub scope: Scope,
    /// Who may see a Restricted message.
    pub restriction: Option<String>,
    /// The recipients of a Private message.
    pub addresses: Vec<String>,
    /// Special handling codes (profiles such as `IPAWSv1.0`).
    pub codes: Vec<String>,
    /// Free-text note (why an Exercise, what an Error rejects).
    pub note: Option<String>,
    /// Earlier messages this one updates, cancels, acknowledges or rejects.
    pub references: Vec<CapReference>,
    /// Names of incidents this message belongs to.
    pub incidents: Vec<String>,
    /// The information blocks, typically one per language.
    pub infos: Vec<CapInfo>,
}

impl CapAlert {
    /// The reference another message would use to name this one.
    pub fn reference(&self) -> CapReference {
        CapReference {
            sender: self.sender.clone(),
            identifier: self.identifier.clone(),
            sent: self.sent,
        }
    }
}

/// An earlier message named in `references` (`sender,identifier,sent`).
#[derive(Debug, Clone, PartialEq)]
pub struct CapReference {
    /// The earlier message's sender.
    pub sender: String,
    /// The earlier message's identifier.
    pub identifier: String,
    /// The earlier message's `sent` time.
    pub sent: OffsetDateTime,
}

impl fmt::Display for CapReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.sender,
            self.identifier,
            format_time(self.sent)
        )
    }
}

/// One `<info>` block: the event in one language.
#[derive(Debug, Clone, PartialEq)]
pub struct CapInfo {
    /// RFC 3066 language code; CAP's default is `en-US`.
    pub language: String,
    /// At least one category.
    pub categories: Vec<Category>,
    /// The kind of event (`Tornado Warning`, `Armed clash`).
    pub event: String,
    /// What the audience should do.
    pub response_types: Vec<ResponseType>,
    /// How soon to act.
    pub urgency: Urgency,
    /// How bad it is.
    pub severity: Severity,
    /// How sure the sender is.
    pub certainty: Certainty,
    /// Intended audience, free text.
    pub audience: Option<String>,
    /// System-specific event codes (`SAME` = `TOR`).
    pub event_codes: Vec<(String, String)>,
    /// When the information takes effect (default: `sent`).
    pub effective: Option<OffsetDateTime>,
    /// When the event is expected to begin.
    pub onset: Option<OffsetDateTime>,
    /// When the information stops being valid.
    pub expires: Option<OffsetDateTime>,
    /// Human-readable name of the issuing agency.
    pub sender_name: Option<String>,
    /// Short headline.
    pub headline: Option<String>,
    /// What is happening.
    pub description: Option<String>,
    /// What to do.
    pub instruction: Option<String>,
    /// An absolute URI with more information.
    pub web: Option<String>,
    /// How to reach the sender.
    pub contact: Option<String>,
    /// System-specific parameters (`valueName` = `value`).
    pub parameters: Vec<(String, String)>,
    /// Attached or linked files (maps, audio).
    pub resources: Vec<CapResource>,
    /// Where it applies.
    pub areas: Vec<CapArea>,
}

impl CapInfo {
    /// A block with the required elements and nothing else; language `en-US`.
    pub fn new(
        categories: Vec<Category>,
        event: impl Into<String>,
        urgency: Urgency,
        severity: Severity,
        certainty: Certainty,
    ) -> Self {
        CapInfo {
            language: DEFAULT_LANGUAGE.to_owned(),
            categories,
            event: event.into(),
            response_types: Vec::new(),
            urgency,
            severity,
            certainty,
            audience: None,
            event_codes: Vec::new(),
            effective: None,
            onset: None,
            expires: None,
            sender_name: None,
            headline: None,
            description: None,
            instruction: None,
            web: None,
            contact: None,
            parameters: Vec::new(),
            resources: Vec::new(),
            areas: Vec::new(),
        }
    }
}

/// CAP's default `language`.
pub const DEFAULT_LANGUAGE: &str = "en-US";

/// A file that goes with an `<info>` (`<resource>`).
#[derive(Debug, Clone, PartialEq)]
pub struct CapResource {
    /// What the file is.
    pub desc: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size in bytes.
    pub size: Option<u64>,
    /// Where to get it.
    pub uri: Option<String>,
    /// The file itself, base64, when embedded.
    pub deref_uri: Option<String>,
    /// SHA-1 of the file, hex.
    pub digest: Option<String>,
}

/// Where an `<info>` applies (`<area>`).
#[derive(Debug, Clone, PartialEq)]
pub struct CapArea {
    /// Human-readable description of the area.
    pub desc: String,
    /// Polygons (x = longitude, y = latitude; exterior ring only, closed).
    pub polygons: Vec<geo::Polygon<f64>>,
    /// Circles.
    pub circles: Vec<CapCircle>,
    /// System-specific area codes (`SAME` = `006037`).
    pub geocodes: Vec<(String, String)>,
    /// Lowest altitude, in feet above mean sea level (or the only one).
    pub altitude: Option<f64>,
    /// Highest altitude, in feet above mean sea level; only with `altitude`.
    pub ceiling: Option<f64>,
}

impl CapArea {
    /// An area with only a description.
    pub fn new(desc: impl Into<String>) -> Self {
        CapArea {
            desc: desc.into(),
            polygons: Vec::new(),
            circles: Vec::new(),
            geocodes: Vec::new(),
            altitude: None,
            ceiling: None,
        }
    }
}

/// A circle: CAP writes `lat,lon radius_km`; we keep metres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapCircle {
    /// Centre longitude, degrees.
    pub lon: f64,
    /// Centre latitude, degrees.
    pub lat: f64,
    /// Radius in metres.
    pub radius_m: f64,
}

/// Formats a time as CAP 1.2 wants it: `2026-11-22T14:05:00+03:00`, UTC as `-00:00` (the
/// specification forbids `Z` and asks for `-00:00`), whole seconds.
pub fn format_time(t: OffsetDateTime) -> String {
    // CAP offsets have whole minutes; an offset with seconds is written in UTC instead.
    let t = if t.offset().seconds_past_minute() != 0 {
        t.to_offset(UtcOffset::UTC)
    } else {
        t
    };
    let offset = t.offset();
    let minutes = offset.whole_minutes();
    let sign = if minutes > 0 { '+' } else { '-' };
    let minutes = minutes.unsigned_abs();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{sign}{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        minutes / 60,
        minutes % 60,
    )
}

/// Reads a CAP time. Strict form `YYYY-MM-DDThh:mm:ss±hh:mm`; leniently also `Z` and
/// fractional seconds (see the module documentation). The error is the reason, for an issue.
pub fn parse_time(value: &str) -> Result<OffsetDateTime, String> {
    parse::time(value)
}
