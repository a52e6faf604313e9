use super::*;
use std::collections::BTreeMap;

const TOPIC: &str = "arn:aws:sns:us-east-1:111122223333:mdm-sync-prod-EventTopic-AbC123";
const QUEUE: &str = "arn:aws:sqs:us-east-1:111122223333:mdm-sync-prod-EventQueue-XyZ789";
const ROLE: &str = "arn:aws:iam::111122223333:role/mdm-sync-prod-ReltioStreamingRole-Q1w2E3";

fn stack(outputs: &[(&str, &str)]) -> Stack {
    Stack {
        outputs: outputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn topic_target() -> Target {
    target(
        &stack(&[(ROLE_OUTPUT, ROLE), (DESTINATION_OUTPUT, TOPIC)]),
        Kind::Sns,
        None,
    )
    .unwrap()
}

fn sub(text: &str) -> Subscription {
    Subscription::parse(text).unwrap()
}

#[test]
fn the_destination_is_the_documented_shape_for_the_topic() {
    let d = destination(
        &sub("event_types = [\"UPDATE\", \"MERGE\"]"),
        &topic_target(),
        Format::JsonZipBase64,
        Payload::Snapshot,
        "aws",
    );
    assert_eq!(
        d,
        json!({
            "provider": "aws",
            "type": "topic",
            "name": TOPIC,
            "enabled": true,
            "awsAccountId": "111122223333",
            "roleArn": ROLE,
            "format": "JSON_ZIP_BASE64",
            "payloadType": "SNAPSHOT",
            "typeFilter": ["ENTITY_CHANGED", "ENTITIES_MERGED", "ENTITIES_MERGED_MANUALLY",
                           "ENTITIES_MERGED_ON_THE_FLY", "ENTITY_LOST_MERGE"],
            "JMSEventsFilteringFields": ["uri", "type", "createdTime", "updatedTime", "attributes",
                                         "crosswalks", "objectVersion"],
        })
    );
}

#[test]
fn each_format_and_payload_is_reltios_name() {
    let s = sub("");
    let t = topic_target();
    for (format, name) in [
        (Format::Json, "JSON"),
        (Format::JsonZipBase64, "JSON_ZIP_BASE64"),
    ] {
        for (payload, payload_name) in [
            (Payload::Snapshot, "SNAPSHOT"),
            (Payload::SnapshotWithDelta, "SNAPSHOT_WITH_DELTA"),
            (Payload::Deltas, "DELTAS"),
        ] {
            let d = destination(&s, &t, format, payload, "aws");
            assert_eq!(d["format"], name);
            assert_eq!(d["payloadType"], payload_name);
        }
    }
    // The command line's names for them.
    assert_eq!(Format::from_str("json", false).unwrap(), Format::Json);
    assert_eq!(
        Format::from_str("json-zip-base64", false).unwrap(),
        Format::JsonZipBase64
    );
    assert_eq!(
        Payload::from_str("snapshot-with-delta", false).unwrap(),
        Payload::SnapshotWithDelta
    );
    assert_eq!(Payload::from_str("deltas", false).unwrap(), Payload::Deltas);
}

#[test]
fn object_version_is_always_a_filtering_field() {
    for text in [
        "",
        "include_relationships = true",
        "event_types = [\"DELETE\"]\nattributes = [\"Email\"]",
    ] {
        let s = sub(text);
        let d = destination(&s, &topic_target(), Format::Json, Payload::Deltas, "aws");
        let config = streaming_config(&s, &d);
        for fields in [
            &d["JMSEventsFilteringFields"],
            &config["streamingConfig"]["JMSEventsFilteringFields"],
        ] {
            assert!(
                fields.as_array().unwrap().contains(&json!("objectVersion")),
                "{text}: {fields}"
            );
        }
    }
}

#[test]
fn relationships_add_their_event_types_and_ends() {
    let s = sub("event_types = [\"CREATE\"]\ninclude_relationships = true");
    let d = destination(&s, &topic_target(), Format::Json, Payload::Snapshot, "aws");
    assert_eq!(
        d["typeFilter"],
        json!([
            "ENTITY_CREATED",
            "RELATIONSHIP_CREATED",
            "RELATIONSHIP_CHANGED",
            "RELATIONSHIP_REMOVED"
        ])
    );
    let fields = d["JMSEventsFilteringFields"].as_array().unwrap();
    assert!(fields.contains(&json!("startObject")) && fields.contains(&json!("endObject")));
    let config = streaming_config(&s, &d);
    assert_eq!(
        config["streamingConfig"]["RelationEventsFilteringFields"],
        d["JMSEventsFilteringFields"]
    );
    // Without relationships: no relationship types, no ends, no relation fields.
    let plain = sub("");
    let d = destination(
        &plain,
        &topic_target(),
        Format::Json,
        Payload::Snapshot,
        "aws",
    );
    assert!(!d.to_string().contains("RELATIONSHIP_") && !d.to_string().contains("startObject"));
    assert!(streaming_config(&plain, &d)["streamingConfig"]
        .get("RelationEventsFilteringFields")
        .is_none());
}

#[test]
fn the_tenant_fragment_holds_the_destination() {
    let s = sub("");
    let d = destination(&s, &topic_target(), Format::Json, Payload::Snapshot, "aws");
    let doc = document(&s, &topic_target(), d.clone(), Payload::Snapshot);
    assert_eq!(doc["destination"], d);
    assert_eq!(
        doc["streamingConfig"]["messaging"]["destinations"],
        json!([d])
    );
    assert_eq!(doc["streamingConfig"]["streamingEnabled"], true);
    assert_eq!(doc["streamingConfig"]["largeObjectsSupport"], true);
    assert_eq!(doc["role"]["arn"], ROLE);
    // Nothing to warn about on a standard topic in the role's account.
    assert_eq!(doc["notes"].as_array().unwrap().len(), 3);
}

#[test]
fn the_target_comes_from_the_stack_outputs() {
    let q = target(
        &stack(&[(ROLE_OUTPUT, ROLE), (DESTINATION_OUTPUT, QUEUE)]),
        Kind::Sqs,
        None,
    )
    .unwrap();
    assert_eq!(
        (q.kind, q.arn.account.as_str()),
        (Kind::Sqs, "111122223333")
    );
    // Given by hand: the event topic, or the queue's ARN from its URL.
    let t = target(
        &stack(&[(ROLE_OUTPUT, ROLE), (stack::EVENT_TOPIC, TOPIC)]),
        Kind::Sns,
        None,
    )
    .unwrap();
    assert_eq!(t.arn_text, TOPIC);
    let u = target(
        &stack(&[
            (ROLE_OUTPUT, ROLE),
            (
                stack::EVENT_QUEUE,
                "https://sqs.eu-west-1.amazonaws.com/111122223333/mdm-sync-prod-EventQueue-XyZ789",
            ),
        ]),
        Kind::Sqs,
        None,
    )
    .unwrap();
    assert_eq!(
        u.arn_text,
        "arn:aws:sqs:eu-west-1:111122223333:mdm-sync-prod-EventQueue-XyZ789"
    );
}

#[test]
fn a_stack_without_the_role_or_with_the_other_destination_is_a_configuration_error() {
    let e = target(&stack(&[(DESTINATION_OUTPUT, TOPIC)]), Kind::Sns, None).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    assert!(
        e.to_string().contains("ReltioStreamingPrincipalArns"),
        "{e}"
    );
    let e = target(
        &stack(&[(ROLE_OUTPUT, ROLE), (DESTINATION_OUTPUT, QUEUE)]),
        Kind::Sns,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("--destination sqs"), "{e}");
    let e = target(
        &stack(&[
            (
                ROLE_OUTPUT,
                "arn:aws:iam::111122223333:role/service-role/reltio",
            ),
            (DESTINATION_OUTPUT, TOPIC),
        ]),
        Kind::Sns,
        None,
    )
    .unwrap_err();
    assert!(e.to_string().contains("has a path"), "{e}");
    let e = target(
        &stack(&[
            (ROLE_OUTPUT, ROLE),
            (DESTINATION_OUTPUT, "arn:aws:s3:::bucket"),
        ]),
        Kind::Sns,
        None,
    )
    .unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn queue_urls_become_arns_in_their_partition() {
    assert_eq!(
        queue_arn(
            "https://sqs.us-gov-west-1.amazonaws.com/111122223333/q",
            None
        )
        .as_deref(),
        Some("arn:aws-us-gov:sqs:us-gov-west-1:111122223333:q")
    );
    assert_eq!(
        queue_arn(
            "https://sqs.cn-north-1.amazonaws.com.cn/111122223333/q",
            None
        )
        .as_deref(),
        Some("arn:aws-cn:sqs:cn-north-1:111122223333:q")
    );
    assert_eq!(
        queue_arn(
            "https://us-east-2.queue.amazonaws.com/111122223333/q.fifo",
            None
        )
        .as_deref(),
        Some("arn:aws:sqs:us-east-2:111122223333:q.fifo")
    );
    // A local emulator's URL names no region: the SDK's.
    assert_eq!(
        queue_arn("http://127.0.0.1:5000/123456789012/q", None),
        None
    );
    assert_eq!(
        queue_arn("http://127.0.0.1:5000/123456789012/q", Some("eu-west-1")).as_deref(),
        Some("arn:aws:sqs:eu-west-1:123456789012:q")
    );
    // A region in the URL wins.
    assert_eq!(
        queue_arn(
            "https://sqs.us-east-2.amazonaws.com/111122223333/q",
            Some("eu-west-1")
        )
        .as_deref(),
        Some("arn:aws:sqs:us-east-2:111122223333:q")
    );
}

#[test]
fn a_fifo_destination_is_warned_about() {
    let t = target(
        &stack(&[
            (ROLE_OUTPUT, ROLE),
            (
                DESTINATION_OUTPUT,
                "arn:aws:sqs:us-east-1:111122223333:mdm-sync-prod-events.fifo",
            ),
        ]),
        Kind::Sqs,
        None,
    )
    .unwrap();
    let w = warnings(&t);
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("FIFO"), "{w:?}");
}

#[test]
fn the_tenant_id_is_given_or_read_from_the_api_url() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConfigureArgs,
    }
    let id = |argv: &[&str]| {
        let cli = Cli::try_parse_from([&["x", "--destination", "sns"], argv].concat()).unwrap();
        tenant_id(&cli.args)
    };
    assert_eq!(id(&["--tenant", "T1"]).unwrap(), "T1");
    assert_eq!(
        id(&["--reltio-url", "https://test.reltio.com/reltio/api/AbC123/"]).unwrap(),
        "AbC123"
    );
    assert_eq!(
        id(&["--reltio-url", "https://test.reltio.com"])
            .unwrap_err()
            .exit_code(),
        2
    );
    assert_eq!(id(&["--tenant", "T1/../x"]).unwrap_err().exit_code(), 2);
}
