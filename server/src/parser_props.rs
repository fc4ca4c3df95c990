//! Every parser that reads what a stranger sends — CAP XML, GeoJSON areas, OwnTracks and OsmAnd
//! payloads, WebSocket client messages, roster CSV and JSON — fed arbitrary and near-valid
//! input: none panics, and whatever one accepts holds the invariants the code after it relies
//! on. The suite's stand-in for `cargo fuzz` (which needs a nightly toolchain this project does
//! not have): cases are generated afresh on every run, and a long run is
//! `PROPTEST_CASES=200000 cargo test --release -p vigil-server --lib parser_props`.

use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON, biased toward the field names and shapes the parsers look for, so that
/// generated values get past the first check often enough to test the later ones.
fn json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "type",
        "lat",
        "lon",
        "tst",
        "acc",
        "_type",
        "location",
        "coords",
        "latitude",
        "longitude",
        "accuracy",
        "timestamp",
        "geometry",
        "coordinates",
        "properties",
        "name",
        "kind",
        "security_level",
        "radius_m",
        "valid_from",
        "valid_until",
        "parent_id",
        "org_id",
        "fixes",
        "recorded_at",
        "ref",
        "token",
        "last_seq",
        "topic",
        "email",
        "roles",
        "x",
    ])
    .prop_map(str::to_string);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-200.0f64..200.0).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "Feature",
            "Polygon",
            "Point",
            "MultiPolygon",
            "location",
            "position",
            "hello",
            "ping",
            "subscribe",
            "security_area",
            "2026-12-03T10:00:00Z",
            "",
            "staff",
        ])
        .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(names.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Near-valid areas: a polygon of a few random corners (closed or not, possibly crossing
/// itself) or a point with a radius, with properties that may or may not be right.
fn area_like() -> impl Strategy<Value = Value> {
    let corner = (-200.0f64..200.0, -100.0f64..100.0).prop_map(|(x, y)| serde_json::json!([x, y]));
    let polygon =
        (prop::collection::vec(corner, 0..8), any::<bool>()).prop_map(|(mut ring, close)| {
            if close && let Some(first) = ring.first().cloned() {
                ring.push(first);
            }
            serde_json::json!({"type": "Polygon", "coordinates": [ring]})
        });
    let point = (-200.0f64..200.0, -100.0f64..100.0)
        .prop_map(|(x, y)| serde_json::json!({"type": "Point", "coordinates": [x, y]}));
    (
        prop_oneof![polygon, point],
        prop_oneof![
            Just(Value::Null),
            (-10.0f64..100_000.0).prop_map(Value::from)
        ],
        prop_oneof![
            Just("security_area"),
            Just("duty_station"),
            Just("country"),
            Just("nope")
        ],
        0i64..8,
    )
        .prop_map(|(geometry, radius, kind, level)| {
            serde_json::json!({"type": "Feature", "geometry": geometry, "properties":
                {"name": "Area", "kind": kind, "security_level": level, "radius_m": radius}})
        })
}

/// Near-valid tracker payloads (OwnTracks and Traccar Client), with numbers anywhere.
fn fix_like() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        (-200.0f64..200.0).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(Value::from("12.5")),
    ];
    (number.clone(), number.clone(), number.clone(), number).prop_map(|(lat, lon, acc, t)| {
        serde_json::json!({"_type": "location", "lat": lat, "lon": lon, "acc": acc, "tst": t,
            "location": {"coords": {"latitude": lat, "longitude": lon, "accuracy": acc},
                         "timestamp": "2026-12-03T10:00:00Z"}})
    })
}

/// XML-ish text: tags (CAP's names among them), attributes, entities, CDATA and stray bytes.
fn xmlish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">",
            "</alert>",
            "<info>",
            "</info>",
            "<area>",
            "</area>",
            "<polygon>",
            "</polygon>",
            "<circle>",
            "</circle>",
            "<identifier>",
            "</identifier>",
            "<sent>",
            "</sent>",
            "<status>Actual</status>",
            "<msgType>Alert</msgType>",
            "<scope>Public</scope>",
            "<event>",
            "</event>",
            "<urgency>Past</urgency>",
            "<severity>Extreme</severity>",
            "<certainty>Likely</certainty>",
            "<!DOCTYPE a [<!ENTITY e \"x\">]>",
            "&e;",
            "&amp;",
            "<![CDATA[",
            "]]>",
            "<?xml version=\"1.0\"?>",
            "1,2 3,4 5,6 1,2",
            "0,0 0",
            "2026-12-03T10:00:00-00:00",
        ])
        .prop_map(str::to_string),
        "[^<>&]{0,10}",
        "<[a-zA-Z:]{1,10}>",
    ];
    prop::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

// Cases per property: proptest's default (256) in the suite; `PROPTEST_CASES` for long runs.
proptest! {

    #[test]
    fn cap_xml_never_panics_and_what_it_accepts_writes_back(xml in xmlish(), bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assert!(crate::cap::parse(&bytes).is_err() || !bytes.is_empty());
        if let Ok(alert) = crate::cap::parse(xml.as_bytes()) {
            // Whatever is read must survive being written and read again.
            let again = crate::cap::parse(crate::cap::to_xml(&alert).as_bytes());
            prop_assert!(again.is_ok(), "{xml} read, but its rewrite did not: {again:?}");
        }
    }

    #[test]
    fn an_area_that_is_accepted_has_a_shape_that_answers(value in prop_oneof![json(), area_like()]) {
        if let Ok(feature) = serde_json::from_value::<geojson::Feature>(value)
            && let Ok(area) = crate::areas::parse_feature(&feature, Some(1))
        {
            prop_assert!(!area.name.trim().is_empty());
            // What is stored and served back reads as the same shape.
            let again = vigil_geofences::Shape::from_geometry(&area.shape.to_geometry(), area.shape.radius_m());
            prop_assert!(again.is_ok(), "{:?}", again);
            // It answers containment wherever it is asked, and its own boxes are finite.
            let _ = area.shape.contains(0.0, 0.0);
            prop_assert!(area.shape.bounding_boxes().iter().flatten().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn tracker_payloads_give_finite_fixes_or_named_problems(value in prop_oneof![json(), fix_like()]) {
        for read in [crate::ingest::owntracks::read_fix, crate::ingest::osmand::json_fix] {
            match read(&value) {
                Ok(fix) => prop_assert!(fix.lat.is_finite() && fix.lon.is_finite()
                    && fix.accuracy_m.is_none_or(f64::is_finite)),
                Err(crate::error::AppError::Invalid { issues, .. }) => prop_assert!(!issues.is_empty()),
                Err(other) => prop_assert!(false, "not a 422: {other:?}"),
            }
        }
    }

    #[test]
    fn form_bodies_read_back_what_was_encoded(pairs in prop::collection::vec(("[a-z_]{1,8}", ".{0,12}"), 0..8), junk in ".{0,40}") {
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(k, v)| {
                let v: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
                format!("{k}={v}")
            })
            .collect();
        let read = crate::ingest::osmand::parse_form(&encoded.join("&"));
        prop_assert_eq!(read, pairs.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
        let _ = crate::ingest::osmand::parse_form(&junk);
    }

    #[test]
    fn client_messages_read_either_way_alike_and_round_trip(value in json(), text in ".{0,60}") {
        for input in [value.to_string(), text] {
            let fast = vigil_protocol::ClientMessage::parse(&input);
            let plain = serde_json::from_str::<vigil_protocol::ClientMessage>(&input);
            prop_assert_eq!(fast.as_ref().ok(), plain.as_ref().ok());
            if let Ok(message) = fast {
                let again = serde_json::to_string(&message).map(|t| vigil_protocol::ClientMessage::parse(&t));
                prop_assert!(matches!(&again, Ok(Ok(m)) if *m == message), "{input}: {again:?}");
            }
        }
    }

    #[test]
    fn roster_files_give_numbered_rows_or_named_problems(
        lines in prop::collection::vec(prop::collection::vec("[^\n]{0,10}", 1..6), 0..8),
        value in json(),
        bytes in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        let csv = lines.iter().map(|l| l.join(",")).collect::<Vec<_>>().join("\n");
        for result in [
            crate::users::roster::read_csv(csv.as_bytes()),
            crate::users::roster::read_csv(&bytes),
            crate::users::roster::read_json(value.to_string().as_bytes()),
            crate::users::roster::read_json(&bytes),
        ] {
            match result {
                Ok(rows) => prop_assert!(rows.iter().all(|r| !r.at.is_empty())),
                Err(crate::error::AppError::Invalid { issues, .. }) => prop_assert!(!issues.is_empty()),
                Err(other) => prop_assert!(false, "not a 422: {other:?}"),
            }
        }
    }
}
