//! Reading a CAP 1.2 document into the model ([`parse`]) and the CAP 1.2 rules on the model
//! ([`validate`]). Issues name the element as a path of CAP names with 0-based indexes among
//! same-named siblings: `info[0].area[1].polygon[0]`.

use std::borrow::Cow;

use geo::{Coord, LineString, Polygon};
use roxmltree::{Document, Node, ParsingOptions};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::{
    CapAlert, CapArea, CapCircle, CapInfo, CapReference, CapResource, Category, Certainty,
    DEFAULT_LANGUAGE, MAX_DOCUMENT_BYTES, MsgType, NAMESPACE, ResponseType, Scope, Severity,
    Status, Urgency,
};
use crate::error::Issue;

/// A bound on the tree beside the byte limit: deeply repetitive input stays cheap.
const MAX_NODES: u32 = 200_000;
/// A response naming more issues than this helps nobody; the rest are counted.
const MAX_ISSUES: usize = 50;
/// Half the Earth's circumference: no circle on the Earth has a larger radius, so a bigger
/// value is almost certainly metres written where CAP wants kilometres.
const MAX_RADIUS_M: f64 = 20_037_508.0;

const ALERT_ELEMENTS: &[&str] = &[
    "identifier",
    "sender",
    "sent",
    "status",
    "msgType",
    "source",
    "scope",
    "restriction",
    "addresses",
    "code",
    "note",
    "references",
    "incidents",
    "info",
];
const INFO_ELEMENTS: &[&str] = &[
    "language",
    "category",
    "event",
    "responseType",
    "urgency",
    "severity",
    "certainty",
    "audience",
    "eventCode",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
    "parameter",
    "resource",
    "area",
];
const RESOURCE_ELEMENTS: &[&str] = &[
    "resourceDesc",
    "mimeType",
    "size",
    "uri",
    "derefUri",
    "digest",
];
const AREA_ELEMENTS: &[&str] = &[
    "areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling",
];
const PAIR_ELEMENTS: &[&str] = &["valueName", "value"];

/// A CAP enumeration, for reading it generically.
pub(super) trait Vocabulary: Sized {
    /// Reads CAP's spelling.
    fn from_cap(value: &str) -> Option<Self>;
    /// Every spelling, for the issue that lists them.
    fn spellings() -> Vec<&'static str>;
}

/// Reads a CAP 1.2 document, checking it against the CAP 1.2 rules (see the module
/// documentation for what is checked and where it is lenient). On failure, every issue found,
/// each naming the element (`info[0].area[1].polygon[0]`), a line (`line 3`) for XML that is
/// not well-formed, `alert` for the wrong root or namespace, or `document` for size, encoding
/// and DTDs.
pub fn parse(xml: &[u8]) -> Result<CapAlert, Vec<Issue>> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![Issue::new(
            "document",
            format!(
                "is {} bytes; a CAP document may have at most {MAX_DOCUMENT_BYTES}",
                xml.len()
            ),
        )]);
    }
    let text = decode(xml).map_err(|reason| vec![Issue::new("document", reason)])?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(&text, options).map_err(|e| vec![xml_issue(&e)])?;
    let mut reader = Reader::default();
    let alert = reader.alert(doc.root_element());
    let mut issues = reader.issues;
    if let Some(alert) = &alert {
        // The reader stands in placeholders where it found a problem; the rules would only
        // repeat it (an invalid polygon is also "too short"), so they speak where it did not.
        let found: Vec<String> = issues.iter().map(|i| i.at.clone()).collect();
        issues.extend(
            validate(alert)
                .into_iter()
                .filter(|rule| !found.iter().any(|at| covers(&rule.at, at))),
        );
    }
    match alert {
        Some(alert) if issues.is_empty() => Ok(alert),
        _ => Err(limit(issues)),
    }
}

/// The CAP 1.2 rules that concern values rather than XML: `identifier`/`sender` syntax,
/// `references` for Update/Cancel/Ack/Error, `restriction` and `addresses` for the scopes,
/// categories, languages, `web`, polygons, circles and altitudes. [`super::to_xml`] writes
/// valid CAP when this finds nothing.
pub fn validate(alert: &CapAlert) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut issue = |at: String, reason: String| issues.push(Issue::new(at, reason));
    if let Err(reason) = check_token(&alert.identifier) {
        issue("identifier".into(), reason);
    }
    if let Err(reason) = check_token(&alert.sender) {
        issue("sender".into(), reason);
    }
    if alert.scope == Scope::Restricted && alert.restriction.as_deref().is_none_or(str::is_empty) {
        issue(
            "restriction".into(),
            "is required when scope is Restricted: it says who may see the message".into(),
        );
    }
    if alert.scope == Scope::Private && alert.addresses.is_empty() {
        issue(
            "addresses".into(),
            "is required when scope is Private: it lists the recipients".into(),
        );
    }
    if alert.msg_type.needs_references() && alert.references.is_empty() {
        issue(
            "references".into(),
            format!(
                "is required when msgType is {}: it names the earlier message(s) as \
                 sender,identifier,sent",
                alert.msg_type.as_cap()
            ),
        );
    }
    for (i, reference) in alert.references.iter().enumerate() {
        for (what, value) in [
            ("sender", &reference.sender),
            ("identifier", &reference.identifier),
        ] {
            if let Err(reason) = check_token(value) {
                issue(
                    "references".into(),
                    format!("entry {}: its {what} {reason}", i + 1),
                );
            }
        }
    }
    for (name, group) in [
        ("addresses", &alert.addresses),
        ("incidents", &alert.incidents),
    ] {
        for entry in group {
            if entry.trim().is_empty() || entry.contains('"') {
                issue(
                    name.into(),
                    format!(
                        "entry '{entry}' cannot be written as a CAP group item (empty or has '\"')"
                    ),
                );
            }
        }
    }
    for (i, code) in alert.codes.iter().enumerate() {
        if code.trim().is_empty() {
            issue(format!("code[{i}]"), "is empty".into());
        }
    }
    for (i, info) in alert.infos.iter().enumerate() {
        validate_info(info, &format!("info[{i}]"), &mut issue);
    }
    issues
}

fn validate_info(info: &CapInfo, path: &str, issue: &mut impl FnMut(String, String)) {
    if !is_language(&info.language) {
        issue(
            format!("{path}.language"),
            format!(
                "'{}' is not an RFC 3066 language code such as en-US or fr",
                info.language
            ),
        );
    }
    if info.categories.is_empty() {
        issue(
            format!("{path}.category"),
            "is required (at least one)".into(),
        );
    }
    if info.event.trim().is_empty() {
        issue(format!("{path}.event"), "is required".into());
    }
    if let Some(web) = &info.web
        && !is_absolute_uri(web)
    {
        issue(
            format!("{path}.web"),
            format!("'{web}' is not an absolute URI (such as https://…)"),
        );
    }
    for (r, resource) in info.resources.iter().enumerate() {
        if resource.desc.trim().is_empty() {
            issue(
                format!("{path}.resource[{r}].resourceDesc"),
                "is required".into(),
            );
        }
        if resource.mime_type.trim().is_empty() {
            issue(
                format!("{path}.resource[{r}].mimeType"),
                "is required".into(),
            );
        }
    }
    for (a, area) in info.areas.iter().enumerate() {
        let path = format!("{path}.area[{a}]");
        if area.desc.trim().is_empty() {
            issue(format!("{path}.areaDesc"), "is required".into());
        }
        for (p, polygon) in area.polygons.iter().enumerate() {
            if let Err(reason) = check_polygon(polygon) {
                issue(format!("{path}.polygon[{p}]"), reason);
            }
        }
        for (c, circle) in area.circles.iter().enumerate() {
            if let Err(reason) = check_circle(circle) {
                issue(format!("{path}.circle[{c}]"), reason);
            }
        }
        for (name, value) in [("altitude", area.altitude), ("ceiling", area.ceiling)] {
            if value.is_some_and(|v| !v.is_finite()) {
                issue(format!("{path}.{name}"), "is not a number of feet".into());
            }
        }
        if area.ceiling.is_some() && area.altitude.is_none() {
            issue(
                format!("{path}.ceiling"),
                "needs altitude: CAP allows a ceiling only with an altitude".into(),
            );
        }
    }
}

fn check_polygon(polygon: &Polygon<f64>) -> Result<(), String> {
    let ring = &polygon.exterior().0;
    if ring.len() < 4 {
        return Err(format!(
            "has {} points; a CAP polygon needs at least 4, the first repeated as the last",
            ring.len()
        ));
    }
    for (n, point) in ring.iter().enumerate() {
        check_point(point.y, point.x).map_err(|reason| format!("point {}: {reason}", n + 1))?;
    }
    Ok(())
}

fn check_circle(circle: &CapCircle) -> Result<(), String> {
    check_point(circle.lat, circle.lon).map_err(|reason| format!("centre: {reason}"))?;
    let km = circle.radius_m / 1000.0;
    if !circle.radius_m.is_finite() || circle.radius_m < 0.0 {
        return Err(format!(
            "radius {km} km is not a distance: it must be a number of kilometres, 0 or more"
        ));
    }
    if circle.radius_m > MAX_RADIUS_M {
        return Err(format!(
            "radius {km} km is larger than half the Earth's circumference; CAP radii are in \
             kilometres, not metres"
        ));
    }
    Ok(())
}

/// Checks a point's range; a latitude beyond ±90 with a longitude that would fit is the
/// classic `lon,lat` mix-up, so the reason says so.
fn check_point(lat: f64, lon: f64) -> Result<(), String> {
    if !lat.is_finite() || !lon.is_finite() {
        return Err("coordinates must be numbers".into());
    }
    if !(-90.0..=90.0).contains(&lat) {
        let hint = if (-90.0..=90.0).contains(&lon) {
            " (CAP writes points as lat,lon; this looks like lon,lat)"
        } else {
            ""
        };
        return Err(format!("latitude {lat} is outside -90..90{hint}"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(format!("longitude {lon} is outside -180..180"));
    }
    Ok(())
}

/// `identifier` and `sender` (and both inside `references`): non-empty, and none of the
/// characters CAP reserves for its lists and XML (whitespace, comma, `<`, `&`).
fn check_token(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
    {
        let name = match c {
            ',' => "a comma".to_owned(),
            '<' => "'<'".to_owned(),
            '&' => "'&'".to_owned(),
            c => format!("whitespace ({c:?})"),
        };
        return Err(format!(
            "'{value}' contains {name}; CAP forbids whitespace, commas, '<' and '&' here"
        ));
    }
    Ok(())
}

/// RFC 3066: a primary tag of 1–8 letters, then subtags of 1–8 letters or digits.
fn is_language(value: &str) -> bool {
    let mut parts = value.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    primary_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// An absolute URI: a scheme (RFC 3986), a colon, something after it, no whitespace.
fn is_absolute_uri(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !value.chars().any(char::is_whitespace)
}

/// Whether an issue of the rules at `general` repeats one the reader found at `specific`.
fn covers(general: &str, specific: &str) -> bool {
    specific
        .strip_prefix(general)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

fn limit(mut issues: Vec<Issue>) -> Vec<Issue> {
    if issues.len() > MAX_ISSUES {
        let more = issues.len() - (MAX_ISSUES - 1);
        issues.truncate(MAX_ISSUES - 1);
        issues.push(Issue::new("document", format!("… and {more} more issues")));
    }
    issues
}

fn xml_issue(error: &roxmltree::Error) -> Issue {
    match error {
        roxmltree::Error::DtdDetected => Issue::new(
            "document",
            "contains a DTD (<!DOCTYPE … [ … ]>): CAP needs none, and Vigil refuses DTDs so \
             that no entity can read files or multiply itself (XXE, billion laughs)",
        ),
        roxmltree::Error::NodesLimitReached => {
            Issue::new("document", format!("has more than {MAX_NODES} XML nodes"))
        }
        other => Issue::new(
            format!("line {}", other.pos().row),
            format!("the document is not well-formed XML: {other}"),
        ),
    }
}

/// The document as text: UTF-8 (a BOM allowed) unless its declaration says ISO-8859-1.
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err("is UTF-16; send CAP documents as UTF-8".into());
    }
    let encoding = declared_encoding(bytes).map(|e| e.to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("utf-8" | "utf8") => {
            std::str::from_utf8(bytes).map(Cow::Borrowed).map_err(|e| {
                format!(
                    "is not valid UTF-8 (at byte {}); send UTF-8 or declare the encoding",
                    e.valid_up_to()
                )
            })
        }
        Some("iso-8859-1" | "latin1" | "latin-1" | "iso_8859-1" | "us-ascii" | "ascii") => {
            Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()))
        }
        Some(other) => Err(format!(
            "declares encoding '{other}'; Vigil reads CAP documents in UTF-8 (or ISO-8859-1)"
        )),
    }
}

/// The `encoding` of the XML declaration, if there is one.
fn declared_encoding(bytes: &[u8]) -> Option<&str> {
    let head = bytes.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let after = &decl[decl.find("encoding")? + "encoding".len()..];
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let value = &after[1..];
    Some(&value[..value.find(quote)?])
}

/// Reads a CAP time (see [`super::parse_time`]).
pub(super) fn time(value: &str) -> Result<OffsetDateTime, String> {
    let strict = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    if let Ok(t) = OffsetDateTime::parse(value, strict) {
        return Ok(t);
    }
    // Lenient: `Z` and fractional seconds name an instant just as well.
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t);
    }
    let tail = value.get(19..).unwrap_or("");
    let tail = tail
        .strip_prefix('.')
        .map_or(tail, |t| t.trim_start_matches(|c: char| c.is_ascii_digit()));
    if value.len() >= 19 && tail.is_empty() {
        Err(format!(
            "'{value}' has no UTC offset; CAP times carry one, as in 2026-11-22T14:05:00+03:00 \
             (UTC is -00:00)"
        ))
    } else {
        Err(format!(
            "'{value}' is not a CAP date-time such as 2026-11-22T14:05:00+03:00"
        ))
    }
}

/// Reads `lat,lon`.
fn point(pair: &str) -> Result<(f64, f64), String> {
    let parsed = pair.split_once(',').and_then(|(lat, lon)| {
        let lat = lat.parse::<f64>().ok().filter(|v| v.is_finite())?;
        let lon = lon.parse::<f64>().ok().filter(|v| v.is_finite())?;
        Some((lat, lon))
    });
    parsed.ok_or_else(|| format!("'{pair}' is not lat,lon"))
}

/// Reads a CAP polygon: whitespace-separated `lat,lon` pairs, at least 4, closed.
fn polygon(value: &str) -> Result<Polygon<f64>, String> {
    let mut ring = Vec::new();
    for (n, pair) in value.split_whitespace().enumerate() {
        let (lat, lon) = point(pair).map_err(|reason| format!("point {}: {reason}", n + 1))?;
        ring.push(Coord { x: lon, y: lat });
    }
    if ring.len() < 4 {
        return Err(format!(
            "has {} points; a CAP polygon needs at least 4, the first repeated as the last",
            ring.len()
        ));
    }
    let (first, last) = (ring[0], ring[ring.len() - 1]);
    if first != last {
        return Err(format!(
            "is not closed: it starts at {},{} and ends at {},{}; CAP repeats the first point \
             as the last",
            first.y, first.x, last.y, last.x
        ));
    }
    Ok(Polygon::new(LineString::from(ring), Vec::new()))
}

/// Reads a CAP circle: `lat,lon radius`, the radius in kilometres.
fn circle(value: &str) -> Result<CapCircle, String> {
    let mut parts = value.split_whitespace();
    let (Some(centre), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!(
            "'{value}' is not 'lat,lon radius' (the radius in kilometres)"
        ));
    };
    let (lat, lon) = point(centre).map_err(|reason| format!("centre {reason}"))?;
    let radius_m = km_to_m(radius)
        .ok_or_else(|| format!("radius '{radius}' is not a number of kilometres"))?;
    Ok(CapCircle { lon, lat, radius_m })
}

/// Kilometres (as written) to metres, by moving the decimal point in the text so that
/// `1.234` km is exactly the double nearest 1234 m (multiplying by 1000 would not always be).
pub(super) fn km_to_m(km: &str) -> Option<f64> {
    let metres = match shift_decimal(km, 3) {
        Some(text) => text.parse::<f64>().ok()?,
        None => km.parse::<f64>().ok()? * 1000.0,
    };
    metres.is_finite().then_some(metres)
}

/// Moves the decimal point of a plain decimal number (`-12.5`) by `places` (negative: left).
/// `None` for anything else (exponents, `inf`), which callers handle numerically.
pub(super) fn shift_decimal(value: &str, places: i32) -> Option<String> {
    let (sign, body) = match value.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", value.strip_prefix('+').unwrap_or(value)),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let mut digits = format!("{int}{frac}");
    let mut point = int.len() as i64 + i64::from(places);
    if point < 0 {
        digits.insert_str(0, &"0".repeat(point.unsigned_abs() as usize));
        point = 0;
    }
    let point = point as usize;
    if point > digits.len() {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let (int, frac) = digits.split_at(point);
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// Splits a CAP group list: whitespace-separated, items with spaces in double quotes.
fn group(value: &str) -> Result<Vec<String>, String> {
    let mut items = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| "has a '\"' that is never closed".to_owned())?;
            items.push(quoted[..end].to_owned());
            rest = quoted[end + 1..].trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            items.push(rest[..end].to_owned());
            rest = rest[end..].trim_start();
        }
    }
    Ok(items)
}

/// The CAP-namespace children of an element, by name, in document order.
struct Children<'a, 'input> {
    nodes: Vec<(&'static str, Node<'a, 'input>)>,
}

impl<'a, 'input> Children<'a, 'input> {
    fn all(&self, name: &str) -> Vec<Node<'a, 'input>> {
        self.nodes
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, node)| *node)
            .collect()
    }
}

fn at(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// Walks the tree, collecting issues as it goes so that one response names them all.
#[derive(Default)]
struct Reader {
    issues: Vec<Issue>,
}

impl Reader {
    fn issue(&mut self, at: impl Into<String>, reason: impl Into<String>) {
        self.issues.push(Issue::new(at, reason));
    }

    fn children<'a, 'input>(
        &mut self,
        node: Node<'a, 'input>,
        path: &str,
        allowed: &[&'static str],
    ) -> Children<'a, 'input> {
        let parent = node.tag_name().name();
        let mut nodes = Vec::new();
        for child in node.children().filter(Node::is_element) {
            // Other namespaces (an XML signature, profile extensions) are not ours to judge.
            if child.tag_name().namespace() != Some(NAMESPACE) {
                continue;
            }
            let name = child.tag_name().name();
            match allowed.iter().find(|a| **a == name) {
                Some(known) => nodes.push((*known, child)),
                None => self.issue(
                    at(path, name),
                    format!("is not a CAP 1.2 element of <{parent}>"),
                ),
            }
        }
        Children { nodes }
    }

    /// The trimmed text of a leaf element.
    fn text(&mut self, node: Node, at: &str) -> String {
        if node.children().any(|c| c.is_element()) {
            self.issue(at, "must hold text, not elements");
        }
        let text: String = node
            .children()
            .filter(Node::is_text)
            .filter_map(|c| c.text())
            .collect();
        text.trim().to_owned()
    }

    fn once<'a, 'input>(
        &mut self,
        kids: &Children<'a, 'input>,
        name: &str,
        path: &str,
        required: bool,
    ) -> Option<Node<'a, 'input>> {
        let nodes = kids.all(name);
        match nodes.as_slice() {
            [] => {
                if required {
                    self.issue(at(path, name), "is required");
                }
                None
            }
            [one] => Some(*one),
            [first, ..] => {
                self.issue(
                    at(path, name),
                    format!("appears {} times; CAP allows it once", nodes.len()),
                );
                Some(*first)
            }
        }
    }

    fn required_text(&mut self, kids: &Children, name: &str, path: &str) -> Option<String> {
        let node = self.once(kids, name, path, true)?;
        let text = self.text(node, &at(path, name));
        if text.is_empty() {
            self.issue(at(path, name), "is required but empty");
            return None;
        }
        Some(text)
    }

    fn optional_text(&mut self, kids: &Children, name: &str, path: &str) -> Option<String> {
        let node = self.once(kids, name, path, false)?;
        let text = self.text(node, &at(path, name));
        (!text.is_empty()).then_some(text)
    }

    fn word<T: Vocabulary>(&mut self, node: Node, at: &str) -> Option<T> {
        let text = self.text(node, at);
        if let Some(value) = T::from_cap(&text) {
            return Some(value);
        }
        let spellings = T::spellings();
        let hint = spellings
            .iter()
            .find(|s| s.eq_ignore_ascii_case(&text))
            .map(|s| format!("; CAP values are case-sensitive: write '{s}'"))
            .unwrap_or_default();
        self.issue(
            at,
            format!("'{text}' is not one of {}{hint}", spellings.join(", ")),
        );
        None
    }

    fn required_word<T: Vocabulary>(
        &mut self,
        kids: &Children,
        name: &str,
        path: &str,
    ) -> Option<T> {
        let node = self.once(kids, name, path, true)?;
        self.word(node, &at(path, name))
    }

    fn optional_time(&mut self, kids: &Children, name: &str, path: &str) -> Option<OffsetDateTime> {
        let text = self.optional_text(kids, name, path)?;
        time(&text)
            .map_err(|reason| self.issue(at(path, name), reason))
            .ok()
    }

    fn pairs(&mut self, kids: &Children, name: &str, path: &str) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for (i, node) in kids.all(name).into_iter().enumerate() {
            let path = format!("{}[{i}]", at(path, name));
            let inner = self.children(node, &path, PAIR_ELEMENTS);
            let value_name = self.once(&inner, "valueName", &path, true);
            let value = self.once(&inner, "value", &path, true);
            let value_name = value_name.map(|n| self.text(n, &at(&path, "valueName")));
            let value = value.map(|n| self.text(n, &at(&path, "value")));
            pairs.push((value_name.unwrap_or_default(), value.unwrap_or_default()));
        }
        pairs
    }

    fn group(&mut self, kids: &Children, name: &str) -> Vec<String> {
        let Some(text) = self.optional_text(kids, name, "") else {
            return Vec::new();
        };
        group(&text).unwrap_or_else(|reason| {
            self.issue(name, reason);
            Vec::new()
        })
    }

    fn alert(&mut self, root: Node) -> Option<CapAlert> {
        let (name, namespace) = (root.tag_name().name(), root.tag_name().namespace());
        if name != "alert" || namespace != Some(NAMESPACE) {
            let reason = match (name, namespace) {
                ("alert", None) => {
                    format!("has no namespace; a CAP 1.2 alert is <alert xmlns=\"{NAMESPACE}\">")
                }
                ("alert", Some(ns)) if ns.starts_with("urn:oasis:names:tc:emergency:cap:") => {
                    format!(
                        "is in namespace {ns}, another CAP version; Vigil reads CAP 1.2 ({NAMESPACE})"
                    )
                }
                ("alert", Some(ns)) => {
                    format!("is in namespace {ns}, not CAP 1.2 ({NAMESPACE})")
                }
                ("feed" | "rss", _) => "the document is a feed, not a CAP alert; import each \
                                        CAP document it links to"
                    .to_owned(),
                (other, _) => format!("the root element is <{other}>, not a CAP <alert>"),
            };
            self.issue("alert", reason);
            return None;
        }
        let kids = self.children(root, "", ALERT_ELEMENTS);
        let identifier = self.required_text(&kids, "identifier", "");
        let sender = self.required_text(&kids, "sender", "");
        let sent = self.required_text(&kids, "sent", "").and_then(|text| {
            time(&text)
                .map_err(|reason| self.issue("sent", reason))
                .ok()
        });
        let status = self.required_word::<Status>(&kids, "status", "");
        let msg_type = self.required_word::<MsgType>(&kids, "msgType", "");
        let source = self.optional_text(&kids, "source", "");
        let scope = self.required_word::<Scope>(&kids, "scope", "");
        let restriction = self.optional_text(&kids, "restriction", "");
        let addresses = self.group(&kids, "addresses");
        let codes = kids
            .all("code")
            .into_iter()
            .enumerate()
            .map(|(i, node)| self.text(node, &format!("code[{i}]")))
            .collect();
        let note = self.optional_text(&kids, "note", "");
        let references = self.references(&kids);
        let incidents = self.group(&kids, "incidents");
        let infos = kids
            .all("info")
            .into_iter()
            .enumerate()
            .map(|(i, node)| self.info(node, &format!("info[{i}]")))
            .collect();
        Some(CapAlert {
            identifier: identifier.unwrap_or_default(),
            sender: sender.unwrap_or_default(),
            sent: sent.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            status: status.unwrap_or(Status::Actual),
            msg_type: msg_type.unwrap_or(MsgType::Alert),
            source,
            scope: scope.unwrap_or(Scope::Public),
            restriction,
            addresses,
            codes,
            note,
            references,
            incidents,
            infos,
        })
    }

    fn references(&mut self, kids: &Children) -> Vec<CapReference> {
        let Some(text) = self.optional_text(kids, "references", "") else {
            return Vec::new();
        };
        let mut references = Vec::new();
        for (n, entry) in text.split_whitespace().enumerate() {
            let parts: Vec<&str> = entry.split(',').collect();
            let [sender, identifier, sent] = parts.as_slice() else {
                self.issue(
                    "references",
                    format!(
                        "entry {} '{entry}' is not sender,identifier,sent (entries are \
                         separated by spaces)",
                        n + 1
                    ),
                );
                continue;
            };
            match time(sent) {
                Ok(sent) => references.push(CapReference {
                    sender: (*sender).to_owned(),
                    identifier: (*identifier).to_owned(),
                    sent,
                }),
                Err(reason) => self.issue("references", format!("entry {}: {reason}", n + 1)),
            }
        }
        references
    }

    fn info(&mut self, node: Node, path: &str) -> CapInfo {
        let kids = self.children(node, path, INFO_ELEMENTS);
        let language = self
            .optional_text(&kids, "language", path)
            .unwrap_or_else(|| DEFAULT_LANGUAGE.to_owned());
        let category_nodes = kids.all("category");
        if category_nodes.is_empty() {
            self.issue(at(path, "category"), "is required (at least one)");
        }
        let categories = category_nodes
            .into_iter()
            .enumerate()
            .filter_map(|(i, node)| self.word::<Category>(node, &format!("{path}.category[{i}]")))
            .collect();
        let event = self.required_text(&kids, "event", path);
        let response_types = kids
            .all("responseType")
            .into_iter()
            .enumerate()
            .filter_map(|(i, node)| {
                self.word::<ResponseType>(node, &format!("{path}.responseType[{i}]"))
            })
            .collect();
        let urgency = self.required_word::<Urgency>(&kids, "urgency", path);
        let severity = self.required_word::<Severity>(&kids, "severity", path);
        let certainty = self.required_word::<Certainty>(&kids, "certainty", path);
        let audience = self.optional_text(&kids, "audience", path);
        let event_codes = self.pairs(&kids, "eventCode", path);
        let effective = self.optional_time(&kids, "effective", path);
        let onset = self.optional_time(&kids, "onset", path);
        let expires = self.optional_time(&kids, "expires", path);
        let sender_name = self.optional_text(&kids, "senderName", path);
        let headline = self.optional_text(&kids, "headline", path);
        let description = self.optional_text(&kids, "description", path);
        let instruction = self.optional_text(&kids, "instruction", path);
        let web = self.optional_text(&kids, "web", path);
        let contact = self.optional_text(&kids, "contact", path);
        let parameters = self.pairs(&kids, "parameter", path);
        let resources = kids
            .all("resource")
            .into_iter()
            .enumerate()
            .map(|(i, node)| self.resource(node, &format!("{path}.resource[{i}]")))
            .collect();
        let areas = kids
            .all("area")
            .into_iter()
            .enumerate()
            .map(|(i, node)| self.area(node, &format!("{path}.area[{i}]")))
            .collect();
        CapInfo {
            language,
            categories,
            event: event.unwrap_or_default(),
            response_types,
            urgency: urgency.unwrap_or(Urgency::Unknown),
            severity: severity.unwrap_or(Severity::Unknown),
            certainty: certainty.unwrap_or(Certainty::Unknown),
            audience,
            event_codes,
            effective,
            onset,
            expires,
            sender_name,
            headline,
            description,
            instruction,
            web,
            contact,
            parameters,
            resources,
            areas,
        }
    }

    fn resource(&mut self, node: Node, path: &str) -> CapResource {
        let kids = self.children(node, path, RESOURCE_ELEMENTS);
        let desc = self.required_text(&kids, "resourceDesc", path);
        let mime_type = self.required_text(&kids, "mimeType", path);
        let size = self.optional_text(&kids, "size", path).and_then(|text| {
            text.parse::<u64>()
                .map_err(|_| {
                    self.issue(
                        at(path, "size"),
                        format!("'{text}' is not a whole number of bytes"),
                    )
                })
                .ok()
        });
        CapResource {
            desc: desc.unwrap_or_default(),
            mime_type: mime_type.unwrap_or_default(),
            size,
            uri: self.optional_text(&kids, "uri", path),
            deref_uri: self.optional_text(&kids, "derefUri", path),
            digest: self.optional_text(&kids, "digest", path),
        }
    }

    fn area(&mut self, node: Node, path: &str) -> CapArea {
        let kids = self.children(node, path, AREA_ELEMENTS);
        let desc = self.required_text(&kids, "areaDesc", path);
        let mut polygons = Vec::new();
        for (i, node) in kids.all("polygon").into_iter().enumerate() {
            let at = format!("{path}.polygon[{i}]");
            let text = self.text(node, &at);
            match polygon(&text) {
                Ok(p) => polygons.push(p),
                Err(reason) => {
                    self.issue(&at, reason);
                    // Keeps the indexes of later polygons right for the rules' issues.
                    polygons.push(Polygon::new(LineString::new(Vec::new()), Vec::new()));
                }
            }
        }
        let mut circles = Vec::new();
        for (i, node) in kids.all("circle").into_iter().enumerate() {
            let at = format!("{path}.circle[{i}]");
            let text = self.text(node, &at);
            match circle(&text) {
                Ok(c) => circles.push(c),
                Err(reason) => {
                    self.issue(&at, reason);
                    circles.push(CapCircle {
                        lon: 0.0,
                        lat: 0.0,
                        radius_m: f64::NAN,
                    });
                }
            }
        }
        let geocodes = self.pairs(&kids, "geocode", path);
        let mut feet = |name: &str| {
            let text = self.optional_text(&kids, name, path)?;
            match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    self.issue(at(path, name), format!("'{text}' is not a number of feet"));
                    None
                }
            }
        };
        let altitude = feet("altitude");
        let ceiling = feet("ceiling");
        CapArea {
            desc: desc.unwrap_or_default(),
            polygons,
            circles,
            geocodes,
            altitude,
            ceiling,
        }
    }
}
