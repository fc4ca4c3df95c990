//! `docs/PROTOCOL.md` and the crate agree: every documented `type`, `event` and message kind
//! exists, every one that exists is documented, and every example in the page reads as the
//! typed message of its direction.

use std::collections::BTreeSet;

use vigil_protocol::{ClientMessage, MessageKind, ServerMessage, event_names, message_types};

fn page() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md")
}

/// The JSON objects of the page's code blocks: one per line, or one spread over several lines.
fn examples(page: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            pending.clear();
            continue;
        }
        if !in_block {
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&pending) {
            out.push(v);
            pending.clear();
        }
    }
    out
}

/// Values of `"key": "value"` anywhere in the page (prose and examples alike).
fn quoted_values(page: &str, key: &str) -> BTreeSet<String> {
    let needle = format!("\"{key}\": \"");
    let mut out = BTreeSet::new();
    let mut rest = page;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        if let Some(end) = rest.find('"') {
            out.insert(rest[..end].to_string());
        }
    }
    out
}

/// The message kinds named in the first column of the page's table of kinds.
fn documented_kinds(page: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_table = false;
    for line in page.lines() {
        if line.starts_with("| kind |") {
            in_table = true;
            continue;
        }
        if in_table && !line.starts_with('|') {
            break;
        }
        if in_table && let Some(first) = line.split('|').nth(1) {
            for part in first.split('`').skip(1).step_by(2) {
                out.insert(part.to_string());
            }
        }
    }
    out.remove("---");
    out
}

#[test]
fn every_message_type_is_documented_and_every_documented_type_exists() {
    let doc = page();
    let documented = quoted_values(&doc, "type");
    let (client, server) = message_types();
    let existing: BTreeSet<String> = client.iter().chain(server.iter()).cloned().collect();
    assert_eq!(
        documented, existing,
        "docs/PROTOCOL.md names these message types (left), the crate has these (right)"
    );
}

#[test]
fn every_live_event_is_documented_and_every_documented_event_exists() {
    let doc = page();
    let documented = quoted_values(&doc, "event");
    // `event` is also a field of SOS payloads (`opened`, `claimed`…): only live events count.
    let existing: BTreeSet<String> = event_names().into_iter().collect();
    let live: BTreeSet<String> = documented
        .iter()
        .filter(|e| existing.contains(*e) || !is_sos_event(e))
        .cloned()
        .collect();
    assert_eq!(live, existing);
}

fn is_sos_event(name: &str) -> bool {
    [
        "opened",
        "pressed_again",
        "claimed",
        "taken_over",
        "note",
        "closed",
    ]
    .contains(&name)
}

#[test]
fn every_message_kind_is_documented_and_every_documented_kind_exists() {
    let documented = documented_kinds(&page());
    let existing: BTreeSet<String> = MessageKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    assert_eq!(documented, existing);
}

#[test]
fn every_example_in_the_page_reads_as_a_typed_message() {
    let doc = page();
    let (client, _) = message_types();
    let examples = examples(&doc);
    assert!(
        examples.len() >= 15,
        "only {} examples found",
        examples.len()
    );
    for example in examples {
        let Some(kind) = example.get("type").and_then(|t| t.as_str()) else {
            continue;
        };
        let text = example.to_string();
        if client.iter().any(|c| c == kind) {
            if let Err(e) = serde_json::from_str::<ClientMessage>(&text) {
                panic!("client example {text} does not read: {e}");
            }
        } else if let Err(e) = serde_json::from_str::<ServerMessage>(&text) {
            panic!("server example {text} does not read: {e}");
        }
    }
}
