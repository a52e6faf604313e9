//! Properties that must hold for any input, checked by the fuzz targets (`fuzz/`, `make fuzz`) and replayed over
//! their committed corpora by `cargo test`: each function panics when its property does not hold, and never
//! panics otherwise. Inputs are raw bytes, as a fuzzer gives them. Built only for this crate's tests and with the
//! `properties` feature (which fuzz/ enables): not part of the production crate.

use crate::cdc::mapping::CdcMapping;
use crate::cdc::transform::plan_record;
use crate::crm::plan::{decode, plan_entity, CrmEvent};
use crate::crm::CrmMapping;
use crate::dms::{DmsRecord, Row};
use crate::queue::Delivery;
use crate::reltio::event::ReltioEvent;
use crate::reltio::golden_value;
use crate::reltio::message::queued_events;
use crate::webhook::events::{check_readable, parse_body, parse_both_ways, sqs_attribute_ok};
use crate::webhook::signature::{sign_reltio, sign_standard, verify, RequestHeaders};
use crate::webhook::{VerifyOptions, WebhookSecrets};
use serde_json::Value;

/// The mappings the properties run against: the documented examples, read from the checkout when asked for (the
/// fuzz targets and the tests run in one; nothing of functions/ is compiled in).
pub fn example_cdc_mapping() -> CdcMapping {
    CdcMapping::parse(&workspace_file("functions/cdc-ingest/mapping.example.toml"))
        .expect("the example CDC mapping is valid")
}

pub fn example_crm_mapping() -> CrmMapping {
    CrmMapping::parse(&workspace_file(
        "functions/crm-updater/mapping.example.toml",
    ))
    .expect("the example CRM mapping is valid")
}

/// A file of the workspace this crate was built in, by its path from the workspace root.
fn workspace_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The DMS decoder and the transform accept or refuse any bytes, never panic; a record the one-pass decoder
/// accepts is JSON and, where a `serde_json::Value` tree parse reads it too (it refuses numbers beyond a float's
/// range, which the decoder keeps as text), has the rows the tree gives, numbers compared as the tree reads them.
pub fn dms_decoder(mapping: &CdcMapping, data: &[u8]) {
    if let Ok(record) = DmsRecord::parse(data, "before-image") {
        serde_json::from_slice::<&serde_json::value::RawValue>(data)
            .expect("an accepted record is JSON");
        if let Ok(tree) = serde_json::from_slice::<serde_json::Value>(data) {
            let row = |field: &str| tree.get(field).filter(|v| v.is_object()).cloned();
            assert_eq!(
                Some(record.data.to_value()),
                row("data").or(Some(Value::Object(Default::default())))
            );
            assert_eq!(
                record.before_image.as_ref().map(Row::to_value),
                row("before-image")
            );
        }
        let _ = plan_record(mapping, &record, chrono::DateTime::UNIX_EPOCH);
    }
}

/// The webhook body's fast path, when it answers, answers exactly as the tree parse does.
pub fn webhook_parsers_agree(data: &[u8]) {
    // The first byte decides whether the request carried a (signed) delivery id.
    let (id, body) = match data.split_first() {
        Some((b, rest)) if b % 2 == 0 => (Some("msg_fuzz"), rest),
        Some((_, rest)) => (None, rest),
        None => (None, data),
    };
    if let Some((fast, tree)) = parse_both_ways(body, id) {
        assert_eq!(fast, tree, "the fast path and the tree parse disagree");
    }
}

/// A body signed under either scheme verifies; the same signature over any other body does not.
pub fn signature_roundtrip(data: &[u8]) {
    let (secret, body) = match data.split_first() {
        Some((n, rest)) => {
            let n = (*n as usize % 32).min(rest.len());
            (String::from_utf8_lossy(&rest[..n]).into_owned(), &rest[n..])
        }
        None => return,
    };
    let secret = format!("k{secret}");
    let Some(secrets) = WebhookSecrets::new([secret.as_str()]) else {
        return;
    };
    let now = 1_722_214_700;
    let options = VerifyOptions::default();
    let mut tampered = body.to_vec();
    match tampered.last_mut() {
        Some(b) => *b ^= 0x01,
        None => tampered.push(b'x'),
    }

    let signature = sign_reltio(&secret, Some(now), body);
    let headers = |sig: &str| -> RequestHeaders {
        [
            ("X-Reltio-Signature", sig.to_owned()),
            ("X-Reltio-Timestamp", now.to_string()),
        ]
        .into_iter()
        .collect()
    };
    assert!(
        verify(&headers(&signature), body, &secrets, now, options).is_ok(),
        "signed, refused"
    );
    assert!(
        verify(&headers(&signature), &tampered, &secrets, now, options).is_err(),
        "another body passed"
    );

    let standard_secret = format!("whsec_{}", base64_of(secret.as_bytes()));
    let secrets = WebhookSecrets::new([standard_secret.as_str()]).expect("not blank");
    let signature = sign_standard(&standard_secret, "msg_1", now, body).expect("base64 key");
    let headers = |sig: &str| -> RequestHeaders {
        [
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", sig.to_owned()),
        ]
        .into_iter()
        .collect()
    };
    assert!(
        verify(&headers(&signature), body, &secrets, now, options).is_ok(),
        "signed, refused"
    );
    assert!(
        verify(&headers(&signature), &tampered, &secrets, now, options).is_err(),
        "another body passed"
    );
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whatever the receiver accepts, SQS can carry (attributes, ids, body) and the crm-updater can read as an event.
pub fn accepted_is_sendable(mapping: &CrmMapping, data: &[u8]) {
    let Ok(events) = parse_body(data, None) else {
        return;
    };
    for event in events {
        for fifo in [false, true] {
            let m = event.to_message(fifo);
            for (name, value) in &m.attributes {
                assert!(
                    sqs_attribute_ok(value),
                    "attribute {name} is not sendable: {value:?}"
                );
            }
            for id in [&m.group_id, &m.dedup_id].into_iter().flatten() {
                assert!(
                    !id.is_empty()
                        && id.len() <= 128
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation()),
                    "FIFO id is not sendable: {id:?}"
                );
            }
            assert!(
                !m.body.contains(['\u{fffe}', '\u{ffff}']),
                "the body holds characters SQS refuses"
            );
        }
        let delivery = Delivery {
            message_id: "m".into(),
            body: event.body.clone(),
            event_id: Some(event.id.clone()),
            ..Delivery::default()
        };
        let queued = queued_events(delivery).expect("an accepted event is a readable message");
        for item in queued.into_iter().map(|q| decode(mapping, q)) {
            if let Some(crate::outcome::Outcome::Permanent(reason)) = &item.outcome {
                assert!(
                    !reason.starts_with("not a Reltio event"),
                    "accepted by the receiver, refused by the crm-updater: {reason}"
                );
            }
        }
    }
}

/// The crm-updater's decoding and planning of any message body, with any snapshot, never panics; and the
/// receiver's readability check accepts exactly the bodies the crm-updater parses as events.
pub fn crm_event(mapping: &CrmMapping, data: &[u8]) {
    let body = String::from_utf8_lossy(data).into_owned();
    let accepted = check_readable(&body).is_ok();
    let lean = serde_json::from_str::<CrmEvent>(&body);
    assert_eq!(
        accepted,
        lean.is_ok(),
        "the receiver's check and the crm-updater's parse disagree"
    );
    let full = serde_json::from_str::<ReltioEvent>(&body);
    assert_eq!(
        accepted,
        full.is_ok(),
        "the receiver's check and a full parse of the event disagree"
    );
    if let (Ok(full), Ok(lean)) = (full, lean) {
        lean_snapshot_reads_as_the_full_one(mapping, &full, &lean);
    }
    let delivery = Delivery {
        message_id: "m".into(),
        body,
        ..Delivery::default()
    };
    for queued in queued_events(delivery).unwrap_or_default() {
        let mut item = decode(mapping, queued);
        plan_entity(mapping, &mut item);
    }
}

/// The golden values the mapping reads and the live Contact crosswalks are the same in the lean snapshot as in
/// the full tree (a nested attribute's own value aside: the lean one is leaner).
fn lean_snapshot_reads_as_the_full_one(mapping: &CrmMapping, full: &ReltioEvent, lean: &CrmEvent) {
    let (Some(full), Some(lean)) = (&full.object, &lean.object) else {
        return;
    };
    if let (Some(full), Some(lean)) = (&full.attributes, &lean.attributes) {
        for f in &mapping.fields {
            let want = golden_value(full, &f.attribute);
            if !want.is_some_and(Value::is_object) {
                assert_eq!(lean.golden_value(&f.attribute), want, "{}", f.attribute);
            }
        }
    }
    // The full tree's crosswalks as the rule reads them: string type and value, `deleteDate` unset or null.
    let live = |c: &Value| {
        let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        let end_dated = c.get("deleteDate").is_some_and(|d| !d.is_null());
        (text("type"), text("value"), end_dated)
    };
    if let (Some(full), Some(lean)) = (&full.crosswalks, &lean.crosswalks) {
        let want: Vec<_> = full
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c.is_object())
            .map(live)
            .collect();
        let got: Vec<_> = lean
            .0
            .iter()
            .map(|c| (c.source_type.clone(), c.value.clone(), c.end_dated))
            .collect();
        assert_eq!(got, want, "crosswalks");
    }
}

/// Both mapping parsers accept or refuse any text, never panic.
pub fn mappings(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = CdcMapping::parse(&text);
    let _ = CrmMapping::parse(&text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Every file of a fuzz target's committed corpus.
    fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus")
            .join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: empty corpus");
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    #[test]
    fn the_committed_corpora_keep_every_property() {
        let cdc = example_cdc_mapping();
        let crm = example_crm_mapping();
        for input in corpus("dms_decoder") {
            dms_decoder(&cdc, &input);
        }
        for input in corpus("webhook_parsers_agree") {
            webhook_parsers_agree(&input);
        }
        for input in corpus("signature_roundtrip") {
            signature_roundtrip(&input);
        }
        for input in corpus("accepted_is_sendable") {
            accepted_is_sendable(&crm, &input);
        }
        for input in corpus("crm_event") {
            crm_event(&crm, &input);
        }
        for input in corpus("mappings") {
            mappings(&input);
        }
    }
}
