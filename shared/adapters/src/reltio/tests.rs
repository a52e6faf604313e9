use super::*;
use mdm_sync_domain::reltio::model::Crosswalk;
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ENTITIES: &str = "/reltio/api/T1/entities";

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(20),
        max_attempts: 4,
    }
}

fn client(server: &MockServer) -> ReltioClient {
    client_at(&format!("{}/reltio/api/T1", server.uri()), &server.uri())
}

fn client_at(api: &str, auth_base: &str) -> ReltioClient {
    ReltioClient::new(
        reqwest::Client::new(),
        api,
        format!("{auth_base}/oauth/token"),
        CredentialSource::Static(ClientCredentials {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
        }),
        fast_retry(),
    )
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

fn jane() -> EntityBody {
    EntityBody {
        entity_type: "configuration/entityTypes/Individual".into(),
        attributes: json!({"FirstName": [{"value": "Jane"}]})
            .as_object()
            .unwrap()
            .clone()
            .into(),
        crosswalks: vec![Crosswalk {
            source: "configuration/sources/CRM".into(),
            value: "46".into(),
            source_table: None,
            delete_date: None,
            data_provider: None,
            contributor_provider: None,
        }],
    }
}

async fn token_endpoint(server: &MockServer, token: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        // Basic base64("cid:csecret")
        .and(header("authorization", "Basic Y2lkOmNzZWNyZXQ="))
        .and(body_string_contains("grant_type=client_credentials"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token, "token_type": "bearer", "expires_in": 3600
        })))
        .up_to_n_times(times)
        .expect(times)
        .mount(server)
        .await;
}

fn ok_items(n: usize) -> ResponseTemplate {
    let items: Vec<Value> = (0..n)
        .map(|i| json!({"index": i, "uri": format!("entities/e{i}"), "status": "OK"}))
        .collect();
    ResponseTemplate::new(200).set_body_json(items)
}

#[tokio::test]
async fn the_token_is_fetched_once_and_reused_across_calls() {
    let server = MockServer::start().await;
    token_endpoint(&server, "tok-1", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .and(header("authorization", "Bearer tok-1"))
        .and(query_param("returnObjects", "false"))
        .respond_with(ok_items(1))
        .expect(3)
        .mount(&server)
        .await;
    let reltio = client(&server);
    for _ in 0..3 {
        let out = reltio
            .post_entities(&[&jane()], false, soon())
            .await
            .unwrap();
        assert_eq!(
            out,
            vec![ItemOutcome::Written {
                uri: Some("entities/e0".into())
            }]
        );
    }
}

#[tokio::test]
async fn a_401_gets_one_fresh_token_and_the_call_succeeds() {
    let server = MockServer::start().await;
    token_endpoint(&server, "old", 1).await;
    token_endpoint(&server, "new", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .and(header("authorization", "Bearer old"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .and(header("authorization", "Bearer new"))
        .respond_with(ok_items(1))
        .expect(1)
        .mount(&server)
        .await;
    let out = client(&server)
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap();
    assert!(matches!(out[0], ItemOutcome::Written { .. }));
}

#[tokio::test]
async fn a_second_401_is_a_transient_unauthorized_error() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 2).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let err = client(&server)
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap_err();
    assert!(matches!(err, ReltioError::Unauthorized(_)), "{err}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_429_is_retried_after_the_servers_retry_after() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ok_items(1))
        .expect(1)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    client(&server)
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap();
    // The policy's own backoff is at most 20 ms: waiting a second can only come from Retry-After.
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_503_then_success_writes_the_entities_once() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ok_items(2))
        .expect(1)
        .mount(&server)
        .await;
    let out = client(&server)
        .post_entities(&[&jane(), &jane()], false, soon())
        .await
        .unwrap();
    assert_eq!(out.len(), 2);
}

#[tokio::test]
async fn a_failed_item_in_a_200_response_is_reported_for_that_item_only() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"index": 0, "uri": "entities/a", "status": "OK"},
            {"index": 1, "errors": {"severity": "Error", "errorMessage": "Attribute FirstName is not valid", "errorCode": 103}},
            {"index": 2, "successful": false, "errors": [{"errorCode": 2008, "errorMessage": "TOO_MANY_CONCURRENT_REQUESTS_FOR_OBJECT"}]}
        ])))
        .mount(&server)
        .await;
    let out = client(&server)
        .post_entities(&[&jane(), &jane(), &jane(), &jane()], true, soon())
        .await
        .unwrap();
    assert_eq!(
        out[0],
        ItemOutcome::Written {
            uri: Some("entities/a".into())
        }
    );
    assert_eq!(
        out[1],
        ItemOutcome::Failed {
            message: "error 103".into(),
            transient: false
        }
    );
    assert!(matches!(
        out[2],
        ItemOutcome::Failed {
            transient: true,
            ..
        }
    ));
    // No result at all for the fourth entity: not known to be written, so retried.
    assert!(matches!(
        out[3],
        ItemOutcome::Failed {
            transient: true,
            ..
        }
    ));
}

#[test]
fn an_item_not_clearly_written_is_a_failure() {
    let written = |v: Value| matches!(item_outcome(&v), ItemOutcome::Written { .. });
    assert!(written(json!({"index": 0, "successful": true})));
    assert!(written(
        json!({"index": 0, "uri": "entities/a", "status": "ok"})
    ));
    for unclear in [
        json!({"index": 0, "successful": false}),
        json!({"index": 0, "successful": false, "status": "OK"}),
        json!({"index": 0, "uri": "entities/a"}),
        json!({"index": 0, "status": "failed"}),
        json!({"index": 0, "errors": null}),
    ] {
        assert_eq!(
            item_outcome(&unclear),
            ItemOutcome::Failed {
                message: "Reltio did not confirm the entity was written".into(),
                transient: true
            },
            "{unclear}"
        );
    }
}

#[tokio::test]
async fn partial_override_is_asked_for_in_the_query() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .and(query_param("options", "partialOverride"))
        .respond_with(ok_items(1))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .post_entities(&[&jane()], true, soon())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_400_is_permanent_and_not_retried() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"errorMessage": "Bad JSON", "errorCode": 1})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = client(&server)
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap_err();
    assert!(!err.is_transient());
    // The code, never the message text (it can echo the values sent).
    assert_eq!(
        err.to_string(),
        "Reltio rejected the request (HTTP 400): error 1"
    );
}

#[tokio::test]
async fn a_connection_reset_is_retried_then_reported_as_transient() {
    // A server that accepts connections and closes them at once, before any HTTP answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(socket);
        }
    });
    let auth = MockServer::start().await;
    token_endpoint(&auth, "t", 1).await;
    let reltio = client_at(&format!("http://{addr}/reltio/api/T1"), &auth.uri());
    let err = reltio
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap_err();
    assert!(matches!(err, ReltioError::Connection(_)), "{err}");
    assert!(err.is_transient());
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "retried up to max_attempts"
    );
}

#[tokio::test]
async fn an_exhausted_time_budget_is_a_transient_error() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("POST"))
        .and(path(ENTITIES))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let reltio = ReltioClient::new(
        reqwest::Client::new(),
        format!("{}/reltio/api/T1", server.uri()),
        format!("{}/oauth/token", server.uri()),
        CredentialSource::Static(ClientCredentials {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
        }),
        RetryPolicy {
            base: Duration::from_millis(400),
            cap: Duration::from_secs(2),
            max_attempts: 50,
        },
    );
    let deadline = Instant::now() + Duration::from_millis(600);
    let err = reltio
        .post_entities(&[&jane()], false, deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, ReltioError::BudgetExhausted(_)), "{err}");
    assert!(err.is_transient());
    assert!(
        Instant::now() <= deadline + Duration::from_millis(200),
        "stopped at the deadline"
    );
}

#[tokio::test]
async fn a_refused_client_is_a_transient_unauthorized_error_without_the_secret() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": "invalid_client", "error_description": "Bad client credentials"}),
        ))
        .mount(&server)
        .await;
    let err = client(&server)
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap_err();
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.contains("invalid_client"), "{text}");
    assert!(!text.contains("csecret"), "{text}");
}

#[tokio::test]
async fn a_crosswalk_delete_names_the_value_in_the_path_and_treats_404_as_done() {
    let server = MockServer::start().await;
    token_endpoint(&server, "t", 1).await;
    Mock::given(method("DELETE"))
        .and(path("/reltio/api/T1/entities/_byCrosswalk/A%2F1"))
        .and(query_param("type", "configuration/sources/CRM"))
        .and(query_param("sourceTable", "CUSTOMER"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let key = CrosswalkKey {
        source: "configuration/sources/CRM".into(),
        source_table: Some("CUSTOMER".into()),
        value: "A/1".into(),
    };
    client(&server)
        .delete_crosswalk(&key, soon())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_token_is_refreshed_before_it_expires() {
    let server = MockServer::start().await;
    // A token that lives 1 s is used for 90 % of its life (the margin is a tenth of a short lifetime).
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "short", "expires_in": 1})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_endpoint(&server, "next", 1).await;
    for (token, calls) in [("short", 2), ("next", 1)] {
        Mock::given(method("POST"))
            .and(path(ENTITIES))
            .and(header("authorization", format!("Bearer {token}").as_str()))
            .respond_with(ok_items(1))
            .expect(calls)
            .mount(&server)
            .await;
    }
    let reltio = client(&server);
    for _ in 0..2 {
        reltio
            .post_entities(&[&jane()], false, soon())
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(950)).await;
    reltio
        .post_entities(&[&jane()], false, soon())
        .await
        .unwrap();
}
