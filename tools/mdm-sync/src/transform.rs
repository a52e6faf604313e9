//! `mdm-sync transform` and `mdm-sync mapping check`: the mappings offline, no network. `transform` runs DMS
//! records through cdc-ingest's own Kinesis input, planner and executor (the adapters' and the domain's, over a
//! writer that records instead of sending), so its output is exactly the Reltio requests the function would send,
//! in order. `mapping check`
//! validates the cdc-ingest, crm-updater and analytics-sink mappings and shows what sample records and events
//! would produce.

use crate::error::CliError;
use crate::output;
use crate::Global;
use clap::Args;
use futures::future::BoxFuture;
use mdm_sync_adapters::kinesis::{cdc_inputs, KinesisEventRecord, KinesisRecord};
use mdm_sync_domain::analytics::{decode as analytics_decode, AnalyticsMapping};
use mdm_sync_domain::cdc::apply::{apply, ApplySettings};
use mdm_sync_domain::cdc::batch::plan_batch;
use mdm_sync_domain::cdc::mapping::CdcMapping;
use mdm_sync_domain::crm::contacts::{contact_fields, contact_ids};
use mdm_sync_domain::crm::create::{plan_create, write_back};
use mdm_sync_domain::crm::plan::CrmEvent;
use mdm_sync_domain::crm::{CreateSettings, CrmMapping};
use mdm_sync_domain::dms::DEFAULT_BEFORE_IMAGE_FIELD;
use mdm_sync_domain::ports::{Deadline, EntityWriter, PortError};
use mdm_sync_domain::reltio::golden::EntitySnapshot;
use mdm_sync_domain::reltio::message::QueuedEvent;
use mdm_sync_domain::reltio::{CrosswalkKey, EntityBody, ItemOutcome};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// cdc-ingest's `RELTIO_BATCH_SIZE` default.
const DEFAULT_BATCH_SIZE: usize = 100;

#[derive(Args)]
pub struct TransformArgs {
    /// NDJSON of DMS records, or a Kinesis event JSON (`-`: standard input).
    file: PathBuf,
    /// The cdc-ingest mapping file.
    #[arg(long)]
    mapping: PathBuf,
    /// Entities per POST (cdc-ingest's RELTIO_BATCH_SIZE).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,
    /// The before-image field DMS writes (its BeforeImageSettings' FieldName).
    #[arg(long, default_value = DEFAULT_BEFORE_IMAGE_FIELD)]
    before_image_field: String,
}

#[derive(Args)]
pub struct CheckArgs {
    /// A cdc-ingest mapping file.
    #[arg(long)]
    cdc: Option<PathBuf>,
    /// A crm-updater mapping file.
    #[arg(long)]
    crm: Option<PathBuf>,
    /// An analytics-sink mapping file.
    #[arg(long)]
    analytics: Option<PathBuf>,
    /// Sample DMS records (NDJSON or a Kinesis event), shown through the cdc mapping.
    #[arg(long)]
    records: Option<PathBuf>,
    /// Sample Reltio events (a JSON array, or one event), shown through the crm and analytics mappings.
    #[arg(long)]
    events: Option<PathBuf>,
}

/// Records every request instead of sending it; Reltio "accepts" each entity.
#[derive(Default)]
pub struct RecordingWriter {
    requests: Mutex<Vec<Value>>,
}

impl EntityWriter for RecordingWriter {
    fn post_entities<'a>(
        &'a self,
        entities: &'a [&'a EntityBody],
        partial_override: bool,
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<Vec<ItemOutcome>, PortError>> {
        let path = mdm_sync_adapters::reltio::entities_path(partial_override);
        let body = serde_json::to_value(entities).unwrap_or(Value::Null);
        self.requests
            .lock()
            .expect("not poisoned")
            .push(json!({"method": "POST", "path": path, "body": body}));
        let n = entities.len();
        Box::pin(async move { Ok((0..n).map(|_| ItemOutcome::Written { uri: None }).collect()) })
    }

    fn delete_crosswalk<'a>(
        &'a self,
        key: &'a CrosswalkKey,
        _deadline: Deadline,
    ) -> BoxFuture<'a, Result<(), PortError>> {
        self.requests.lock().expect("not poisoned").push(json!({
            "method": "DELETE", "path": "/entities/_byCrosswalk",
            "crosswalk": {"type": key.source, "value": key.value, "sourceTable": key.source_table}}));
        Box::pin(async { Ok(()) })
    }
}

/// The records of `input` as the Kinesis event cdc-ingest receives (a Kinesis event as it is; NDJSON records in
/// order, numbered as sequence numbers 1, 2, ...).
pub fn kinesis_records(input: &[u8]) -> Result<Vec<KinesisEventRecord>, String> {
    if let Ok(event) = serde_json::from_slice::<mdm_sync_adapters::kinesis::KinesisEvent>(input) {
        if !event.records.is_empty() {
            return Ok(event.records);
        }
    }
    let records = crate::replay::records(input)?;
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(i, (key, data))| KinesisEventRecord {
            kinesis: KinesisRecord {
                sequence_number: (i + 1).to_string(),
                partition_key: key,
                data,
            },
            ..KinesisEventRecord::default()
        })
        .collect())
}

/// The requests cdc-ingest sends for `records`, in order, and each record's decision.
pub async fn requests(
    mapping: &CdcMapping,
    records: &[KinesisEventRecord],
    before_image_field: &str,
    batch_size: usize,
) -> (Vec<Value>, Vec<String>) {
    let plan = plan_batch(
        mapping,
        before_image_field,
        &cdc_inputs(records),
        chrono::Utc::now(),
    );
    let decisions = plan.decisions();
    let writer = RecordingWriter::default();
    // One request at a time: the order is the function's (within a wave its requests may run concurrently).
    let settings = ApplySettings {
        batch_size: batch_size.max(1),
        max_concurrency: 1,
    };
    apply(
        &writer,
        plan.waves,
        settings,
        Instant::now() + Duration::from_secs(600),
    )
    .await;
    (
        writer.requests.into_inner().expect("not poisoned"),
        decisions,
    )
}

pub async fn transform(g: &Global, args: TransformArgs) -> Result<ExitCode, CliError> {
    let mapping = CdcMapping::load(&args.mapping.display().to_string())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let input = crate::read_input(&args.file)?;
    let records = kinesis_records(&input)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    let (requests, decisions) = requests(
        &mapping,
        &records,
        &args.before_image_field,
        args.batch_size,
    )
    .await;
    if g.json {
        println!(
            "{}",
            output::json(&json!({"records": decisions, "requests": requests}))
        );
    } else {
        for d in &decisions {
            eprintln!("  {d}");
        }
        for r in &requests {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn check(g: &Global, args: CheckArgs) -> Result<ExitCode, CliError> {
    if args.cdc.is_none() && args.crm.is_none() && args.analytics.is_none() {
        return Err(CliError::Usage(
            "give at least one of --cdc, --crm, --analytics".into(),
        ));
    }
    let mut findings = false;
    let mut report = serde_json::Map::new();
    let mut rows = Vec::new();
    let path = |p: &PathBuf| p.display().to_string();

    let cdc = args.cdc.as_ref().map(|p| {
        (
            path(p),
            CdcMapping::load(&path(p)).map_err(|e| e.to_string()),
        )
    });
    let crm = args.crm.as_ref().map(|p| {
        (
            path(p),
            CrmMapping::load(&path(p)).map_err(|e| e.to_string()),
        )
    });
    let analytics = args.analytics.as_ref().map(|p| {
        (
            path(p),
            AnalyticsMapping::load(&path(p)).map_err(|e| e.to_string()),
        )
    });
    for (kind, result) in [
        (
            "cdc-ingest",
            cdc.as_ref().map(|(p, r)| (p, r.as_ref().err())),
        ),
        (
            "crm-updater",
            crm.as_ref().map(|(p, r)| (p, r.as_ref().err())),
        ),
        (
            "analytics-sink",
            analytics.as_ref().map(|(p, r)| (p, r.as_ref().err())),
        ),
    ] {
        if let Some((file, error)) = result {
            findings |= error.is_some();
            rows.push(vec![
                kind.to_owned(),
                file.clone(),
                error.cloned().unwrap_or_else(|| "valid".into()),
            ]);
            report.insert(
                kind.into(),
                json!({"file": file, "valid": error.is_none(), "error": error}),
            );
        }
    }

    if let (Some(file), Some((_, Ok(mapping)))) = (&args.records, &cdc) {
        let input = crate::read_input(file)?;
        let records = kinesis_records(&input)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        let (requests, decisions) = requests(
            mapping,
            &records,
            DEFAULT_BEFORE_IMAGE_FIELD,
            DEFAULT_BATCH_SIZE,
        )
        .await;
        report.insert(
            "records".into(),
            json!({"decisions": decisions, "requests": requests}),
        );
    }
    if let Some(file) = &args.events {
        let input = crate::read_input(file)?;
        let value: Value = serde_json::from_slice(&input)
            .map_err(|e| CliError::Usage(format!("{}: not JSON: {e}", file.display())))?;
        let events = match value {
            Value::Array(a) => a,
            one => vec![one],
        };
        let mut shown = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let mut entry = serde_json::Map::new();
            // Read as crm-updater reads it (the golden values and crosswalks it plans from).
            let event: Result<CrmEvent, _> = serde_json::from_value(e.clone());
            let Ok(event) = event else {
                findings = true;
                shown.push(json!({"event": i, "error": "not a Reltio event"}));
                continue;
            };
            entry.insert("event".into(), json!(i));
            entry.insert("type".into(), json!(event.event_type));
            if let Some((_, Ok(m))) = &crm {
                let applies = m.event_types.matches(&event.event_type)
                    && m.entity_types.matches(event.entity_type());
                let snapshot = event.object.as_ref();
                let fields = snapshot
                    .and_then(|o| o.attributes.as_ref())
                    .map(|a| Value::Object(contact_fields(m, a)));
                let contacts = snapshot
                    .and_then(|o| o.crosswalks.as_ref())
                    .map(|c| contact_ids(m, c))
                    .unwrap_or_default();
                let mut shown = json!({"applies": applies, "contacts": contacts, "fields": fields});
                if contacts.is_empty() {
                    if let (Some(settings), Some(o)) = (&m.create, snapshot) {
                        shown["create"] = create_preview(m, settings, o);
                    }
                }
                entry.insert("crm-updater".into(), shown);
            }
            if let Some((_, Ok(m))) = &analytics {
                let item = analytics_decode(
                    m,
                    QueuedEvent {
                        message_id: format!("sample-{i}"),
                        json: e.to_string(),
                        event_id: format!("sample-{i}"),
                        ..QueuedEvent::default()
                    },
                    "now",
                );
                let outcome = match &item.outcome {
                    None => "recorded".to_owned(),
                    Some(o) => format!("{o:?}"),
                };
                entry.insert(
                    "analytics-sink".into(),
                    json!({"outcome": outcome, "entity": item.entity_uri}),
                );
            }
            shown.push(Value::Object(entry));
        }
        report.insert("events".into(), Value::Array(shown));
    }

    if g.json {
        println!("{}", output::json(&Value::Object(report)));
    } else {
        println!("{}", output::table(&["mapping", "file", "result"], rows));
        for key in ["records", "events"] {
            if let Some(v) = report.get(key) {
                println!("{key}:\n{}", output::json(v));
            }
        }
    }
    Ok(if findings {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What crm-updater's `create` makes of an entity without a Contact: the upsert and the write-back, or why not.
fn create_preview(
    mapping: &CrmMapping,
    settings: &CreateSettings,
    object: &mdm_sync_domain::reltio::event::EventObject<
        mdm_sync_domain::reltio::golden::GoldenAttributes,
        mdm_sync_domain::reltio::golden::LeanCrosswalks,
    >,
) -> Value {
    let entity = EntitySnapshot {
        uri: object.uri.clone(),
        entity_type: object.entity_type.clone(),
        updated_time: object.updated_time,
        attributes: object.attributes.clone().unwrap_or_default(),
        crosswalks: object.crosswalks.clone().unwrap_or_default(),
    };
    let uri = object.uri.as_deref().unwrap_or_default();
    match plan_create(mapping, settings, &entity, uri) {
        Ok(plan) => json!({
            "externalIdField": settings.external_id_field,
            "externalId": plan.external_id,
            "fields": plan.fields,
            "writeBack": write_back(mapping, &plan, "<the Contact's Id>"),
        }),
        Err(outcome) => json!({"notCreated": format!("{outcome:?}")}),
    }
}
