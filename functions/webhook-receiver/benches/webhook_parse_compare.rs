//! The webhook body's parse against its alternatives: a typed, borrowing `#[derive(Deserialize)]` struct read
//! with `serde_json::from_slice`, and a bare `serde_json::Value` parse as the floor. Same 4 KB `ENTITY_CHANGED`
//! event as `webhook_request.rs`, and a 100-event array of it. Before timing it checks that both ways extract the
//! same values, and prints how the derive treats escaped strings (`Cow::Owned`) and the one-object-or-array shape.
//! It was written to decide between the hand-written one-pass visitor `parse_body` used then and a derive; the
//! derive won, and `parse_body` now is one validating pass plus the `ReltioEvent<Checked>` derive.
//!
//! Cases: `a_parse_body_fast_path` the public `parse_body` with a delivery id; `a2_reltio_event_check_alone` the
//! former readability check (`ReltioEvent` with the snapshot built as a `Value`);
//! `a3_readability_check_snapshot_not_built` today's (`check_readable`); `b_borrowing_derive` the derive;
//! `b2_derive_as_parse_body_owned` the derive with `parse_body`'s checks and an owned `WebhookEvent`;
//! `b3_untagged_one_or_many` the derive behind `#[serde(untagged)]`; `c_value_floor` a `Value`;
//! `c2_ignored_any_skip` skipping only. Array: `a_parse_body_tree_path` (`Value`, canonical-hash ids, checks),
//! `b_derive_raw_spans_then_each` (`Vec<&RawValue>` then each element's `EventRef`; no ids: those hash a `Value`).
//!
//! `cargo bench -p webhook-receiver --bench webhook_parse_compare -- --warm-up-time 1 --measurement-time 3`

use criterion::Criterion;
use mdm_sync_domain::reltio::event::ReltioEvent;
use mdm_sync_domain::webhook::events::{check_readable, sqs_id};
use mdm_sync_domain::webhook::{parse_body, WebhookEvent};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Number, Value};
use std::borrow::Cow;
use std::hint::black_box;

const EVENT_BYTES: usize = 4096;
const DELIVERY_ID: &str = "0Abc123-12-ENTITY_CHANGED";
const ARRAY_LEN: usize = 100;

/// As `webhook_request.rs`: an `ENTITY_CHANGED` event with a full snapshot, grown with crosswalks to ~4 KB.
fn event_body() -> Vec<u8> {
    let uri = "entities/0Abc123";
    let attr = |name: &str, n: usize, value: Value| {
        json!({"type": format!("configuration/entityTypes/Individual/attributes/{name}"), "ov": true,
               "value": value, "uri": format!("{uri}/attributes/{name}/{n}")})
    };
    let mut attributes = Map::new();
    attributes.insert(
        "FirstName".into(),
        json!([attr("FirstName", 1, json!("Jane"))]),
    );
    attributes.insert(
        "LastName".into(),
        json!([attr("LastName", 2, json!("Doe"))]),
    );
    attributes.insert(
        "Email".into(),
        json!([attr(
            "Email",
            3,
            json!({"Email": [attr("Email/Email", 4, json!("jane.doe@example.com"))]})
        )]),
    );
    attributes.insert(
        "Address".into(),
        json!([attr(
            "Address",
            5,
            json!({
                "City": [attr("Address/City", 6, json!("Austin"))],
                "AddressLine1": [attr("Address/AddressLine1", 7, json!("500 Main St"))],
                "Zip": [attr("Address/Zip", 8, json!("78701"))]
            })
        )]),
    );
    attributes.insert(
        "Phone".into(),
        json!([attr("Phone", 9, json!("+1-512-555-0100"))]),
    );
    let mut crosswalks = Vec::new();
    loop {
        let i = crosswalks.len();
        let event = json!({
            "type": "ENTITY_CHANGED",
            "tenantId": "T1",
            "objectVersion": 12,
            "updatedTime": 1722214697983i64,
            "object": {
                "uri": uri,
                "type": "configuration/entityTypes/Individual",
                "createdTime": 1722214600000i64,
                "updatedTime": 1722214697983i64,
                "attributes": attributes,
                "crosswalks": crosswalks,
            },
            "ovChanged": true
        });
        let bytes = serde_json::to_vec(&event).unwrap();
        if bytes.len() >= EVENT_BYTES {
            return bytes;
        }
        crosswalks.push(json!({
            "uri": format!("{uri}/crosswalks/{i}"),
            "type": if i % 2 == 0 { "configuration/sources/SFDC_CONTACT" } else { "configuration/sources/CRM_DB" },
            "value": format!("003AB0000{i:07}"),
            "sourceTable": if i % 2 == 0 { "" } else { "CUSTOMER" },
            "createDate": "2024-07-29T00:58:17.983Z",
            "updateDate": "2024-07-29T00:58:17.983Z",
        }));
    }
}

/// `[event, event, ...]`, each element the 4 KB event with its own entity URI.
fn array_body(event: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(event).unwrap();
    let items: Vec<String> = (0..ARRAY_LEN)
        .map(|i| text.replace("entities/0Abc123", &format!("entities/{i:07}")))
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}

/// A string that borrows from the input when it has no escapes. `#[serde(borrow)]` only takes effect on a field
/// that is exactly `Cow<str>`: inside `Option<_>` or `Vec<_>` a `Cow` is always `Owned`, hence this newtype.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// `objectVersion`: a number or a string (as `ReltioEvent::object_version` reads it), anything else ignored.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Version<'a> {
    Str(#[serde(borrow)] Text<'a>),
    Num(Number),
    Other(IgnoredAny),
}

/// The envelope fields of `ReltioEvent` that the receiver needs, borrowed. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventRef<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    #[serde(default, borrow)]
    object: Option<ObjectRef<'a>>,
    #[serde(default, borrow)]
    uris: Vec<Text<'a>>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_time: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    exceeded_queue_size_limit: bool,
    #[serde(default, borrow)]
    tenant_id: Option<Text<'a>>,
    #[serde(default, borrow)]
    object_version: Option<Version<'a>>,
    #[serde(default, borrow)]
    uri: Option<Text<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef<'a> {
    #[serde(default, borrow)]
    uri: Option<Text<'a>>,
    #[serde(rename = "type", default, borrow)]
    entity_type: Option<Text<'a>>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_time: Option<i64>,
}

/// The same information as `WebhookEvent` minus the id, borrowed from the body.
#[derive(Debug, PartialEq, Eq)]
struct Fields<'a> {
    event_type: &'a str,
    entity_uri: Option<&'a str>,
    entity_type: Option<&'a str>,
    tenant_id: Option<&'a str>,
    object_version: Option<Cow<'a, str>>,
    body: &'a str,
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

impl<'a> EventRef<'a> {
    fn fields(&'a self, body: &'a str) -> Fields<'a> {
        let object = self.object.as_ref();
        let entity_uri = object
            .and_then(|o| o.uri.as_ref())
            .or(self.uri.as_ref())
            .or(self.uris.first())
            .map(|t| &*t.0);
        let object_version = match &self.object_version {
            Some(Version::Str(s)) => Some(Cow::Borrowed(&*s.0)),
            Some(Version::Num(n)) => Some(Cow::Owned(n.to_string())),
            _ => None,
        };
        Fields {
            event_type: &self.event_type,
            entity_uri: non_empty(entity_uri),
            entity_type: non_empty(object.and_then(|o| o.entity_type.as_ref()).map(|t| &*t.0)),
            tenant_id: non_empty(self.tenant_id.as_ref().map(|t| &*t.0)),
            object_version: object_version.filter(|v| !v.is_empty()),
            body,
        }
    }
}

fn fields_of(e: &WebhookEvent) -> Fields<'_> {
    Fields {
        event_type: &e.event_type,
        entity_uri: e.entity_uri.as_deref(),
        entity_type: e.entity_type.as_deref(),
        tenant_id: e.tenant_id.as_deref(),
        object_version: e.object_version.as_deref().map(Cow::Borrowed),
        body: &e.body,
    }
}

/// As the domain's private `is_event_type_name`.
fn is_event_type_name(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// (b) as a drop-in for `parse_body`'s single-event fast path: the derive, the same checks, owned output.
fn derive_parse_body(body: &[u8], delivery_id: &str) -> Option<WebhookEvent> {
    let full = std::str::from_utf8(body).ok()?;
    let full = full.strip_prefix('\u{feff}').unwrap_or(full);
    let text = full.trim_matches([' ', '\t', '\n', '\r']);
    let event: EventRef = serde_json::from_str(text).ok()?;
    if text.contains(['\u{fffe}', '\u{ffff}']) || !is_event_type_name(&event.event_type) {
        return None;
    }
    let f = event.fields(full);
    Some(WebhookEvent {
        id: sqs_id(delivery_id),
        event_type: f.event_type.to_owned(),
        entity_uri: f.entity_uri.map(str::to_owned),
        entity_type: f.entity_type.map(str::to_owned),
        tenant_id: f.tenant_id.map(str::to_owned),
        object_version: f.object_version.map(Cow::into_owned),
        body: full.to_owned(),
    })
}

/// One event object or an array of them, by the first byte: the elements as raw text (the message bodies),
/// each then read as an `EventRef`.
fn derive_one_or_many(text: &str) -> serde_json::Result<Vec<(&str, EventRef<'_>)>> {
    if text.starts_with('[') {
        let raws: Vec<&RawValue> = serde_json::from_str(text)?;
        raws.into_iter()
            .map(|raw| Ok((raw.get(), serde_json::from_str(raw.get())?)))
            .collect()
    } else {
        Ok(vec![(text, serde_json::from_str(text)?)])
    }
}

/// The same shape with `#[serde(untagged)]` (serde buffers the input, then tries each variant).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<'a> {
    #[serde(borrow)]
    One(EventRef<'a>),
    Many(Vec<EventRef<'a>>),
}

// It reports the `Cow`'s variant, which a `&str` would not show.
#[allow(clippy::ptr_arg)]
fn borrowed(c: &Cow<'_, str>) -> &'static str {
    match c {
        Cow::Borrowed(_) => "Borrowed",
        Cow::Owned(_) => "Owned",
    }
}

/// What the derive does with escapes, `Option<Cow>` and the one-or-many shape; printed before the timings.
fn print_derive_facts() {
    #[derive(Deserialize)]
    struct Plain<'a> {
        #[serde(borrow)]
        a: Cow<'a, str>,
        #[serde(borrow)]
        b: Cow<'a, str>,
        #[serde(borrow)]
        c: Cow<'a, str>,
        #[serde(borrow)]
        opt: Option<Cow<'a, str>>,
        #[serde(borrow)]
        opt_text: Option<Text<'a>>,
    }
    let input = r#"{"a": "plain", "b": "quote \" inside", "c": "caf\u00e9", "opt": "plain", "opt_text": "plain"}"#;
    let p: Plain = serde_json::from_str(input).unwrap();
    println!("derive facts:");
    println!(
        "  Cow<str> with #[serde(borrow)]: plain {}, with \\\" {}, with \\u00e9 {}",
        borrowed(&p.a),
        borrowed(&p.b),
        borrowed(&p.c)
    );
    println!(
        "  Option<Cow<str>> with #[serde(borrow)], plain text: {}; Option<Text> (newtype): {}",
        borrowed(p.opt.as_ref().unwrap()),
        borrowed(&p.opt_text.as_ref().unwrap().0)
    );
    let raw_escaped = r#"{"type": "ENTITY_CHANGED", "tenantId": "T\"1"}"#;
    assert!(serde_json::from_str::<&str>(r#""T\"1""#).is_err());
    let e: EventRef = serde_json::from_str(raw_escaped).unwrap();
    println!(
        "  &str field on an escaped value: error (\"invalid type: string, expected a borrowed string\"); Text: {}",
        borrowed(&e.tenant_id.unwrap().0)
    );
    let one = r#"{"type": "ENTITY_CHANGED"}"#;
    let many =
        r#"[{"type": "ENTITY_CHANGED"}, {"type": "ENTITIES_MERGED", "uris": ["entities/1"]}]"#;
    let shape = |t: &str| match serde_json::from_str::<OneOrMany>(t) {
        Ok(OneOrMany::One(e)) => format!("One({})", e.event_type),
        Ok(OneOrMany::Many(v)) => format!("Many({})", v.len()),
        Err(e) => format!("error: {e}"),
    };
    println!(
        "  #[serde(untagged)] one-or-many: object -> {}, array -> {}, a bad array -> {}",
        shape(one),
        shape(many),
        shape(r#"[{"type": 1}]"#)
    );
    let dup = r#"{"type": "ENTITY_CHANGED", "type": "ENTITY_CREATED"}"#;
    println!(
        "  duplicate key: derive -> {}, parse_body -> {}",
        serde_json::from_str::<EventRef>(dup)
            .err()
            .map_or("accepted".to_owned(), |e| e.to_string()),
        parse_body(dup.as_bytes(), Some(DELIVERY_ID))
            .err()
            .map_or("accepted".to_owned(), |e| e.to_string())
    );
    let big_number = r#"{"type": "ENTITY_CHANGED", "other": 1e400}"#;
    println!(
        "  out-of-range number in an unknown field: derive -> {}, parse_body -> {}",
        serde_json::from_str::<EventRef>(big_number)
            .err()
            .map_or("accepted".to_owned(), |e| e.to_string()),
        parse_body(big_number.as_bytes(), Some(DELIVERY_ID))
            .err()
            .map_or("accepted".to_owned(), |e| e.to_string())
    );
}

fn main() {
    let body = event_body();
    let array = array_body(&body);
    let text = std::str::from_utf8(&body).unwrap();
    let array_text = std::str::from_utf8(&array).unwrap();
    println!(
        "inputs: one event {} B, array of {ARRAY_LEN} events {} B",
        body.len(),
        array.len()
    );
    print_derive_facts();

    // Same values both ways, before any timing.
    let fast = parse_body(&body, Some(DELIVERY_ID)).unwrap();
    assert_eq!(fast.len(), 1);
    assert_eq!(
        derive_parse_body(&body, DELIVERY_ID).as_ref(),
        Some(&fast[0])
    );
    let event: EventRef = serde_json::from_slice(&body).unwrap();
    assert_eq!(event.fields(text), fields_of(&fast[0]));
    assert!(matches!(event.event_type, Cow::Borrowed(_)));
    assert_eq!(fast[0].object_version.as_deref(), Some("12"));
    assert_eq!(
        fast[0].entity_type.as_deref(),
        Some("configuration/entityTypes/Individual")
    );
    let tree = parse_body(&array, None).unwrap();
    let derived = derive_one_or_many(array_text).unwrap();
    assert_eq!(tree.len(), ARRAY_LEN);
    assert_eq!(derived.len(), ARRAY_LEN);
    for (t, (raw, e)) in tree.iter().zip(&derived) {
        assert_eq!(e.fields(raw), fields_of(t));
    }
    match serde_json::from_slice::<OneOrMany>(&array).unwrap() {
        OneOrMany::Many(v) => assert_eq!(v.len(), ARRAY_LEN),
        OneOrMany::One(_) => panic!("an array read as one event"),
    }

    let mut c = Criterion::default().configure_from_args().sample_size(50);
    {
        let mut g = c.benchmark_group("webhook_parse/one_4kb_event");
        g.bench_function("a_parse_body_fast_path", |b| {
            b.iter(|| parse_body(black_box(&body), Some(DELIVERY_ID)).unwrap())
        });
        g.bench_function("a2_reltio_event_check_alone", |b| {
            b.iter(|| serde_json::from_slice::<ReltioEvent>(black_box(&body)).unwrap())
        });
        let text = std::str::from_utf8(&body).unwrap();
        g.bench_function("a3_readability_check_snapshot_not_built", |b| {
            b.iter(|| check_readable(black_box(text)).unwrap())
        });
        g.bench_function("b_borrowing_derive", |b| {
            b.iter(|| serde_json::from_slice::<EventRef>(black_box(&body)).unwrap())
        });
        g.bench_function("b2_derive_as_parse_body_owned", |b| {
            b.iter(|| derive_parse_body(black_box(&body), DELIVERY_ID).unwrap())
        });
        g.bench_function("b3_untagged_one_or_many", |b| {
            b.iter(|| serde_json::from_slice::<OneOrMany>(black_box(&body)).unwrap())
        });
        g.bench_function("c_value_floor", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).unwrap())
        });
        g.bench_function("c2_ignored_any_skip", |b| {
            b.iter(|| serde_json::from_slice::<IgnoredAny>(black_box(&body)).unwrap())
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("webhook_parse/array_100_events");
        g.bench_function("a_parse_body_tree_path", |b| {
            b.iter(|| parse_body(black_box(&array), None).unwrap())
        });
        g.bench_function("b_derive_raw_spans_then_each", |b| {
            b.iter(|| derive_one_or_many(black_box(array_text)).unwrap())
        });
        g.bench_function("b3_untagged_one_or_many", |b| {
            b.iter(|| serde_json::from_slice::<OneOrMany>(black_box(&array)).unwrap())
        });
        g.bench_function("c_value_floor", |b| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(&array)).unwrap())
        });
        g.finish();
    }
    c.final_summary();
}
