//! The secrets cache against a local moto_server: a plain cache keeps its value until invalidated; one with ages
//! reads the secret again past its maximum age, and on a forced refresh only when its copy is old enough (a failed
//! read keeps the copy). The OAuth clients read their credentials secret again after the token endpoint refuses
//! them (a wiremock token endpoint that knows only the rotated secret).

use mdm_sync_adapters::reltio::{CredentialSource, ReltioClient};
use mdm_sync_adapters::retry::RetryPolicy;
use mdm_sync_adapters::secrets::SecretCache;
use mdm_sync_domain::reltio::model::{Crosswalk, EntityBody, ItemOutcome};
use mdm_sync_testkit::MotoServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wiremock::matchers::{basic_auth, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn put(moto: &MotoServer, arn: &str, value: &Value) {
    moto.secrets()
        .await
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value.to_string())
        .send()
        .await
        .unwrap();
}

async fn version(cache: &SecretCache) -> u64 {
    cache.get_json::<Value>().await.unwrap()["v"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn a_plain_cache_keeps_its_value_until_invalidated() {
    let moto = MotoServer::start();
    let arn = moto.create_secret("plain", &json!({"v": 1})).await;
    let cache = SecretCache::new(moto.secrets().await, &arn);
    assert_eq!(version(&cache).await, 1);
    put(&moto, &arn, &json!({"v": 2})).await;
    assert_eq!(version(&cache).await, 1, "cached");
    cache.invalidate().await;
    assert_eq!(version(&cache).await, 2);
}

#[tokio::test]
async fn a_cache_with_a_maximum_age_reads_the_secret_again_once_older() {
    let moto = MotoServer::start();
    let arn = moto.create_secret("aged", &json!({"v": 1})).await;
    let cache = SecretCache::new(moto.secrets().await, &arn)
        .with_ages(Duration::from_millis(400), Duration::from_secs(300));
    assert_eq!(version(&cache).await, 1);
    put(&moto, &arn, &json!({"v": 2})).await;
    assert_eq!(version(&cache).await, 1, "younger than the maximum age");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(version(&cache).await, 2);
}

#[tokio::test]
async fn a_forced_refresh_reads_only_a_copy_old_enough_and_a_failed_read_keeps_it() {
    let moto = MotoServer::start();
    let arn = moto.create_secret("refreshed", &json!({"v": 1})).await;
    let cache = SecretCache::new(moto.secrets().await, &arn)
        .with_ages(Duration::from_secs(300), Duration::from_millis(400));
    assert_eq!(version(&cache).await, 1);
    put(&moto, &arn, &json!({"v": 2})).await;
    assert!(
        cache.refreshed_json::<Value>().await.is_none(),
        "read less than the minimum refresh age ago"
    );
    assert_eq!(version(&cache).await, 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let fresh: Value = cache.refreshed_json().await.expect("read again");
    assert_eq!(fresh["v"], 2);
    assert_eq!(version(&cache).await, 2);
    // The secret gone: the forced read fails and the copy stays in use.
    moto.secrets()
        .await
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(cache.refreshed_json::<Value>().await.is_none());
    assert_eq!(version(&cache).await, 2);
}

fn entity() -> EntityBody {
    EntityBody {
        entity_type: "configuration/entityTypes/Individual".into(),
        attributes: Default::default(),
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

#[tokio::test]
async fn reltio_reads_its_secret_again_after_the_token_endpoint_refuses_it() {
    let moto = MotoServer::start();
    let arn = moto
        .create_secret(
            "reltio",
            &json!({"client_id": "cid", "client_secret": "old-secret-value"}),
        )
        .await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .and(basic_auth("cid", "rotated"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "t", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"})))
        // Refused, the secret read again (still the old one) and refused once more: the call's one re-authentication.
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/T1/entities"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([{"index": 0, "uri": "entities/e0", "successful": true}])),
        )
        .expect(1)
        .mount(&server)
        .await;
    let reltio = ReltioClient::new(
        reqwest::Client::new(),
        format!("{}/api/T1", server.uri()),
        format!("{}/oauth/token", server.uri()),
        CredentialSource::Secret(SecretCache::new(moto.secrets().await, &arn)),
        RetryPolicy::default(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let entity = entity();
    let err = reltio
        .post_entities(&[&entity], false, deadline)
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert!(!err.to_string().contains("old-secret-value"), "{err}");
    put(
        &moto,
        &arn,
        &json!({"client_id": "cid", "client_secret": "rotated"}),
    )
    .await;
    let written = reltio
        .post_entities(&[&entity], false, deadline)
        .await
        .unwrap();
    assert_eq!(
        written,
        vec![ItemOutcome::Written {
            uri: Some("entities/e0".into())
        }]
    );
}
