use super::*;
use crate::cdc::input::Position;
use crate::cdc::transform::WriteOp;
use crate::dms::DEFAULT_BEFORE_IMAGE_FIELD;
use chrono::TimeZone;
use serde_json::Value;

const EXAMPLE: &str = include_str!("../../../../../functions/cdc-ingest/mapping.example.toml");
const INSERT_46: &[u8] = include_bytes!("../../../../../tests/fixtures/dms/insert.json");

fn mapping() -> CdcMapping {
    CdcMapping::parse(EXAMPLE).unwrap()
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()
}

fn kinesis(data: &[u8]) -> CdcInput<'_> {
    CdcInput {
        change: SourceChange::Dms(data),
        lane: 0,
        position: Position::Sequence("1"),
    }
}

fn kafka<'a>(
    topic: &'a str,
    value: Result<Option<&'a [u8]>, &'static str>,
    lane: usize,
) -> CdcInput<'a> {
    CdcInput {
        change: SourceChange::Kafka(KafkaChange {
            topic,
            key: None,
            value,
            headers: &[],
        }),
        lane,
        position: Position::Offset {
            partition: topic,
            offset: 0,
        },
    }
}

/// insert.json for customer 46 with another first name, committed `commit` (DMS's timestamp format).
fn insert_46(first_name: &str, commit: &str) -> Vec<u8> {
    let mut record: Value = serde_json::from_slice(INSERT_46).unwrap();
    record["data"]["first_name"] = first_name.into();
    record["metadata"]["commit-timestamp"] = commit.into();
    serde_json::to_vec(&record).unwrap()
}

/// The first names the plan's POSTs send, wave by wave, with the records each write stands for.
fn first_names(plan: &BatchPlan) -> Vec<(Vec<usize>, String)> {
    plan.waves
        .iter()
        .flatten()
        .filter_map(|w| match &w.write.op {
            WriteOp::Post { body, .. } => {
                let body = serde_json::to_value(body).unwrap();
                let name = body["attributes"]["FirstName"][0]["value"]
                    .as_str()?
                    .to_owned();
                Some((w.records.clone(), name))
            }
            WriteOp::DeleteCrosswalk => None,
        })
        .collect()
}

#[test]
fn a_dms_record_is_planned_with_what_logs_and_dead_letters_need() {
    let inputs = [kinesis(INSERT_46), kinesis(b"not json")];
    let plan = plan_batch(&mapping(), DEFAULT_BEFORE_IMAGE_FIELD, &inputs, now());
    let decisions = plan.decisions();
    assert_eq!(decisions[0], "public.customer CRM_DB/CUSTOMER:46 → write");
    assert!(
        decisions[1].starts_with("? - → dead-letter: "),
        "{decisions:?}"
    );
    assert_eq!(plan.outcomes[0], None);
    let info = &plan.infos[0];
    assert_eq!(info.table.as_deref(), Some("public.customer"));
    assert_eq!(info.key.as_ref().map(|k| k.value.as_str()), Some("46"));
    assert_eq!(
        info.position.as_deref(),
        Some("2024-07-29T00:58:17.974340Z")
    );
    assert!(info.source_time.is_some());
    assert_eq!(plan.infos[1], RecordInfo::default());
    assert_eq!(first_names(&plan), [(vec![0], "Jane".to_owned())]);
}

#[test]
fn a_kafka_message_that_cannot_be_read_is_a_dead_letter_with_its_reason() {
    let inputs = [
        kafka("t", Err("the event's record value is not base64"), 0),
        kafka("t", Ok(Some(br#"{"neither": "dms nor debezium"}"#)), 0),
        kafka("t", Ok(None), 0),
        kafka("t", Ok(Some(INSERT_46)), 0),
    ];
    let plan = plan_batch(&mapping(), DEFAULT_BEFORE_IMAGE_FIELD, &inputs, now());
    assert_eq!(
        plan.outcomes[0],
        Some(Outcome::Permanent(
            "the event's record value is not base64".into()
        ))
    );
    let Some(Outcome::Permanent(reason)) = &plan.outcomes[1] else {
        panic!("{:?}", plan.outcomes[1])
    };
    assert!(
        reason.starts_with("topic \"t\" is not in the mapping's [topics]"),
        "{reason}"
    );
    // A null value on a topic the mapping does not name is a Debezium tombstone; DMS JSON is told from its fields.
    assert_eq!(
        plan.outcomes[2],
        Some(Outcome::Skipped(SkipReason::Tombstone))
    );
    assert_eq!(plan.outcomes[3], None);
    assert_eq!(first_names(&plan), [(vec![3], "Jane".to_owned())]);
}

#[test]
fn one_lane_keeps_its_order_and_lanes_merge_by_source_version() {
    let newer = insert_46("Newer", "2024-07-29T00:59:00.000000Z");
    let older = insert_46("Older", "2024-07-29T00:58:00.000000Z");
    // One lane: the stream's order counts, even where the clock steps back (the later record's upsert wins).
    let one = [
        kafka("t", Ok(Some(&newer)), 0),
        kafka("t", Ok(Some(&older)), 0),
    ];
    let plan = plan_batch(&mapping(), DEFAULT_BEFORE_IMAGE_FIELD, &one, now());
    assert_eq!(first_names(&plan), [(vec![0, 1], "Older".to_owned())]);
    // Two lanes listed newer first: merged by version, the older change goes first and the newer one wins.
    let two = [
        kafka("t", Ok(Some(&newer)), 0),
        kafka("t", Ok(Some(&older)), 1),
    ];
    let plan = plan_batch(&mapping(), DEFAULT_BEFORE_IMAGE_FIELD, &two, now());
    assert_eq!(first_names(&plan), [(vec![1, 0], "Newer".to_owned())]);
}
