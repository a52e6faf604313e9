//! crm-updater's SOAP merge strategy, end to end against a wiremock Salesforce (sObject Collections and the SOAP
//! merge() of `common::soap`) and Reltio and a moto_server: merge() requests of a master and up to two losers,
//! losers already merged, permanent and transient failures and faults, and session renewal.

mod common;
mod events;

use common::soap::{merge_calls, merge_response, soap_env, soap_fault, SoapMerge, SOAP};
use common::{
    dead_letters, entity, env_full, mount_entity, mount_token, run, sqs, writes, Collections, C1,
    C2, C3, COLLECTIONS, QUERY,
};
use events::{changed, failures, QUEUE_ARN};
use serde_json::json;
use std::collections::HashMap;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

const C4: &str = "003000000000004AAA";

#[tokio::test]
async fn soap_merge_of_a_winner_and_two_losers_then_redelivered() {
    let env = soap_env(&[]).await;
    mount_entity(&env.server, "W", &entity("W", &[C2, C1, C3], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "updatedTime": 5000, "uris": ["entities/W", "entities/L1", "entities/L2"]}).to_string();
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &merge, &[("eventId", "merge-1")])]),
    )
    .await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let calls = merge_calls(&env.server).await;
    assert_eq!(
        calls,
        vec![vec![(C1.to_owned(), vec![C2.to_owned(), C3.to_owned()])]],
        "one request: master + 2"
    );
    // The envelope authenticates with the session token.
    let soap_body = env
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == SOAP)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&soap_body.body).contains("<urn:sessionId>tok1</urn:sessionId>")
    );
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 1, "only the survivor is written: {w:#?}");
    assert_eq!(w[0]["id"], C1);
    assert_eq!(w[0]["FirstName"], "Ann");
    assert!(w[0].get("Merged_Into__c").is_none());
    assert_eq!(h.metrics.counter("ContactsMerged"), 2);
    assert_eq!(h.metrics.counter("ChildRecordsRepointed"), 2);
    assert_eq!(h.metrics.counter("ContactsArchived"), 0);
    let queries = env
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == QUERY)
        .count();
    assert_eq!(queries, 0, "merge() re-parents children itself");

    // The same merge again: as the same event (duplicate), and under another event id (unchanged).
    for (m, id) in [("m2", "merge-1"), ("m3", "merge-1-again")] {
        let h = run(&env, sqs(QUEUE_ARN, &[(m, &merge, &[("eventId", id)])])).await;
        assert!(failures(&h).is_empty());
    }
    assert_eq!(
        merge_calls(&env.server).await.len(),
        1,
        "no new merge calls"
    );
    assert_eq!(writes(&env.server).await.len(), 1, "no new writes");

    // A later change of the winner writes the survivor but merges nothing again.
    let later = changed(&entity("W", &[C2, C1, C3], "Annie", 6000));
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m4", &later, &[("eventId", "W-later")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    assert_eq!(merge_calls(&env.server).await.len(), 1);
    let w = writes(&env.server).await;
    assert_eq!(w.len(), 2);
    assert_eq!(w[1]["FirstName"], "Annie");
}

#[tokio::test]
async fn soap_three_losers_take_two_merge_requests() {
    let env = soap_env(&[]).await;
    mount_entity(
        &env.server,
        "W",
        &entity("W", &[C4, C3, C2, C1], "Ann", 5000),
    )
    .await;
    let merge =
        json!({"type": "ENTITIES_MERGED", "uris": ["entities/W", "entities/L1"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(
        merge_calls(&env.server).await,
        vec![vec![
            (C1.to_owned(), vec![C2.to_owned(), C3.to_owned()]),
            (C1.to_owned(), vec![C4.to_owned()])
        ]],
        "one call, two requests"
    );
    assert_eq!(h.metrics.counter("ContactsMerged"), 3);
}

#[tokio::test]
async fn soap_already_merged_loser_counts_as_done_and_the_live_one_is_still_merged() {
    let env = soap_env(&[]).await;
    // C2 was merged away before (say by hand): the request of C2 + C3 fails as a whole, so each is retried alone.
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(wiremock::matchers::body_string_contains(format!(
            "<urn:recordToMergeIds>{C2}</urn:recordToMergeIds><urn:recordToMergeIds>{C3}"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_string(merge_response(&[
            "<result><errors><message>gone</message><statusCode>ENTITY_IS_DELETED</statusCode></errors><success>false</success></result>".to_owned(),
        ])))
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(wiremock::matchers::body_string_contains(format!("<urn:recordToMergeIds>{C2}</urn:recordToMergeIds></urn:request><urn:request>")))
        .respond_with(ResponseTemplate::new(200).set_body_string(merge_response(&[
            "<result><errors><message>gone</message><statusCode>INVALID_CROSS_REFERENCE_KEY</statusCode></errors><success>false</success></result>".to_owned(),
            format!("<result><id>{C1}</id><mergedRecordIds>{C3}</mergedRecordIds><success>true</success></result>"),
        ])))
        .with_priority(1)
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2, C3], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    let calls = merge_calls(&env.server).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(
        calls[1],
        vec![
            (C1.to_owned(), vec![C2.to_owned()]),
            (C1.to_owned(), vec![C3.to_owned()])
        ]
    );
    assert_eq!(h.metrics.counter("ContactsMerged"), 1);
    assert_eq!(h.metrics.counter("RecordsApplied"), 1);
    assert!(dead_letters(&env).await.is_empty());
}

#[tokio::test]
async fn soap_permanent_merge_failure_is_dead_lettered_and_the_survivor_not_written() {
    let env = soap_env(&[(C2, "INVALID_FIELD_FOR_INSERT_UPDATE")]).await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(
        &env,
        sqs(QUEUE_ARN, &[("m1", &merge, &[("eventId", "bad-merge")])]),
    )
    .await;
    assert!(failures(&h).is_empty());
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["eventId"], "bad-merge");
    assert!(
        dl[0]["reason"]
            .as_str()
            .unwrap()
            .contains("INVALID_FIELD_FOR_INSERT_UPDATE"),
        "{dl:?}"
    );
    assert!(writes(&env.server).await.is_empty());
}

#[tokio::test]
async fn soap_fault_for_the_whole_call_is_dead_lettered_when_permanent() {
    let env = env_full(true, &[], &[("merge_strategy", "soap")]).await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(ResponseTemplate::new(500).set_body_string(soap_fault("INVALID_TYPE")))
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty());
    let dl = dead_letters(&env).await;
    assert_eq!(dl.len(), 1);
    assert!(
        dl[0]["reason"].as_str().unwrap().contains("INVALID_TYPE"),
        "{dl:?}"
    );
    assert_eq!(
        merge_calls(&env.server).await.len(),
        1,
        "a permanent fault is not retried"
    );
}

#[tokio::test]
async fn soap_transient_failures_are_batch_item_failures() {
    // A locked row in one request's result, and the API limit as a fault for the whole call.
    let env = soap_env(&[(C2, "UNABLE_TO_LOCK_ROW")]).await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert_eq!(failures(&h), vec!["m1"]);
    assert!(dead_letters(&env).await.is_empty());
    assert!(writes(&env.server).await.is_empty());

    let env = env_full(true, &[], &[("merge_strategy", "soap")]).await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(
            ResponseTemplate::new(500).set_body_string(soap_fault("REQUEST_LIMIT_EXCEEDED")),
        )
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert_eq!(failures(&h), vec!["m1"]);
    assert!(dead_letters(&env).await.is_empty());
    // The merge is recorded nowhere: delivered again once Salesforce answers, it merges.
    env.server.reset().await;
    mount_token(&env.server, "tok1").await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(SoapMerge::new(&[]))
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "rtok", "expires_in": 3600})),
        )
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsMerged"), 1);
}

#[tokio::test]
async fn soap_expired_session_is_renewed_once() {
    let env = env_full(false, &[], &[("merge_strategy", "soap")]).await;
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
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(wiremock::matchers::body_string_contains(
            "<urn:sessionId>tok1</urn:sessionId>",
        ))
        .respond_with(ResponseTemplate::new(500).set_body_string(soap_fault("INVALID_SESSION_ID")))
        .with_priority(1)
        .mount(&env.server)
        .await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .respond_with(SoapMerge::new(&[]))
        .mount(&env.server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(COLLECTIONS))
        .respond_with(Collections {
            fail: HashMap::new(),
        })
        .mount(&env.server)
        .await;
    mount_entity(&env.server, "W", &entity("W", &[C1, C2], "Ann", 5000)).await;
    let merge = json!({"type": "ENTITIES_MERGED", "uris": ["entities/W"]}).to_string();
    let h = run(&env, sqs(QUEUE_ARN, &[("m1", &merge, &[])])).await;
    assert!(failures(&h).is_empty(), "{:?}", failures(&h));
    assert_eq!(h.metrics.counter("ContactsMerged"), 1);
    assert_eq!(merge_calls(&env.server).await.len(), 2);
}
