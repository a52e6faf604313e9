//! Dry run of cdc-ingest on one machine, with no AWS account and no Reltio tenant: decodes a Kinesis event of
//! DMS records (or a Kafka event of Debezium, GoldenGate or DMS messages, e.g. events/cdc-ingest-kafka.json), plans it with a mapping file exactly as the function does, and prints where each record goes
//! and the Reltio requests it would send, wave by wave.
//!
//! `cargo run -p cdc-ingest --example plan -- [EVENT_JSON] [MAPPING_TOML]`
//! (defaults: events/cdc-ingest.json and functions/cdc-ingest/mapping.example.toml)

use cdc_ingest::CdcEvent;
use mdm_sync_adapters::{kafka, kinesis};
use mdm_sync_domain::cdc::batch::plan_batch;
use mdm_sync_domain::cdc::mapping::CdcMapping;
use mdm_sync_domain::cdc::transform::WriteOp;
use mdm_sync_domain::dms::DEFAULT_BEFORE_IMAGE_FIELD;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let event_path = args
        .next()
        .unwrap_or_else(|| "events/cdc-ingest.json".into());
    let mapping_path = args
        .next()
        .unwrap_or_else(|| "functions/cdc-ingest/mapping.example.toml".into());
    let mapping = match CdcMapping::load(&mapping_path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let event: CdcEvent = match std::fs::read(&event_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot read Kinesis or Kafka event {event_path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The records as the function hands them to the planner (the event is one source: the other is empty).
    let (kinesis_records, (kafka_records, lanes)) = match event {
        CdcEvent::Kinesis(event) => (event.records, Default::default()),
        CdcEvent::Kafka(event) => (Vec::new(), kafka::records(event)),
    };
    let mut inputs = kinesis::cdc_inputs(&kinesis_records);
    inputs.extend(kafka::cdc_inputs(&kafka_records, &lanes));
    // Each record's position in its stream, and the batch planned as the function plans it.
    let positions: Vec<String> = inputs.iter().map(|i| i.position.to_string()).collect();
    let plan = plan_batch(
        &mapping,
        DEFAULT_BEFORE_IMAGE_FIELD,
        &inputs,
        chrono::Utc::now(),
    );
    println!(
        "{} records from {event_path}, mapping {mapping_path}\n",
        positions.len()
    );
    for (position, decision) in positions.iter().zip(plan.decisions()) {
        println!("  #{position}  {decision}");
    }
    for (n, wave) in plan.waves.iter().enumerate() {
        println!(
            "\nwave {} (sent after the one before it; one change per crosswalk key):",
            n + 1
        );
        for scheduled in wave {
            let (what, body) = match &scheduled.write.op {
                WriteOp::Post { body, partial } => (
                    if *partial {
                        "POST /entities?options=partialOverride"
                    } else {
                        "POST /entities"
                    },
                    serde_json::to_string(body).unwrap_or_default(),
                ),
                WriteOp::DeleteCrosswalk => ("DELETE /entities/_byCrosswalk", String::new()),
            };
            println!(
                "  {what}  key {}  (records {:?})\n    {body}",
                scheduled.write.key, scheduled.records
            );
        }
    }
    ExitCode::SUCCESS
}
