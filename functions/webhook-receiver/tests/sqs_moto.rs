//! The handler against SQS and Secrets Manager on a local moto_server: what lands on standard and FIFO
//! queues (bodies, attributes, group and deduplication ids), what happens when SQS fails, and that no
//! rejected request leaves anything on the queue. The secret is read from Secrets Manager, as in AWS.

mod common;

use common::*;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_testkit::{workspace_root, MotoServer};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use webhook_receiver::{handle, Config, Deps, SecretSource};

struct World {
    moto: MotoServer,
    secret_arn: String,
}

impl World {
    async fn start() -> World {
        let moto = MotoServer::start();
        let secret_arn = moto
            .create_secret("webhook-secrets", &json!({"secrets": [SECRET, PREVIOUS]}))
            .await;
        World { moto, secret_arn }
    }

    fn config(&self, queue_url: &str, extra: &[(&str, &str)]) -> Config {
        let mut vars: HashMap<String, String> = [
            ("WEBHOOK_SECRET_ID", self.secret_arn.as_str()),
            ("EVENT_QUEUE_URL", queue_url),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        Config::from_env(&move |k: &str| vars.get(k).cloned()).unwrap()
    }

    /// Production wiring (`Deps::new`: Secrets Manager, SQS) with the clock at `NOW`.
    async fn deps(&self, config: Config) -> Deps {
        let mut deps = Deps::new(config, &self.moto.sdk_config().await);
        deps.clock = Arc::new(|| NOW);
        deps
    }

    async fn messages(&self, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.moto.drain_queue(queue_url).await
    }
}

fn attr(m: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    let a = m.message_attributes.as_ref()?.get(name)?;
    assert_eq!(a.data_type, "String", "{name}");
    a.string_value.clone()
}

fn system(m: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as N;
    m.attributes.as_ref()?.get(&N::from(name)).cloned()
}

#[tokio::test]
async fn with_the_event_topic_every_subscription_gets_each_event_with_its_attributes() {
    // EVENT_TOPIC_ARN set (the fan-out), no EVENT_QUEUE_URL: the receiver publishes once; the crm-updater's and
    // the analytics sink's queues, subscribed with raw message delivery, each get the event as the queue
    // contract has it.
    let world = World::start().await;
    let sdk = world.moto.sdk_config().await;
    let sns = aws_sdk_sns::Client::new(&sdk);
    let sqs = world.moto.sqs().await;
    let topic = sns
        .create_topic()
        .name("events")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let mut queues = Vec::new();
    for name in ["crm", "analytics"] {
        let url = world.moto.create_queue(name).await;
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .unwrap();
        queues.push(url);
    }
    let config = world.config("", &[("EVENT_TOPIC_ARN", topic.as_str())]);
    let deps = world.deps(config).await;
    let response = handle(
        &deps,
        signed(Origin::HttpV2, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 200, "{:?}", body_json(&response));
    for queue in &queues {
        let messages = world.messages(queue).await;
        assert_eq!(messages.len(), 1, "{queue}");
        let m = &messages[0];
        assert_eq!(m.body.as_deref(), Some(ENTITY_CHANGED), "the exact body");
        assert_eq!(attr(m, "eventType").as_deref(), Some("ENTITY_CHANGED"));
        assert_eq!(attr(m, "entityType").as_deref(), Some("Individual"));
        assert_eq!(
            attr(m, "sourceObjectUri").as_deref(),
            Some("entities/0Abc123")
        );
        assert_eq!(attr(m, "eventId").map(|id| id.len()), Some(64));
    }
}

#[tokio::test]
async fn a_standard_queue_gets_the_exact_bodies_and_attributes() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events").await;
    let deps = world.deps(world.config(&queue, &[])).await;
    let body = format!("[{ENTITY_CHANGED},\n{ENTITIES_MERGED}]");

    let response = handle(
        &deps,
        signed(
            Origin::RestV1,
            body.as_bytes(),
            &[("X-Reltio-Event-Id", "ignored-for-arrays")],
        ),
    )
    .await;

    assert_eq!(status(&response), 200, "{:?}", body_json(&response));
    assert_eq!(body_json(&response), json!({"accepted": 2, "filtered": 0}));
    let mut messages = world.messages(&queue).await;
    messages.sort_by_key(|m| attr(m, "eventType"));
    assert_eq!(messages.len(), 2);
    let merged = &messages[0];
    let changed = &messages[1];
    // Array elements keep their exact bytes (the whitespace between elements is not theirs).
    assert_eq!(changed.body.as_deref(), Some(ENTITY_CHANGED.trim()));
    assert_eq!(merged.body.as_deref(), Some(ENTITIES_MERGED.trim()));
    assert_eq!(
        attr(changed, "eventType").as_deref(),
        Some("ENTITY_CHANGED")
    );
    assert_eq!(attr(changed, "tenantId").as_deref(), Some("T1"));
    assert_eq!(
        attr(changed, "sourceObjectUri").as_deref(),
        Some("entities/0Abc123")
    );
    assert_eq!(attr(changed, "objectVersion").as_deref(), Some("12"));
    let changed_id = attr(changed, "eventId").unwrap();
    assert_eq!(changed_id.len(), 64);
    assert_eq!(
        attr(merged, "eventType").as_deref(),
        Some("ENTITIES_MERGED")
    );
    assert_eq!(
        attr(merged, "sourceObjectUri").as_deref(),
        Some("entities/0Win")
    );
    assert_eq!(attr(merged, "objectVersion"), None);
    assert_ne!(attr(merged, "eventId").unwrap(), changed_id);
    // The consumer can parse what it receives.
    let parsed: Value = serde_json::from_str(changed.body.as_deref().unwrap()).unwrap();
    assert_eq!(parsed["object"]["uri"], "entities/0Abc123");
}

#[tokio::test]
async fn a_fifo_queue_gets_group_and_deduplication_ids() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events.fifo").await;
    let deps = world.deps(world.config(&queue, &[])).await;

    let one = handle(
        &deps,
        signed(
            Origin::HttpV2,
            ENTITY_CHANGED.as_bytes(),
            &[("X-Reltio-Event-Id", "evt-0001")],
        ),
    )
    .await;
    assert_eq!(status(&one), 200, "{:?}", body_json(&one));
    let array = format!("[{ENTITIES_MERGED}]");
    let two = handle(&deps, signed(Origin::RestV1, array.as_bytes(), &[])).await;
    assert_eq!(status(&two), 200);

    let messages = world.messages(&queue).await;
    assert_eq!(messages.len(), 2);
    let changed = messages
        .iter()
        .find(|m| attr(m, "eventType").as_deref() == Some("ENTITY_CHANGED"))
        .unwrap();
    assert_eq!(
        system(changed, "MessageGroupId").as_deref(),
        Some("entities/0Abc123")
    );
    // The unsigned X-Reltio-Event-Id header is not the id: the hash of the signed event is.
    let id = system(changed, "MessageDeduplicationId").unwrap();
    assert_eq!(id.len(), 64, "{id}");
    assert_eq!(attr(changed, "eventId"), Some(id));
    let merged = messages
        .iter()
        .find(|m| attr(m, "eventType").as_deref() == Some("ENTITIES_MERGED"))
        .unwrap();
    assert_eq!(
        system(merged, "MessageGroupId").as_deref(),
        Some("entities/0Win")
    );
    assert_eq!(
        system(merged, "MessageDeduplicationId"),
        attr(merged, "eventId")
    );
}

#[tokio::test]
async fn a_redelivered_event_is_deduplicated_on_a_fifo_queue() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events.fifo").await;
    let deps = world.deps(world.config(&queue, &[])).await;
    // The sender retries the same event (same bytes, no delivery id) twice.
    for _ in 0..2 {
        let r = handle(
            &deps,
            signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
        )
        .await;
        assert_eq!(status(&r), 200);
    }
    assert_eq!(world.messages(&queue).await.len(), 1);
}

#[tokio::test]
async fn a_queue_that_does_not_exist_answers_5xx() {
    let world = World::start().await;
    let missing = format!("{}/123456789012/no-such-queue", world.moto.endpoint);
    let deps = world.deps(world.config(&missing, &[])).await;
    let response = handle(
        &deps,
        signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert!(response.status().is_server_error(), "{}", response.status());
    assert!(body_json(&response)["error"]
        .as_str()
        .unwrap()
        .contains("could not be enqueued"));
}

#[tokio::test]
async fn nothing_is_enqueued_for_any_rejected_request() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events").await;
    let deps = world
        .deps(world.config(&queue, &[("WEBHOOK_MAX_BODY_BYTES", "4096")]))
        .await;
    let body = ENTITY_CHANGED.as_bytes();
    let wrong = reltio_headers("not-the-secret", Some(NOW), body);
    let old = reltio_headers(SECRET, Some(NOW - 3600), body);
    let future = reltio_headers(SECRET, Some(NOW + 3600), body);
    let big = vec![b' '; 5000];
    let not_event = br#"{"hello":"world"}"#;
    let invalid = b"{not json";
    let mut tampered = body.to_vec();
    tampered[30] ^= 0x01;
    let tampered_headers = reltio_headers(SECRET, Some(NOW), body);

    let rejected = vec![
        (
            403,
            request(Origin::RestV1, body, &[("X-Forwarded-Proto", "http")]),
        ),
        (413, signed(Origin::RestV1, &big, &[])),
        (401, request(Origin::RestV1, body, &[])),
        (401, request(Origin::RestV1, body, &refs(&wrong))),
        (
            401,
            request(Origin::RestV1, &tampered, &refs(&tampered_headers)),
        ),
        (401, request(Origin::RestV1, body, &refs(&old))),
        (401, request(Origin::RestV1, body, &refs(&future))),
        (
            401,
            request(Origin::RestV1, body, &[("X-Reltio-Signature", "sha256=")]),
        ),
        (
            401,
            request(Origin::RestV1, body, &[("X-Reltio-Signature", "garbage")]),
        ),
        (400, signed(Origin::RestV1, not_event, &[])),
        (400, signed(Origin::RestV1, invalid, &[])),
    ];
    for (expected, req) in rejected {
        let response = handle(&deps, req).await;
        assert_eq!(status(&response), expected);
    }
    assert!(world.messages(&queue).await.is_empty());
    // The same deps still accept a good request afterwards.
    let ok = handle(&deps, signed(Origin::RestV1, body, &[])).await;
    assert_eq!(status(&ok), 200);
    assert_eq!(world.messages(&queue).await.len(), 1);
}

#[tokio::test]
async fn a_missing_secret_answers_503_and_enqueues_nothing() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events").await;
    let mut config = world.config(&queue, &[]);
    config.secret_id = "no-such-secret".into();
    let deps = world.deps(config).await;
    let response = handle(
        &deps,
        signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 503);
    assert!(!String::from_utf8_lossy(response.body().as_ref()).contains(SECRET));
    // An unsigned request is refused without needing the secret.
    let response = handle(
        &deps,
        request(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&response), 401);
    assert!(world.messages(&queue).await.is_empty());
}

#[tokio::test]
async fn a_secret_added_during_rotation_is_picked_up_on_the_next_mismatch() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events").await;
    let mut deps = world.deps(world.config(&queue, &[])).await;
    let cache = SecretCache::new(world.moto.secrets().await, &world.secret_arn)
        .with_ages(Duration::from_secs(300), Duration::ZERO);
    deps.secrets = SecretSource::Manager(cache);
    // Fill the cache.
    let r = handle(
        &deps,
        signed(Origin::RestV1, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&r), 200);
    // Rotate: a new current secret, the old one kept as previous.
    world
        .moto
        .secrets()
        .await
        .put_secret_value()
        .secret_id(&world.secret_arn)
        .secret_string(json!({"secrets": ["brand-new-secret", SECRET]}).to_string())
        .send()
        .await
        .unwrap();
    let body = ENTITIES_MERGED.as_bytes();
    let r = handle(
        &deps,
        request(
            Origin::RestV1,
            body,
            &refs(&reltio_headers("brand-new-secret", None, body)),
        ),
    )
    .await;
    assert_eq!(status(&r), 200);
    assert_eq!(world.messages(&queue).await.len(), 2);
}

#[tokio::test]
async fn the_sample_event_is_accepted_with_the_documented_test_secret() {
    // events/webhook-receiver.json is signed with the secret README.md documents.
    let world = World::start().await;
    let arn = world
        .moto
        .create_secret(
            "mdm-sync/webhook-test",
            &json!({"secrets": ["mdm-sync-test-webhook-secret"]}),
        )
        .await;
    let queue = world.moto.create_queue("mdm-events").await;
    let mut config = world.config(&queue, &[]);
    config.secret_id = arn;
    let mut deps = Deps::new(config, &world.moto.sdk_config().await);
    deps.clock = Arc::new(wall_clock);
    for name in ["webhook-receiver.json", "webhook-receiver-http-api.json"] {
        let path = workspace_root().join("events").join(name);
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let response = handle(&deps, to_request(&event)).await;
        assert_eq!(status(&response), 200, "{name}: {:?}", body_json(&response));
    }
    let messages = world.messages(&queue).await;
    assert_eq!(messages.len(), 2);
}

/// The sample events carry no timestamp, so any clock works.
fn wall_clock() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn a_replayed_delivery_is_answered_without_a_second_copy_on_the_queue() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events").await;
    world.moto.create_ledger_table("webhook-replay").await;
    let deps = world
        .deps(world.config(&queue, &[("WEBHOOK_REPLAY_TABLE", "webhook-replay")]))
        .await;
    let first = handle(
        &deps,
        signed(Origin::HttpV2, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&first), 200);
    // The same signed request again (a replay, or a sender retrying after a lost answer).
    let again = handle(
        &deps,
        signed(Origin::HttpV2, ENTITY_CHANGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(status(&again), 200);
    assert_eq!(body_json(&again)["replayed"], 1);
    assert_eq!(body_json(&again)["accepted"], 0);
    assert_eq!(
        world.messages(&queue).await.len(),
        1,
        "one copy on the queue"
    );
    // Another event is enqueued as usual.
    let other = handle(
        &deps,
        signed(Origin::HttpV2, ENTITIES_MERGED.as_bytes(), &[]),
    )
    .await;
    assert_eq!(body_json(&other)["accepted"], 1);
}

#[tokio::test]
async fn an_unreachable_replay_cache_never_costs_an_event() {
    let world = World::start().await;
    let queue = world.moto.create_queue("mdm-events").await;
    // No such table: every cache call fails.
    let deps = world
        .deps(world.config(&queue, &[("WEBHOOK_REPLAY_TABLE", "missing-table")]))
        .await;
    for _ in 0..2 {
        let r = handle(
            &deps,
            signed(Origin::HttpV2, ENTITY_CHANGED.as_bytes(), &[]),
        )
        .await;
        assert_eq!(status(&r), 200);
    }
    assert_eq!(
        world.messages(&queue).await.len(),
        2,
        "enqueued both times: duplicates, not losses"
    );
}

#[test]
fn the_replay_window_must_outlast_the_timestamp_tolerance() {
    let vars = |ttl: &'static str| {
        move |k: &str| match k {
            "WEBHOOK_SECRET_ID" => Some("s".to_owned()),
            "EVENT_QUEUE_URL" => Some("https://sqs.us-east-1.amazonaws.com/0/q".to_owned()),
            "WEBHOOK_REPLAY_TABLE" => Some("t".to_owned()),
            "WEBHOOK_REPLAY_TTL_SECONDS" => Some(ttl.to_owned()),
            _ => None,
        }
    };
    let err = Config::from_env(&vars("300")).unwrap_err();
    assert!(
        err.to_string().contains("WEBHOOK_REPLAY_TTL_SECONDS"),
        "{err}"
    );
    assert_eq!(
        Config::from_env(&vars("3600")).unwrap().replay,
        Some(("t".to_owned(), Duration::from_secs(3600)))
    );
}
