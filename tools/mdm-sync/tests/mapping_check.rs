//! `mdm-sync mapping check --crm` on crm-updater's create settings: a valid file shows, for a sample event of an
//! entity without a Contact, the upsert key and fields and the write-back crm-updater would send; an invalid one
//! exits 1 naming the setting.

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;

const MAPPING: &str = r#"
event_types = ["CREATE", "UPDATE", "MERGE"]
crosswalk_type = "configuration/sources/SFDC_CONTACT"
create = true
external_id_field = "Reltio_Id__c"
require = ["LastName"]

[[fields]]
attribute = "LastName"
field = "LastName"
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(mapping: &PathBuf, events: &PathBuf) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mdm-sync"))
        .args(["--json", "mapping", "check", "--crm"])
        .arg(mapping)
        .arg("--events")
        .arg(events)
        .output()
        .unwrap();
    let printed = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        printed,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_check_shows_what_a_create_sends_and_refuses_an_invalid_create_setting() {
    let dir = std::env::temp_dir().join(format!("mdm-sync-mapping-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let entity = |last: Option<&str>| {
        let mut attributes = json!({});
        if let Some(l) = last {
            attributes["LastName"] = json!([{"value": l, "ov": true}]);
        }
        json!({"type": "ENTITY_CREATED", "object": {
            "uri": "entities/0Abc", "type": "configuration/entityTypes/Individual", "attributes": attributes,
            "crosswalks": [{"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER"}]}})
    };
    let events = write(
        &dir,
        "events.json",
        &json!([entity(Some("Lee")), entity(None)]).to_string(),
    );
    let mapping = write(&dir, "crm.toml", MAPPING);
    let (code, printed, stderr) = check(&mapping, &events);
    assert_eq!(code, Some(0), "{stderr}");
    let shown = printed["events"].as_array().unwrap();
    assert_eq!(
        shown[0]["crm-updater"]["create"],
        json!({"externalIdField": "Reltio_Id__c", "externalId": "0Abc", "fields": {"LastName": "Lee"},
               "writeBack": {"type": "configuration/entityTypes/Individual", "crosswalks": [
                   {"type": "configuration/sources/CRM_DB", "value": "42", "sourceTable": "CUSTOMER",
                    "dataProvider": false, "contributorProvider": true},
                   {"type": "configuration/sources/SFDC_CONTACT", "value": "<the Contact's Id>"}]}})
    );
    assert!(shown[1]["crm-updater"]["create"]["notCreated"]
        .as_str()
        .unwrap()
        .contains("Incomplete"));

    let invalid = write(
        &dir,
        "invalid.toml",
        &MAPPING.replace("external_id_field = \"Reltio_Id__c\"\n", ""),
    );
    let (code, printed, _) = check(&invalid, &events);
    assert_eq!(code, Some(1));
    assert_eq!(printed["crm-updater"]["valid"], json!(false));
    assert!(printed["crm-updater"]["error"]
        .as_str()
        .unwrap()
        .contains("external_id_field"));
    std::fs::remove_dir_all(&dir).ok();
}
