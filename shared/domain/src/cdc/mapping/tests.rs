use super::*;
use crate::kafka_cdc::ChangeFormat;

const EXAMPLE: &str = include_str!("../../../../../functions/cdc-ingest/mapping.example.toml");

fn table_toml(extra: &str) -> String {
    format!(
        r#"
[tables."public.customer"]
entity_type = "configuration/entityTypes/Individual"
source = "configuration/sources/CRM"
key_columns = ["id"]
{extra}
"#
    )
}

fn error_of(text: &str) -> String {
    CdcMapping::parse(text).unwrap_err().to_string()
}

#[test]
fn the_shipped_example_is_valid() {
    let m = CdcMapping::parse(EXAMPLE).unwrap();
    assert_eq!(m.len(), 2);
    let customer = m.table("public.customer").unwrap();
    assert_eq!(customer.source_table.as_deref(), Some("CUSTOMER"));
    assert_eq!(customer.delete_strategy, DeleteStrategy::EndDate);
    assert_eq!(customer.override_mode, OverrideMode::Full);
    let zip = customer.columns.iter().find(|c| c.column == "zip").unwrap();
    assert_eq!(zip.path, vec!["Address", "Zip", "Zip5"]);
    assert_eq!(customer.references["Address"].crosswalk_suffix, ":address");
    let lines = m.table("sales.order_line").unwrap();
    assert_eq!(lines.key_columns, vec!["ORDER_ID", "LINE_NO"]);
    assert_eq!(lines.key_separator, "|");
    assert_eq!(lines.delete_strategy, DeleteStrategy::DeleteCrosswalk);
    assert_eq!(lines.override_mode, OverrideMode::Partial);
    assert_eq!(
        m.topic_format("dbserver1.public.customer"),
        Some(ChangeFormat::Debezium)
    );
    assert_eq!(
        m.topic_format("ogg.SALES.ORDER_LINE"),
        Some(ChangeFormat::Goldengate)
    );
    assert_eq!(m.topic_format("other"), None);
}

#[test]
fn a_topic_of_an_unknown_format_is_refused_at_load() {
    let text = format!("[topics]\n\"t\" = \"avro\"\n{}", table_toml(""));
    let e = error_of(&text);
    assert!(e.contains("avro"), "{e}");
}

#[test]
fn defaults_apply_when_a_table_says_nothing() {
    let m = CdcMapping::parse(&table_toml("")).unwrap();
    let t = m.table("PUBLIC.CUSTOMER").unwrap();
    assert_eq!(t.delete_strategy, DeleteStrategy::EndDate);
    assert_eq!(t.override_mode, OverrideMode::Full);
    assert_eq!(t.key_separator, DEFAULT_KEY_SEPARATOR);
    assert_eq!(t.absent_columns, AbsentColumns::Null);
    assert!(t.columns.is_empty());
    assert!(m.table("public.other").is_none());
}

#[test]
fn a_plain_string_maps_a_column_without_transforms() {
    let m = CdcMapping::parse(&table_toml(
        "[tables.\"public.customer\".columns]\nname = \"FirstName\"",
    ))
    .unwrap();
    let c = &m.table("public.customer").unwrap().columns[0];
    assert_eq!(
        (c.column.as_str(), c.path.clone(), c.transforms.len()),
        ("name", vec!["FirstName".to_string()], 0)
    );
}

#[test]
fn each_kind_of_invalid_file_is_rejected_with_a_message_naming_what_is_wrong() {
    let cases: Vec<(String, &str)> = vec![
        ("not toml [".into(), "not valid TOML"),
        ("key_separator = \"|\"".into(), "no [tables"),
        (
            table_toml("").replace("public.customer", "customer"),
            "mapping for table customer: name must be \"schema.table\"",
        ),
        (
            table_toml("").replace("configuration/entityTypes/Individual", "Individual"),
            "mapping for table public.customer: entity_type \"Individual\" must look like",
        ),
        (
            table_toml("").replace("configuration/sources/CRM", "CRM"),
            "mapping for table public.customer: source \"CRM\"",
        ),
        (
            table_toml("").replace("[\"id\"]", "[]"),
            "mapping for table public.customer: key_columns must name at least one column",
        ),
        (
            table_toml("").replace("[\"id\"]", "[\"id\", \"id\"]"),
            "mapping for table public.customer, column id: listed twice in key_columns",
        ),
        (
            table_toml("[tables.\"public.customer\".columns]\nname = { attribute = \"FirstName\", transforms = [\"shout\"] }"),
            "mapping for table public.customer, column name: unknown transform \"shout\"",
        ),
        (
            table_toml("[tables.\"public.customer\".columns]\nname = \"First Name\""),
            "mapping for table public.customer, column name: attribute \"First Name\" has an invalid name segment",
        ),
        (
            table_toml("[tables.\"public.customer\".columns]\na = \"FirstName\"\nb = \"FirstName\""),
            "mapping for table public.customer, column b: attribute \"FirstName\" collides with column a",
        ),
        (
            table_toml("[tables.\"public.customer\".columns]\na = \"Address\"\nb = \"Address.City\""),
            "column b: attribute \"Address.City\" collides with column a's \"Address\"",
        ),
        (
            table_toml("[tables.\"public.customer\".columns]\na = \"Address.\""),
            "invalid name segment \"\"",
        ),
        (
            table_toml("delete = \"shred\""),
            "unknown variant `shred`",
        ),
        (
            table_toml("absent_columns = \"guess\""),
            "unknown variant `guess`",
        ),
        (
            format!("[topics]\n\"t\" = {{ format = \"goldengate\", unavailable_value = \"x\" }}\n{}", table_toml("")),
            "mapping for topic t: unavailable_value is a Debezium setting",
        ),
        (
            format!("[topics.\"t\"]\nformat = \"debezium\"\nunavailable_value = \"\"\n{}", table_toml("")),
            "mapping for topic t: unavailable_value must not be empty",
        ),
        (
            format!("[topics.\"t\"]\nformat = \"debezium\"\nplaceholder = \"x\"\n{}", table_toml("")),
            "unknown field `placeholder`",
        ),
        (
            table_toml("colour = \"blue\""),
            "unknown field `colour`",
        ),
        (
            table_toml("[tables.\"public.customer\".references.Address]\nentity_type = \"configuration/entityTypes/Location\"\nrelation_type = \"configuration/relationTypes/HasAddress\""),
            "reference \"Address\" is not the parent of any mapped nested attribute",
        ),
        (
            table_toml("[tables.\"public.customer\".columns]\ncity = \"Address.City\"\n[tables.\"public.customer\".references.Address]\nentity_type = \"configuration/entityTypes/Location\"\nrelation_type = \"HasAddress\""),
            "reference \"Address\" relation_type \"HasAddress\" must look like",
        ),
    ];
    for (text, expected) in cases {
        let err = error_of(&text);
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
}

#[test]
fn a_topic_names_its_format_alone_or_with_its_debezium_placeholder() {
    let text = format!(
        "[topics]\n\"a\" = \"debezium\"\n\"b\" = {{ format = \"debezium\", unavailable_value = \"~toast~\" }}\n{}",
        table_toml("absent_columns = \"unchanged\"")
    );
    let m = CdcMapping::parse(&text).unwrap();
    assert_eq!(m.topic_format("b"), Some(ChangeFormat::Debezium));
    assert_eq!(m.unavailable_value("a"), "__debezium_unavailable_value");
    assert_eq!(m.unavailable_value("b"), "~toast~");
    assert_eq!(
        m.unavailable_value("not named"),
        "__debezium_unavailable_value"
    );
    assert_eq!(
        m.table("public.customer").unwrap().absent_columns,
        AbsentColumns::Unchanged
    );
}

#[test]
fn a_table_mapped_twice_in_different_case_is_rejected() {
    let text = format!(
        "{}\n{}",
        table_toml(""),
        table_toml("").replace("public.customer", "PUBLIC.CUSTOMER")
    );
    assert!(error_of(&text).contains("mapped twice"));
}

#[test]
fn a_missing_file_names_its_path() {
    let err = CdcMapping::load("/nonexistent/mapping.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/mapping.toml"), "{err}");
}
