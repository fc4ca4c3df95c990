//! CAP against real published documents, broken ones, and itself.

use std::path::{Path, PathBuf};

use geo::{Coord, LineString, Polygon};
use proptest::prelude::*;
use time::macros::datetime;
use time::{OffsetDateTime, UtcOffset};

use super::*;
use crate::error::Issue;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cap")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).expect("fixture exists")
}

fn parsed(name: &str) -> CapAlert {
    match parse(&fixture(name)) {
        Ok(alert) => alert,
        Err(issues) => panic!("{name} should parse, got {issues:#?}"),
    }
}

fn issues(xml: &[u8]) -> Vec<Issue> {
    match parse(xml) {
        Ok(alert) => panic!("expected issues, parsed {alert:#?}"),
        Err(issues) => issues,
    }
}

/// The issue at `at`, whose reason must mention `fragment`.
fn assert_issue(issues: &[Issue], at: &str, fragment: &str) {
    let found = issues.iter().find(|i| i.at == at);
    match found {
        Some(issue) => assert!(
            issue.reason.contains(fragment),
            "issue at {at} should mention {fragment:?}: {issue:?}"
        ),
        None => panic!("no issue at {at}: {issues:#?}"),
    }
}

fn offset(hours: i8, minutes: i8) -> UtcOffset {
    UtcOffset::from_hms(hours, minutes, 0).expect("offset")
}

#[test]
fn every_real_fixture_parses_and_survives_our_writer() {
    let mut count = 0;
    for entry in std::fs::read_dir(fixtures()).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.ends_with(".xml") || name.starts_with("broken-") {
            continue;
        }
        let alert = parsed(name);
        assert!(!alert.infos.is_empty(), "{name} has info blocks");
        let again = parse(to_xml(&alert).as_bytes())
            .unwrap_or_else(|issues| panic!("{name} rewritten does not parse: {issues:#?}"));
        assert_eq!(again, alert, "{name} changed through to_xml");
        count += 1;
    }
    assert!(count >= 7, "expected the 7 real documents, found {count}");
}

#[test]
fn oasis_earthquake_update_references_the_first_report_and_has_a_zero_circle() {
    let alert = parsed("oasis-earthquake-update.xml");
    assert_eq!(alert.msg_type, MsgType::Update);
    assert_eq!(alert.sent, datetime!(2003-06-11 20:56:00 -07:00));
    assert_eq!(
        alert.sent.offset(),
        offset(-7, 0),
        "the sender's offset is kept"
    );
    assert_eq!(
        alert.references,
        vec![CapReference {
            sender: "trinet@caltech.edu".into(),
            identifier: "TRI13970876.1".into(),
            sent: datetime!(2003-06-11 20:30:00 -07:00),
        }]
    );
    let info = &alert.infos[0];
    assert_eq!(info.language, "en-US", "CAP's default language");
    assert_eq!(info.categories, vec![Category::Geo]);
    assert_eq!(info.urgency, Urgency::Past);
    assert_eq!(
        info.parameters[2],
        ("Magnitude".to_owned(), "3.4 Ml".to_owned())
    );
    assert_eq!(
        info.areas[0].circles,
        vec![CapCircle {
            lon: -115.5527,
            lat: 32.9525,
            radius_m: 0.0
        }]
    );
}

#[test]
fn oasis_amber_alert_has_english_and_spanish_blocks() {
    let alert = parsed("oasis-amber-alert.xml");
    let languages: Vec<&str> = alert.infos.iter().map(|i| i.language.as_str()).collect();
    assert_eq!(languages, ["en-US", "es-US"]);
    assert_eq!(alert.infos[1].event, "Abducción de Niño");
    assert_eq!(alert.infos[0].categories, vec![Category::Rescue]);
    assert_eq!(
        alert.infos[0].areas[0].geocodes,
        vec![("SAME".to_owned(), "006037".to_owned())]
    );
    assert!(
        alert.infos[0]
            .description
            .as_deref()
            .is_some_and(|d| d.contains("3'0\", 40 LBS"))
    );
}

#[test]
fn eccc_update_has_french_and_english_polygons_in_lon_lat_order() {
    let alert = parsed("eccc-special-weather-statement-update.xml");
    assert_eq!(alert.msg_type, MsgType::Update);
    assert_eq!(alert.sent.offset(), UtcOffset::UTC);
    assert_eq!(alert.codes.len(), 6);
    assert_eq!(
        alert.source.as_deref(),
        Some("Env. Can. - Can. Met. Ctr. – Montréal")
    );
    assert_eq!(alert.references.len(), 1);
    assert_eq!(
        alert.references[0].identifier,
        "urn:oid:2.49.0.1.124.4119129247.2019"
    );
    let fr = &alert.infos[1];
    assert_eq!(fr.language, "fr-CA");
    assert_eq!(fr.areas.len(), 3);
    assert!(
        fr.description
            .as_deref()
            .is_some_and(|d| d.starts_with("D'importantes quantités"))
    );
    let thunder_bay = &alert.infos[0].areas[0].polygons[0];
    assert_eq!(thunder_bay.exterior().0.len(), 19);
    // CAP's "48.5448,-89.0388" is latitude first; the model is x = longitude.
    assert_eq!(
        thunder_bay.exterior().0[0],
        Coord {
            x: -89.0388,
            y: 48.5448
        }
    );
}

#[test]
fn nws_tornado_warning_targets_a_polygon_in_two_languages() {
    let alert = parsed("nws-tornado-warning-en-es.xml");
    assert_eq!(alert.note, None, "an empty <note/> is absent");
    assert_eq!(alert.infos.len(), 2);
    let info = &alert.infos[0];
    assert_eq!(info.severity, Severity::Extreme);
    assert_eq!(info.response_types, vec![ResponseType::Shelter]);
    assert_eq!(info.expires, Some(datetime!(2020-01-23 08:28:00 -06:00)));
    let ring = &info.areas[0].polygons[0].exterior().0;
    assert_eq!(ring.len(), 7);
    assert_eq!(ring[3], Coord { x: -92.28, y: 31.6 });
    assert_eq!(alert.infos[1].language, "es-US");
}

#[test]
fn nws_cancel_names_the_watch_it_cancels() {
    let alert = parsed("nws-fire-weather-watch-cancel.xml");
    assert_eq!(alert.msg_type, MsgType::Cancel);
    assert_eq!(alert.references[0].sender, "w-nws.webmaster@noaa.gov");
    assert_eq!(
        alert.references[0].sent,
        datetime!(2026-09-11 10:27:00 -06:00)
    );
    let instruction = alert.infos[0].instruction.as_deref().unwrap_or_default();
    assert!(instruction.contains("field of\nthis Red Flag Warning.\n\nMake"));
}

#[test]
fn circles_in_kilometres_become_metres() {
    let airnow = parsed("airnow-air-quality-circle.xml");
    let circle = airnow.infos[0].areas[0].circles[0];
    assert_eq!(
        (circle.lat, circle.lon, circle.radius_m),
        (38.8963, -121.0784, 1000.0)
    );
    assert_eq!(
        airnow.infos[0].event.lines().count(),
        3,
        "inner line breaks kept"
    );
    assert!(
        airnow.infos[0]
            .web
            .as_deref()
            .is_some_and(|w| w.starts_with("http://feeds.enviroflash.info/")),
        "surrounding whitespace dropped"
    );

    let naads = parsed("naads-freehand-circle-signed.xml");
    assert_eq!(naads.infos[0].areas[0].circles[0].radius_m, 3870.0);
    assert_eq!(naads.codes, ["profile:CAP-CP:0.4", "layer:SOREM:1.0"]);
}

#[test]
fn broken_fixtures_name_the_field_and_the_reason() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "broken-polygon-not-closed.xml",
            "info[0].area[0].polygon[0]",
            "is not closed",
        ),
        (
            "broken-polygon-lon-lat.xml",
            "info[0].area[0].polygon[0]",
            "looks like lon,lat",
        ),
        (
            "broken-circle-metres.xml",
            "info[0].area[0].circle[0]",
            "kilometres, not metres",
        ),
        (
            "broken-circle-negative-radius.xml",
            "info[0].area[0].circle[0]",
            "0 or more",
        ),
        ("broken-sent-no-offset.xml", "sent", "no UTC offset"),
        (
            "broken-severity-lowercase.xml",
            "info[0].severity",
            "write 'Severe'",
        ),
        (
            "broken-update-without-references.xml",
            "references",
            "required when msgType is Update",
        ),
        (
            "broken-references-malformed.xml",
            "references",
            "not sender,identifier,sent",
        ),
        (
            "broken-restricted-without-restriction.xml",
            "restriction",
            "scope is Restricted",
        ),
        (
            "broken-identifier-with-space.xml",
            "identifier",
            "whitespace",
        ),
        ("broken-missing-required.xml", "sender", "is required"),
        (
            "broken-missing-required.xml",
            "info[0].urgency",
            "is required",
        ),
        (
            "broken-missing-required.xml",
            "info[0].area[0].areaDesc",
            "is required",
        ),
        ("broken-cap11-namespace.xml", "alert", "cap:1.1"),
        ("broken-xxe.xml", "document", "DTD"),
        ("broken-not-well-formed.xml", "line 12", "not well-formed"),
    ];
    for (file, at, fragment) in cases {
        assert_issue(&issues(&fixture(file)), at, fragment);
    }
    // Every broken file is covered above.
    for entry in std::fs::read_dir(fixtures()).expect("fixtures dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("broken-") {
            assert!(
                cases.iter().any(|(f, _, _)| *f == name),
                "{name} has no case"
            );
        }
    }
}

#[test]
fn one_issue_per_fault_not_a_cascade() {
    let found = issues(&fixture("broken-polygon-not-closed.xml"));
    assert_eq!(found.len(), 1, "{found:#?}");
    let found = issues(&fixture("broken-missing-required.xml"));
    assert_eq!(found.len(), 3, "{found:#?}");
}

/// A complete alert of our own, with the texts that break naive writers.
fn security_alert() -> CapAlert {
    let nairobi = Polygon::new(
        LineString::from(vec![
            (36.84, -1.27),
            (36.86, -1.27),
            (36.86, -1.29),
            (36.84, -1.29),
            (36.84, -1.27),
        ]),
        Vec::new(),
    );
    let mut english = CapInfo::new(
        vec![Category::Security, Category::Safety],
        "Armed clash",
        Urgency::Immediate,
        Severity::Severe,
        Certainty::Observed,
    );
    english.language = "en-GB".into();
    english.response_types = vec![ResponseType::Shelter, ResponseType::Avoid];
    english.headline = Some("Gunfire <near> the \"Tom & Jerry\" café".into());
    english.description = Some("Line one\r\nline two\ttabbed ]]> and 'quotes'".into());
    english.instruction = Some("Stay indoors & away from windows".into());
    english.expires = Some(datetime!(2026-11-22 18:00:00 +03:00));
    english.web = Some("https://vigil.example/alerts/42?lang=en&view=map".into());
    english.parameters = vec![("vigil:alert_id".into(), "42".into())];
    english.resources = vec![CapResource {
        desc: "Map".into(),
        mime_type: "image/png".into(),
        size: Some(12345),
        uri: Some("https://vigil.example/alerts/42/map.png".into()),
        deref_uri: None,
        digest: None,
    }];
    let mut area = CapArea::new("Eastleigh, Nairobi");
    area.polygons.push(nairobi);
    area.circles.push(CapCircle {
        lon: 36.85,
        lat: -1.28,
        radius_m: 1234.5,
    });
    area.geocodes.push(("ISO3166-2".into(), "KE-30".into()));
    area.altitude = Some(0.0);
    area.ceiling = Some(5000.5);
    english.areas.push(area);

    let mut arabic = english.clone();
    arabic.language = "ar".into();
    arabic.event = "اشتباك مسلح".into();
    arabic.headline = Some("إطلاق نار قرب السوق — ابقوا في أماكنكم".into());
    arabic.description = Some("تبادل لإطلاق النار بين مجموعتين مسلحتين في حي إيستلي".into());
    arabic.areas[0].desc = "إيستلي، نيروبي".into();

    let mut french = english.clone();
    french.language = "fr".into();
    french.event = "Affrontement armé".into();
    french.headline = Some("Échange de tirs près du marché « Gikomba » : restez à l'abri".into());
    french.instruction =
        Some("Évacuez l'immeuble & rejoignez le point de rassemblement <B>".into());

    CapAlert {
        identifier: "vigil-7f3a9c2e-42".into(),
        sender: "ops@vigil.example".into(),
        sent: datetime!(2026-11-22 14:05:00 +03:00),
        status: Status::Actual,
        msg_type: MsgType::Update,
        source: Some("Nairobi operations room".into()),
        scope: Scope::Private,
        restriction: None,
        addresses: vec!["unhcr-ke".into(), "Field Team B".into()],
        codes: vec!["vigil:1".into()],
        note: Some("Replaces the 13:40 alert".into()),
        references: vec![CapReference {
            sender: "ops@vigil.example".into(),
            identifier: "vigil-7f3a9c2e-41".into(),
            sent: datetime!(2026-11-22 10:40:00 UTC),
        }],
        incidents: vec!["eastleigh-2026-11-22".into()],
        infos: vec![english, arabic, french],
    }
}

#[test]
fn our_alert_round_trips_with_arabic_french_and_xml_specials() {
    let alert = security_alert();
    assert_eq!(validate(&alert), Vec::<Issue>::new());
    let xml = to_xml(&alert);
    let back = parse(xml.as_bytes()).unwrap_or_else(|i| panic!("{i:#?}\n{xml}"));
    assert_eq!(back, alert);
    assert_eq!(
        back.sent.offset(),
        offset(3, 0),
        "the offset survives, not just the instant"
    );
    assert!(xml.contains("<headline>إطلاق نار قرب السوق — ابقوا في أماكنكم</headline>"));
    assert!(xml.contains("Gunfire &lt;near&gt; the \"Tom &amp; Jerry\" café"));
    assert!(
        xml.contains("Line one&#13;\nline two"),
        "\\r survives XML line-end rules"
    );
}

#[test]
fn to_xml_writes_cap_forms() {
    let xml = to_xml(&security_alert());
    assert!(xml.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">\n"
    ));
    assert!(xml.contains("<sent>2026-11-22T14:05:00+03:00</sent>"));
    // CAP 1.2 §3.3.2: UTC is written -00:00, never Z.
    assert!(xml.contains(
        "<references>ops@vigil.example,vigil-7f3a9c2e-41,2026-11-22T10:40:00-00:00</references>"
    ));
    assert!(xml.contains("<addresses>unhcr-ke \"Field Team B\"</addresses>"));
    assert!(xml.contains(
        "<polygon>-1.27,36.84 -1.27,36.86 -1.29,36.86 -1.29,36.84 -1.27,36.84</polygon>"
    ));
    assert!(
        xml.contains("<circle>-1.28,36.85 1.2345</circle>"),
        "lat,lon and kilometres"
    );
    assert!(xml.contains("<category>Security</category>\n    <category>Safety</category>"));
    // The document is well-formed and in schema order: identifier before sender before info.
    let doc = roxmltree::Document::parse(&xml).expect("well-formed");
    let names: Vec<&str> = doc
        .root_element()
        .children()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    assert_eq!(
        names,
        [
            "identifier",
            "sender",
            "sent",
            "status",
            "msgType",
            "source",
            "scope",
            "addresses",
            "code",
            "note",
            "references",
            "incidents",
            "info",
            "info",
            "info"
        ]
    );
}

#[test]
fn to_xml_drops_characters_xml_cannot_carry() {
    let mut alert = security_alert();
    alert.note = Some("bell\u{7} and nul\u{0} gone".into());
    let back = parse(to_xml(&alert).as_bytes()).expect("still parses");
    assert_eq!(back.note.as_deref(), Some("bell and nul gone"));
}

#[test]
fn times_need_an_offset_but_z_and_fractions_are_read() {
    assert_eq!(
        parse_time("2026-11-22T14:05:00+05:30").map(|t| t.offset()),
        Ok(offset(5, 30))
    );
    assert_eq!(
        parse_time("2026-11-22T14:05:00-00:00"),
        Ok(datetime!(2026-11-22 14:05:00 UTC))
    );
    assert_eq!(
        parse_time("2026-11-22T14:05:00Z"),
        Ok(datetime!(2026-11-22 14:05:00 UTC))
    );
    assert_eq!(
        parse_time("2026-11-22T14:05:00.250+01:00"),
        Ok(datetime!(2026-11-22 14:05:00.25 +01:00))
    );
    for no_offset in ["2026-11-22T14:05:00", "2026-11-22T14:05:00.5"] {
        let reason = parse_time(no_offset).expect_err("no offset");
        assert!(reason.contains("no UTC offset"), "{reason}");
    }
    let reason = parse_time("22/11/2026 14:05").expect_err("not a date-time");
    assert!(reason.contains("not a CAP date-time"), "{reason}");
    assert_eq!(
        format_time(datetime!(2026-11-22 14:05:00.999 UTC)),
        "2026-11-22T14:05:00-00:00"
    );
    assert_eq!(
        format_time(datetime!(2026-11-22 14:05:00 -03:30)),
        "2026-11-22T14:05:00-03:30"
    );
}

/// A minimal document with `body` as the alert's content after the required header.
fn doc_with(header: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{header}\
         <status>Actual</status><msgType>Alert</msgType><scope>Public</scope>{body}</alert>"
    )
}

const HEADER: &str = "<identifier>X-1</identifier><sender>s@example.org</sender><sent>2026-11-22T14:05:00+03:00</sent>";

fn info_with(area: &str) -> String {
    format!(
        "<info><category>Security</category><event>E</event><urgency>Immediate</urgency>\
         <severity>Severe</severity><certainty>Observed</certainty>{area}</info>"
    )
}

#[test]
fn an_alert_without_info_is_valid_cap() {
    let alert = parse(doc_with(HEADER, "").as_bytes()).expect("valid");
    assert!(alert.infos.is_empty());
}

#[test]
fn the_cap_prefix_form_and_foreign_elements_are_read() {
    let xml = "<cap:alert xmlns:cap=\"urn:oasis:names:tc:emergency:cap:1.2\" \
               xmlns:x=\"urn:example:ext\"><cap:identifier>X-1</cap:identifier>\
               <cap:sender>s@example.org</cap:sender><cap:sent>2026-11-22T14:05:00+03:00</cap:sent>\
               <cap:status>Test</cap:status><cap:msgType>Alert</cap:msgType>\
               <cap:scope>Public</cap:scope><x:extra>ignored</x:extra></cap:alert>";
    let alert = parse(xml.as_bytes()).expect("prefixed CAP is CAP");
    assert_eq!(alert.status, Status::Test);
}

#[test]
fn unknown_and_repeated_cap_elements_are_named() {
    let xml = doc_with(
        HEADER,
        "<sender>again@example.org</sender><colour>red</colour><info><category>Geo</category>\
         <category>Quake</category><event>E</event><urgency>Now</urgency><severity>Severe</severity>\
         <certainty>Observed</certainty></info>",
    );
    let found = issues(xml.as_bytes());
    assert_issue(&found, "sender", "appears 2 times");
    assert_issue(&found, "colour", "not a CAP 1.2 element of <alert>");
    assert_issue(
        &found,
        "info[0].category[1]",
        "'Quake' is not one of Geo, Met",
    );
    assert_issue(&found, "info[0].urgency", "'Now' is not one of Immediate");
}

#[test]
fn areas_are_checked_where_they_are() {
    let areas = "<area><areaDesc>a</areaDesc><polygon>1,1 1,2 2,2 1,1</polygon></area>\
                 <area><areaDesc>b</areaDesc><polygon>1,1 1,2 1,1</polygon>\
                 <polygon>1,1 1,2 2,2 x 1,1</polygon><circle>1,1</circle>\
                 <ceiling>100</ceiling></area>";
    let found = issues(doc_with(HEADER, &info_with(areas)).as_bytes());
    assert_issue(&found, "info[0].area[1].polygon[0]", "has 3 points");
    assert_issue(
        &found,
        "info[0].area[1].polygon[1]",
        "point 4: 'x' is not lat,lon",
    );
    assert_issue(
        &found,
        "info[0].area[1].circle[0]",
        "is not 'lat,lon radius'",
    );
    assert_issue(&found, "info[0].area[1].ceiling", "needs altitude");
    assert_eq!(found.len(), 4, "{found:#?}");
}

#[test]
fn scope_private_needs_addresses_and_groups_keep_quoted_items() {
    let found = issues(
        doc_with(HEADER, "")
            .replace("<scope>Public</scope>", "<scope>Private</scope>")
            .as_bytes(),
    );
    assert_issue(&found, "addresses", "scope is Private");
    let alert = parse(
        doc_with(HEADER, "<addresses>a@x \"Team B\" c</addresses>")
            .replace("<scope>Public</scope>", "<scope>Private</scope>")
            .as_bytes(),
    )
    .expect("valid");
    assert_eq!(alert.addresses, ["a@x", "Team B", "c"]);
}

#[test]
fn hostile_or_foreign_documents_are_refused_cleanly() {
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                  <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\
                  <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>&lol2;</note></alert>";
    assert_issue(&issues(laughs.as_bytes()), "document", "DTD");

    let big = vec![b' '; MAX_DOCUMENT_BYTES + 1];
    assert_issue(&issues(&big), "document", "at most");

    assert_issue(
        &issues(b"<feed xmlns=\"http://www.w3.org/2005/Atom\"/>"),
        "alert",
        "a feed, not a CAP alert",
    );
    assert_issue(&issues(b"<alert/>"), "alert", "has no namespace");
    assert_issue(&issues(b"\xFF\xFE<\x00"), "document", "UTF-16");
    assert_issue(
        &issues(b"<alert>caf\xE9</alert>"),
        "document",
        "not valid UTF-8",
    );
    assert_issue(&issues(b""), "line 1", "not well-formed");
}

#[test]
fn iso_8859_1_documents_are_decoded() {
    let xml = doc_with(HEADER, "<note>caf\u{e9}</note>").replace(
        "<?xml version=\"1.0\"?>",
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>",
    );
    let latin1: Vec<u8> = xml
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("latin-1"))
        .collect();
    let alert = parse(&latin1).expect("latin-1 is read");
    assert_eq!(alert.note.as_deref(), Some("café"));
}

#[test]
fn too_many_issues_are_summarised() {
    let codes: String = (0..80).map(|_| "<bogus/>").collect();
    let found = issues(doc_with(HEADER, &codes).as_bytes());
    assert_eq!(found.len(), 50);
    assert_issue(&found, "document", "31 more issues");
}

#[test]
fn vocabularies_spell_as_cap_does() {
    assert_eq!(Category::Cbrne.as_cap(), "CBRNE");
    assert_eq!(Category::from_cap("CBRNE"), Some(Category::Cbrne));
    assert_eq!(
        Category::from_cap("Cbrne"),
        None,
        "CAP spellings are case-sensitive"
    );
    assert_eq!(ResponseType::AllClear.as_cap(), "AllClear");
    assert_eq!(Severity::Extreme.as_cap(), "Extreme");
    fn all_round_trip<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        as_cap: fn(T) -> &'static str,
        from_cap: fn(&str) -> Option<T>,
    ) {
        for v in all {
            assert_eq!(from_cap(as_cap(*v)), Some(*v));
        }
    }
    all_round_trip(Severity::ALL, Severity::as_cap, Severity::from_cap);
    all_round_trip(Urgency::ALL, Urgency::as_cap, Urgency::from_cap);
    all_round_trip(Certainty::ALL, Certainty::as_cap, Certainty::from_cap);
    all_round_trip(Category::ALL, Category::as_cap, Category::from_cap);
    all_round_trip(Status::ALL, Status::as_cap, Status::from_cap);
    all_round_trip(MsgType::ALL, MsgType::as_cap, MsgType::from_cap);
    all_round_trip(Scope::ALL, Scope::as_cap, Scope::from_cap);
    all_round_trip(
        ResponseType::ALL,
        ResponseType::as_cap,
        ResponseType::from_cap,
    );
    assert_eq!(Category::ALL.len(), 12);
    assert_eq!(ResponseType::ALL.len(), 9);
    // The JSON forms stay snake_case.
    assert_eq!(
        serde_json::to_string(&ResponseType::AllClear).expect("json"),
        "\"all_clear\""
    );
}

#[test]
fn decimal_shifts_are_exact() {
    assert_eq!(parse::km_to_m("3.87"), Some(3870.0));
    assert_eq!(parse::km_to_m("1.0"), Some(1000.0));
    assert_eq!(parse::km_to_m(".5"), Some(500.0));
    assert_eq!(parse::km_to_m("0.0001"), Some(0.1));
    assert_eq!(parse::km_to_m("2e1"), Some(20000.0));
    assert_eq!(parse::km_to_m("inf"), None);
    assert_eq!(
        parse::shift_decimal("1234.5", -3).as_deref(),
        Some("1.2345")
    );
    assert_eq!(parse::shift_decimal("0.1", -3).as_deref(), Some("0.0001"));
    assert_eq!(parse::shift_decimal("7", 3).as_deref(), Some("7000"));
}

#[test]
fn atom_feed_is_rfc_4287() {
    let entries = [
        FeedEntry {
            id: "urn:uuid:0b0e4b6a-8f43-4e0c-9d6b-5b8f0b1e2a11".into(),
            title: "Armed clash — Eastleigh & Gikomba".into(),
            updated: datetime!(2026-11-22 14:05:00 +03:00),
            published: Some(datetime!(2026-11-22 13:40:00 +03:00)),
            summary: Some("Severe · Immediate · <shelter>".into()),
            cap_url: "https://vigil.example/api/v1/alerts/42/cap.xml?x=1&y=2".into(),
        },
        FeedEntry {
            id: "urn:uuid:5d1f0a7e-3c2b-4f6a-9e8d-7a6b5c4d3e2f".into(),
            title: "Curfew".into(),
            updated: datetime!(2026-11-21 20:00:00 UTC),
            published: None,
            summary: None,
            cap_url: "https://vigil.example/api/v1/alerts/41/cap.xml".into(),
        },
    ];
    let xml = atom_feed(
        "urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "Vigil alerts",
        "Vigil",
        "https://vigil.example/api/v1/cap/feed.atom",
        datetime!(2026-11-22 11:05:00 UTC),
        &entries,
    );
    let doc = roxmltree::Document::parse(&xml).expect("well-formed");
    let feed = doc.root_element();
    let atom = "http://www.w3.org/2005/Atom";
    assert_eq!(feed.tag_name().namespace(), Some(atom));
    assert_eq!(feed.tag_name().name(), "feed");
    fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> roxmltree::Node<'a, 'i> {
        node.children()
            .find(|c| c.has_tag_name(("http://www.w3.org/2005/Atom", name)))
            .unwrap_or_else(|| panic!("<{name}> in <{}>", node.tag_name().name()))
    }
    // RFC 4287 §4.1.1: id, title, updated and (with no per-entry author) author are required.
    assert_eq!(child(feed, "updated").text(), Some("2026-11-22T11:05:00Z"));
    assert_eq!(child(child(feed, "author"), "name").text(), Some("Vigil"));
    let self_link = child(feed, "link");
    assert_eq!(self_link.attribute("rel"), Some("self"));
    assert_eq!(
        self_link.attribute("href"),
        Some("https://vigil.example/api/v1/cap/feed.atom")
    );
    let items: Vec<_> = feed
        .children()
        .filter(|c| c.has_tag_name((atom, "entry")))
        .collect();
    assert_eq!(items.len(), 2);
    for (item, entry) in items.iter().zip(&entries) {
        assert_eq!(child(*item, "id").text(), Some(entry.id.as_str()));
        assert_eq!(child(*item, "title").text(), Some(entry.title.as_str()));
        assert!(
            child(*item, "updated")
                .text()
                .is_some_and(|t| parse_time(t).is_ok())
        );
        // §4.1.2: an entry without content has a rel="alternate" link; here, to the CAP.
        let link = child(*item, "link");
        assert_eq!(link.attribute("rel"), Some("alternate"));
        assert_eq!(link.attribute("type"), Some(MEDIA_TYPE));
        assert_eq!(link.attribute("href"), Some(entry.cap_url.as_str()));
    }
    assert_eq!(
        child(items[0], "updated").text(),
        Some("2026-11-22T14:05:00+03:00")
    );
    assert_eq!(
        child(items[0], "summary").text(),
        Some("Severe · Immediate · <shelter>")
    );
    assert!(
        items[1]
            .children()
            .all(|c| !c.has_tag_name((atom, "summary")))
    );
}

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "\\PC".prop_map(String::from),
        1 => Just("\n".to_owned()),
        1 => Just("\r".to_owned()),
        1 => Just("\t".to_owned()),
        2 => prop::sample::select(vec!["<", ">", "&", "\"", "'", "]]>", "&amp;"]).prop_map(String::from),
        2 => prop::sample::select(vec!["ا", "ل", "ح", "é", "ç", "«", "»", "😀", "\u{200F}"]).prop_map(String::from),
    ];
    prop::collection::vec(piece, 1..24)
        .prop_map(|pieces| pieces.concat().trim().to_owned())
        .prop_filter("non-empty after trimming", |s| !s.is_empty())
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9@._:/-]{1,30}"
}

fn when() -> impl Strategy<Value = OffsetDateTime> {
    (0i64..4_102_444_800, -(23 * 60 + 59)..=(23 * 60 + 59)).prop_map(|(secs, minutes)| {
        let offset = UtcOffset::from_whole_seconds(minutes * 60).expect("offset");
        OffsetDateTime::from_unix_timestamp(secs)
            .expect("in range")
            .to_offset(offset)
    })
}

fn latlon() -> impl Strategy<Value = (f64, f64)> {
    (-90.0f64..=90.0, -180.0f64..=180.0)
}

fn area() -> impl Strategy<Value = CapArea> {
    (
        text(),
        prop::collection::vec(prop::collection::vec(latlon(), 3..8), 0..3),
        prop::collection::vec((latlon(), 0.0f64..5_000_000.0), 0..3),
        prop::collection::vec((token(), text()), 0..3),
        prop::option::of((-1000.0f64..30000.0, prop::option::of(0.0f64..60000.0))),
    )
        .prop_map(|(desc, rings, circles, geocodes, altitudes)| {
            let polygons = rings
                .into_iter()
                .map(|ring| {
                    let mut coords: Vec<Coord> = ring
                        .iter()
                        .map(|(lat, lon)| Coord { x: *lon, y: *lat })
                        .collect();
                    coords.push(coords[0]);
                    Polygon::new(LineString::from(coords), Vec::new())
                })
                .collect();
            let circles = circles
                .into_iter()
                .map(|((lat, lon), radius_m)| CapCircle { lon, lat, radius_m })
                .collect();
            CapArea {
                desc,
                polygons,
                circles,
                geocodes,
                altitude: altitudes.map(|(a, _)| a),
                ceiling: altitudes.and_then(|(_, c)| c),
            }
        })
}

fn info() -> impl Strategy<Value = CapInfo> {
    (
        (
            prop::sample::select(vec!["en-US", "fr", "ar", "fr-CA", "sw-KE"]),
            prop::collection::vec(prop::sample::select(Category::ALL.to_vec()), 1..3),
            text(),
            prop::collection::vec(prop::sample::select(ResponseType::ALL.to_vec()), 0..3),
            prop::sample::select(Urgency::ALL.to_vec()),
            prop::sample::select(Severity::ALL.to_vec()),
            prop::sample::select(Certainty::ALL.to_vec()),
        ),
        (
            prop::option::of(text()),
            prop::collection::vec((token(), text()), 0..3),
            prop::option::of(when()),
            prop::option::of(when()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
        ),
        (
            prop::option::of("https://[a-z]{1,10}\\.example/[a-z0-9?=&]{0,12}"),
            prop::collection::vec((token(), text()), 0..3),
            prop::collection::vec(area(), 0..3),
        ),
    )
        .prop_map(|(head, middle, tail)| {
            let (language, categories, event, response_types, urgency, severity, certainty) = head;
            let (audience, event_codes, onset, expires, headline, description, instruction) =
                middle;
            let (web, parameters, areas) = tail;
            CapInfo {
                language: language.to_owned(),
                categories,
                event,
                response_types,
                urgency,
                severity,
                certainty,
                audience,
                event_codes,
                effective: None,
                onset,
                expires,
                sender_name: None,
                headline,
                description,
                instruction,
                web,
                contact: None,
                parameters,
                resources: Vec::new(),
                areas,
            }
        })
}

fn alert() -> impl Strategy<Value = CapAlert> {
    (
        (token(), token(), when()),
        prop::sample::select(Status::ALL.to_vec()),
        prop::sample::select(MsgType::ALL.to_vec()),
        prop::sample::select(Scope::ALL.to_vec()),
        prop::collection::vec(text(), 0..3),
        prop::collection::vec((token(), token(), when()), 1..3),
        prop::option::of(text()),
        prop::collection::vec(info(), 0..3),
    )
        .prop_map(
            |((identifier, sender, sent), status, msg_type, scope, groups, refs, note, infos)| {
                CapAlert {
                    identifier,
                    sender,
                    sent,
                    status,
                    msg_type,
                    source: None,
                    scope,
                    restriction: (scope == Scope::Restricted).then(|| "staff only".to_owned()),
                    // Group items cannot hold '"'; everything else, spaces included, is fine.
                    addresses: if scope == Scope::Private || !groups.is_empty() {
                        let mut items: Vec<String> =
                            groups.iter().map(|g| g.replace('"', "'")).collect();
                        items.push("ops@vigil.example".into());
                        items
                    } else {
                        Vec::new()
                    },
                    codes: vec!["vigil:1".into()],
                    note,
                    references: if msg_type.needs_references() {
                        refs.into_iter()
                            .map(|(sender, identifier, sent)| CapReference {
                                sender,
                                identifier,
                                sent,
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                    incidents: Vec::new(),
                    infos,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_valid_alert_round_trips(alert in alert()) {
        prop_assert_eq!(validate(&alert), Vec::<Issue>::new());
        let xml = to_xml(&alert);
        let back = parse(xml.as_bytes());
        prop_assert!(back.is_ok(), "{:?}\n{}", back, xml);
        if let Ok(back) = back {
            prop_assert_eq!(back.sent.offset(), alert.sent.offset());
            prop_assert_eq!(back, alert);
        }
    }
}
