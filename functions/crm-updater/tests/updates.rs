//! crm-updater applying Reltio changes to Salesforce Contacts, end to end against a wiremock Salesforce and
//! Reltio and a moto_server (ledger, DLQ, secrets): what is written, what is skipped and counted, how
//! Salesforce's failures are classed (retried or dead-lettered), token renewal, and the metrics.

mod common;
mod events;

use common::{
    dead_letters, entity, env, env_with, mount_token, run, sqs, writes, Collections, C1, C2, C3,
    COLLECTIONS,
};
use events::{changed, failures, QUEUE_ARN};
use serde_json::json;
use std::collections::HashMap;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

#[tokio::test]
async fn update_of_one_contact() {
    let env = env().await;
    let body = changed(&entity("E1", &[C1], " Ann ", 1000));
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &body, &[("eventId", "ev1")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["id"], C1);
    assert_eq!(w[0]["attributes"]["type"], "Contact");
    assert_eq!(w[0]["FirstName"], "Ann");
    assert_eq!(w[0]["LastName"], "Smith");
    assert_eq!(w[0]["Email"], "ann@example.com");
    assert_eq!(h.metrics.counter("ContactsUpdated"), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn same_event_twice_is_a_no_op() {
    let env = env().await;
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let attrs: &[(&str, &str)] = &[("eventId", "ev1")];
    // Twice in one batch, then once more in a later invocation.
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &body, attrs), ("m2", &body, attrs)]),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    let h = run(&env, sqs(QUEUE_ARN, &[("m3", &body, attrs)])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    assert_eq!(writes(&env.server).await.len(), 1);
}

#[tokio::test]
async fn entity_without_contact_crosswalk_is_ignored_and_counted() {
    let env = env().await;
    let body = changed(&entity("E1", &[], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedNoCrosswalk"), 1);
    assert!(writes(&env.server).await.is_empty());
}

#[tokio::test]
async fn non_individual_entity_is_ignored() {
    let env = env().await;
    let mut org = entity("O1", &[C1], "Acme", 1000);
    org["type"] = json!("configuration/entityTypes/Organization");
    let created =
        json!({"type": "ENTITY_CREATED", "object": entity("E2", &[C2], "Bo", 1)}).to_string();
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[("m1", &changed(&org), &[]), ("m2", &created, &[])],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SkippedEntityType"), 1);
    assert_eq!(h.metrics.counter("SkippedEventType"), 1);
    assert!(writes(&env.server).await.is_empty());
}

#[tokio::test]
async fn oversized_event_is_fetched() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/reltio/api/T/entities/BIG"))
        .respond_with(ResponseTemplate::new(200).set_body_json(entity("BIG", &[C1], "Big", 3000)))
        .expect(1)
        .mount(&env.server)
        .await;
    let body = json!({"type": "ENTITY_CHANGED", "exceededQueueSizeLimit": true, "uri": "entities/BIG", "updatedTime": 3000}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["FirstName"], "Big");
}

#[tokio::test]
async fn expired_salesforce_token_is_renewed_once() {
    let env = env_with(false, &[]).await;
    // First token tok1, then tok2; tok1 is refused as expired.
    Mock::given(method("POST"))
        .and(path("/services/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "tok1", "instance_url": env.server.uri()})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&env.server)
        .await;
    mount_token(&env.server, "tok2").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .and(header("authorization", "Bearer tok1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]),
        ))
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .and(header("authorization", "Bearer tok2"))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &a, &[]), ("m2", &b, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsUpdated"), 2);
    let tokens = env
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/services/oauth2/token")
        .count();
    assert_eq!(tokens, 2);
}

#[tokio::test]
async fn collections_item_failures_by_error_class() {
    let env = env_with(
        true,
        &[
            (C2, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
            (C3, "UNABLE_TO_LOCK_ROW"),
        ],
    )
    .await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let c = changed(&entity("E3", &[C3], "Cy", 1000));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[
                ("m1", &a, &[]),
                ("m2", &b, &[("eventId", "bad")]),
                ("m3", &c, &[]),
            ],
        ),
    )
    .await;
    assert_eq!(
        failures(&h),
        vec!["m3"],
        "only the transient failure is retried"
    );
    assert_eq!(
        writes(&env.server).await.len(),
        3,
        "one Collections call for the batch"
    );
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["eventId"], "bad");
    assert_eq!(dl[0]["attempts"], 1);
    assert!(dl[0]["reason"]
        .as_str()
        .unwrap()
        .contains("FIELD_CUSTOM_VALIDATION_EXCEPTION"));
    assert_eq!(dl[0]["event"]["type"], "ENTITY_CHANGED");
    assert_eq!(h.metrics.counter("RecordsDeadLettered"), 1);
    // The transient one was not recorded: delivered again (now succeeding) it is applied.
    env.server.reset().await;
    mount_token(&env.server, "tok1").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m3", &c, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(writes(&env.server).await.len(), 1);
}

#[tokio::test]
async fn request_limit_exceeded_is_transient() {
    let env = env_with(false, &[]).await;
    mount_token(&env.server, "tok1").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
        ))
        .mount(&env.server)
        .await;
    let a = changed(&entity("E1", &[C1], "Ann", 1000));
    let b = changed(&entity("E2", &[C2], "Bo", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &a, &[]), ("m2", &b, &[])])).await;
    assert_eq!(failures(&h), vec!["m1", "m2"]);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn malformed_message_is_dead_lettered() {
    let env = env().await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", "{not json", &[])])).await;
    assert!(failures(&h).is_empty());
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["event"], "{not json");
    assert!(dl[0]["reason"]
        .as_str()
        .unwrap()
        .contains("not a Reltio event"));
}

#[tokio::test]
async fn deleted_contact_is_skipped_not_failed() {
    let env = env_with(true, &[(C1, "ENTITY_IS_DELETED")]).await;
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("SalesforceRecordsMissing"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn dead_letter_send_failure_is_transient() {
    let env = env_with(true, &[(C1, "INVALID_EMAIL_ADDRESS")]).await;
    env.moto
        .sqs()
        .await
        .delete_queue()
        .queue_url(&env.dlq_url)
        .send()
        .await
        .unwrap();
    let body = changed(&entity("E1", &[C1], "Ann", 1000));
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &body, &[])])).await;
    assert_eq!(failures(&h), vec!["m1"]);
    assert_eq!(h.metrics.counter("RecordsDeadLettered"), 0);
}

#[tokio::test]
async fn metrics_cover_received_applied_skipped_calls_and_latency() {
    let env = env().await;
    let now = chrono::Utc::now().timestamp_millis();
    let a = changed(&entity("E1", &[C1], "Ann", now));
    let none = changed(&entity("E2", &[], "Bo", now));
    let h = run(
        &env,
        sqs(
            QUEUE_ARN,
            &[
                ("m1", &a, &[("eventId", "a")]),
                ("m2", &a, &[("eventId", "a")]),
                ("m3", &none, &[]),
            ],
        ),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(h.metrics.counter("RecordsReceived"), 3);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert_eq!(h.metrics.counter("ContactsUpdated"), 1);
    assert_eq!(h.metrics.counter("SkippedDuplicate"), 1);
    assert_eq!(h.metrics.counter("SkippedNoCrosswalk"), 1);
    assert_eq!(h.metrics.counter("SalesforceCalls"), 1);
    let emf = h.metrics.to_emf(0).unwrap();
    assert!(emf["SalesforceLatency"].as_f64().unwrap() >= 0.0, "{emf}");
    let e2e = emf["EndToEndLatency"].as_f64().unwrap();
    assert!((0.0..60_000.0).contains(&e2e), "{emf}");
}
