//! crm-updater's settings: a missing or invalid setting is named, and the ledger retention's default and bounds.

use crm_updater::Config;
use std::time::Duration;

#[test]
fn configuration_names_the_missing_setting() {
    let err = Config::from_env(&|name: &str| match name {
        "SALESFORCE_SECRET_ID" => Some("sf".to_owned()),
        _ => None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("RELTIO_API_URL"), "{err}");
    let err = Config::from_env(&|name: &str| match name {
        "SALESFORCE_API_VERSION" => Some("66".to_owned()),
        _ => Some("https://example.com".to_owned()),
    })
    .unwrap_err();
    assert!(err.to_string().contains("SALESFORCE_API_VERSION"), "{err}");
}

#[test]
fn ledger_retention_defaults_to_35_days_and_must_outlive_sqs_retention() {
    let base = |name: &str| match name {
        "RELTIO_API_URL" | "CRM_DLQ_URL" => Some("https://example.com".to_owned()),
        _ => Some("x".to_owned()),
    };
    let config = Config::from_env(&|name: &str| match name {
        "SALESFORCE_API_VERSION"
        | "CRM_LEASE_SECONDS"
        | "RELTIO_AUTH_URL"
        | "METRICS_NAMESPACE"
        | "CRM_LEDGER_RETENTION_DAYS"
        | "CRM_RETRY_BACKOFF_SECONDS"
        | "CRM_RETRY_BACKOFF_MAX_SECONDS"
        | "CRM_EVENT_QUEUE_URL"
        | "LETTER_STORE_BUCKET" => None,
        other => base(other),
    })
    .unwrap();
    assert_eq!(config.ledger_retention, Duration::from_secs(35 * 24 * 3600));
    for bad in ["14", "0", "ten"] {
        let err = Config::from_env(&|name: &str| match name {
            "CRM_LEDGER_RETENTION_DAYS" => Some(bad.to_owned()),
            "SALESFORCE_API_VERSION"
            | "CRM_LEASE_SECONDS"
            | "RELTIO_AUTH_URL"
            | "METRICS_NAMESPACE" => None,
            other => base(other),
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("CRM_LEDGER_RETENTION_DAYS"),
            "{err}"
        );
    }
}
