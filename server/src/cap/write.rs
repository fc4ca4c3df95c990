//! Writing CAP 1.2 XML and the Atom (RFC 4287) index of alerts.
//!
//! Written by hand: the shape is flat and fixed, and the escaping needs care a generic writer
//! does not take — a literal `\r` would come back as `\n` after XML line-end normalisation, so
//! it is written as `&#13;`, and characters XML 1.0 cannot carry at all (most C0 controls) are
//! dropped rather than producing a document no parser accepts.

use time::OffsetDateTime;

use super::parse::shift_decimal;
use super::{CapAlert, CapArea, CapInfo, CapResource, MEDIA_TYPE, NAMESPACE, format_time};

/// One alert in the Atom index.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    /// A permanent, unique IRI for the alert (`urn:uuid:…`, or its CAP URL).
    pub id: String,
    /// The headline.
    pub title: String,
    /// When the alert last changed.
    pub updated: OffsetDateTime,
    /// When it was first sent, if different from `updated`.
    pub published: Option<OffsetDateTime>,
    /// A short text summary (event, severity, area).
    pub summary: Option<String>,
    /// Where its CAP document is (`…/api/v1/alerts/{id}/cap.xml`).
    pub cap_url: String,
}

/// Writes an alert as a CAP 1.2 document (UTF-8, namespace [`NAMESPACE`], elements in schema
/// order). Valid CAP when [`super::validate`] finds nothing; `parse(to_xml(a)) == a` for such an
/// alert whose texts have no surrounding whitespace (CAP does not keep it) and whose optional
/// texts are not empty (an empty element counts as absent). Polygon holes are not written:
/// CAP has none.
pub fn to_xml(alert: &CapAlert) -> String {
    let mut w = Writer::default();
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w.out.push_str("<alert xmlns=\"");
    w.out.push_str(NAMESPACE);
    w.out.push_str("\">\n");
    w.depth = 1;
    w.leaf("identifier", &alert.identifier);
    w.leaf("sender", &alert.sender);
    w.leaf("sent", &format_time(alert.sent));
    w.leaf("status", alert.status.as_cap());
    w.leaf("msgType", alert.msg_type.as_cap());
    w.optional("source", alert.source.as_deref());
    w.leaf("scope", alert.scope.as_cap());
    w.optional("restriction", alert.restriction.as_deref());
    if !alert.addresses.is_empty() {
        w.leaf("addresses", &group(&alert.addresses));
    }
    for code in &alert.codes {
        w.leaf("code", code);
    }
    w.optional("note", alert.note.as_deref());
    if !alert.references.is_empty() {
        let references: Vec<String> = alert.references.iter().map(|r| r.to_string()).collect();
        w.leaf("references", &references.join(" "));
    }
    if !alert.incidents.is_empty() {
        w.leaf("incidents", &group(&alert.incidents));
    }
    for info in &alert.infos {
        w.info(info);
    }
    w.out.push_str("</alert>\n");
    w.out
}

/// Writes an Atom feed (RFC 4287) whose entries link to CAP documents
/// (`rel="alternate"`, `type="application/cap+xml"`), newest first as given.
pub fn atom_feed(
    feed_id: &str,
    title: &str,
    author: &str,
    self_url: &str,
    updated: OffsetDateTime,
    entries: &[FeedEntry],
) -> String {
    let mut w = Writer::default();
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    w.depth = 1;
    w.leaf("id", feed_id);
    w.leaf("title", title);
    w.leaf("updated", &atom_time(updated));
    w.open("author");
    w.leaf("name", author);
    w.close("author");
    w.link("self", "application/atom+xml", self_url);
    for entry in entries {
        w.open("entry");
        w.leaf("id", &entry.id);
        w.leaf("title", &entry.title);
        w.leaf("updated", &atom_time(entry.updated));
        if let Some(published) = entry.published {
            w.leaf("published", &atom_time(published));
        }
        w.optional("summary", entry.summary.as_deref());
        w.link("alternate", MEDIA_TYPE, &entry.cap_url);
        w.close("entry");
    }
    w.out.push_str("</feed>\n");
    w.out
}

/// RFC 3339 for Atom: like CAP's form, but UTC as `Z` (RFC 3339 reads `-00:00` as "offset
/// unknown").
fn atom_time(t: OffsetDateTime) -> String {
    let text = format_time(t);
    match text.strip_suffix("-00:00") {
        Some(utc) => format!("{utc}Z"),
        None => text,
    }
}

/// A CAP group list: items separated by spaces, items holding whitespace in double quotes.
fn group(items: &[String]) -> String {
    items
        .iter()
        .map(|item| {
            if item.chars().any(char::is_whitespace) {
                format!("\"{item}\"")
            } else {
                item.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Metres to kilometres, as text, by moving the decimal point of the shortest text that
/// reads back as the same `f64` (so `parse` gets exactly `radius_m` back).
fn m_to_km(metres: f64) -> String {
    let text = metres.to_string();
    shift_decimal(&text, -3).unwrap_or_else(|| (metres / 1000.0).to_string())
}

/// Appends `text` escaped for XML content, or for a double-quoted attribute value.
fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            // Attribute values have their whitespace normalised to spaces unless escaped.
            '\t' if attribute => out.push_str("&#9;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' | '\n' => out.push(c),
            // Not representable in XML 1.0 at all, not even as a character reference.
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// An indenting XML writer for the flat shapes above.
#[derive(Default)]
struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        escape_into(&mut self.out, text, false);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn optional(&mut self, name: &str, text: Option<&str>) {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            self.leaf(name, text);
        }
    }

    fn link(&mut self, rel: &str, media_type: &str, href: &str) {
        self.indent();
        self.out.push_str("<link rel=\"");
        escape_into(&mut self.out, rel, true);
        self.out.push_str("\" type=\"");
        escape_into(&mut self.out, media_type, true);
        self.out.push_str("\" href=\"");
        escape_into(&mut self.out, href, true);
        self.out.push_str("\"/>\n");
    }

    fn pair(&mut self, name: &str, (value_name, value): &(String, String)) {
        self.open(name);
        self.leaf("valueName", value_name);
        self.leaf("value", value);
        self.close(name);
    }

    fn info(&mut self, info: &CapInfo) {
        self.open("info");
        self.leaf("language", &info.language);
        for category in &info.categories {
            self.leaf("category", category.as_cap());
        }
        self.leaf("event", &info.event);
        for response in &info.response_types {
            self.leaf("responseType", response.as_cap());
        }
        self.leaf("urgency", info.urgency.as_cap());
        self.leaf("severity", info.severity.as_cap());
        self.leaf("certainty", info.certainty.as_cap());
        self.optional("audience", info.audience.as_deref());
        for code in &info.event_codes {
            self.pair("eventCode", code);
        }
        for (name, time) in [
            ("effective", info.effective),
            ("onset", info.onset),
            ("expires", info.expires),
        ] {
            if let Some(time) = time {
                self.leaf(name, &format_time(time));
            }
        }
        self.optional("senderName", info.sender_name.as_deref());
        self.optional("headline", info.headline.as_deref());
        self.optional("description", info.description.as_deref());
        self.optional("instruction", info.instruction.as_deref());
        self.optional("web", info.web.as_deref());
        self.optional("contact", info.contact.as_deref());
        for parameter in &info.parameters {
            self.pair("parameter", parameter);
        }
        for resource in &info.resources {
            self.resource(resource);
        }
        for area in &info.areas {
            self.area(area);
        }
        self.close("info");
    }

    fn resource(&mut self, resource: &CapResource) {
        self.open("resource");
        self.leaf("resourceDesc", &resource.desc);
        self.leaf("mimeType", &resource.mime_type);
        if let Some(size) = resource.size {
            self.leaf("size", &size.to_string());
        }
        self.optional("uri", resource.uri.as_deref());
        self.optional("derefUri", resource.deref_uri.as_deref());
        self.optional("digest", resource.digest.as_deref());
        self.close("resource");
    }

    fn area(&mut self, area: &CapArea) {
        self.open("area");
        self.leaf("areaDesc", &area.desc);
        for polygon in &area.polygons {
            let points: Vec<String> = polygon
                .exterior()
                .coords()
                .map(|c| format!("{},{}", c.y, c.x))
                .collect();
            self.leaf("polygon", &points.join(" "));
        }
        for circle in &area.circles {
            let text = format!("{},{} {}", circle.lat, circle.lon, m_to_km(circle.radius_m));
            self.leaf("circle", &text);
        }
        for geocode in &area.geocodes {
            self.pair("geocode", geocode);
        }
        if let Some(altitude) = area.altitude {
            self.leaf("altitude", &altitude.to_string());
        }
        if let Some(ceiling) = area.ceiling {
            self.leaf("ceiling", &ceiling.to_string());
        }
        self.close("area");
    }
}
