//! What one entity snapshot calls for in Salesforce: golden values (`ov: true`), the Contact fields they map
//! to, the Contacts of the entity's crosswalks, the survivor rule and the merge plan (archive, or SOAP
//! `merge()` requests), child-record queries, and event versions. Pure.

use super::mapping::{
    ChildRelationship, CrmMapping, MergeStrategy, SurvivorRule, Transform, SURVIVOR_PLACEHOLDER,
};
use super::salesforce::{MergeRequest, RecordQuery, MAX_MERGED_PER_REQUEST};
use crate::reltio::golden::{EntitySnapshot, GoldenAttributes, LeanCrosswalks};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn apply_transform(value: &Value, transform: Transform) -> Value {
    match (value, transform) {
        (Value::String(s), Transform::Trim) => Value::String(s.trim().to_owned()),
        (Value::String(s), Transform::Upper) => Value::String(s.trim().to_uppercase()),
        (Value::String(s), Transform::Lower) => Value::String(s.trim().to_lowercase()),
        (v, _) => v.clone(),
    }
}

/// The Contact fields the entity's golden values call for.
pub fn contact_fields(mapping: &CrmMapping, attributes: &GoldenAttributes) -> Map<String, Value> {
    let mut out = Map::new();
    for f in &mapping.fields {
        match attributes.golden_value(&f.attribute) {
            Some(v) => {
                out.insert(f.field.clone(), apply_transform(v, f.transform));
            }
            None if f.clear_when_missing => {
                out.insert(f.field.clone(), Value::Null);
            }
            None => {}
        }
    }
    out
}

/// The Contact Ids of the entity's live crosswalks of the configured type, in crosswalk order, deduplicated.
pub fn contact_ids(mapping: &CrmMapping, crosswalks: &LeanCrosswalks) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for c in &crosswalks.0 {
        if c.source_type.as_deref() != Some(mapping.crosswalk_type.as_str()) || c.end_dated {
            continue;
        }
        if let Some(v) = c.value.as_deref().map(str::trim) {
            if !v.is_empty() && !ids.iter().any(|i| i == v) {
                ids.push(v.to_owned());
            }
        }
    }
    ids
}

/// What to do in Salesforce for one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactPlan {
    pub survivor: String,
    pub survivor_fields: Map<String, Value>,
    /// The other Contacts (losers) with the fields that archive them (none under the SOAP strategy).
    pub archived: Vec<(String, Map<String, Value>)>,
}

impl ContactPlan {
    /// The losers' Ids.
    pub fn losers(&self) -> Vec<&str> {
        self.archived.iter().map(|(id, _)| id.as_str()).collect()
    }
}

/// A hash of the fields of one record write: equal hashes mean writing again changes nothing.
pub fn write_hash(fields: &Map<String, Value>) -> String {
    let mut h = Sha256::new();
    for (k, v) in fields {
        h.update(k.as_bytes());
        h.update(b"=");
        // The value's compact JSON (what `to_string` gives), written into the hash without a copy.
        serde_json::to_writer(HashWriter(&mut h), v).expect("a JSON value always serialises");
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The plan for an entity snapshot, or `None` when it holds no Contact crosswalk.
pub fn plan_contacts(mapping: &CrmMapping, entity: &EntitySnapshot) -> Option<ContactPlan> {
    let mut ids = contact_ids(mapping, &entity.crosswalks);
    if ids.is_empty() {
        return None;
    }
    let survivor = match mapping.survivor {
        SurvivorRule::FirstCrosswalk => ids.remove(0),
        SurvivorRule::LowestId => {
            ids.sort();
            ids.remove(0)
        }
    };
    let survivor_fields = contact_fields(mapping, &entity.attributes);
    let archive_fields = match mapping.merge_strategy {
        MergeStrategy::Archive => &mapping.archive_fields,
        MergeStrategy::Soap => &BTreeMap::new(),
    };
    let archived = ids
        .into_iter()
        .map(|id| {
            let fields = archive_fields
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => {
                            Value::String(s.replace(SURVIVOR_PLACEHOLDER, &survivor))
                        }
                        other => other.clone(),
                    };
                    (k.clone(), v)
                })
                .collect();
            (id, fields)
        })
        .collect();
    Some(ContactPlan {
        survivor,
        survivor_fields,
        archived,
    })
}

/// The SOAP `merge()` requests that merge the plan's losers into its survivor, leaving out those already
/// merged: the losers in order, at most two per request (Salesforce's limit), the survivor as master of each.
/// The survivor's fields are written separately, as under the archive strategy.
pub fn merge_requests(
    plan: &ContactPlan,
    already_merged: &std::collections::BTreeSet<String>,
) -> Vec<MergeRequest> {
    let losers: Vec<String> = plan
        .losers()
        .into_iter()
        .filter(|id| !already_merged.contains(*id))
        .map(str::to_owned)
        .collect();
    losers
        .chunks(MAX_MERGED_PER_REQUEST)
        .map(|records| MergeRequest {
            sobject: "Contact".into(),
            master: plan.survivor.clone(),
            records: records.to_vec(),
            fields: Map::new(),
        })
        .collect()
}

/// The query for the child records of `relationship` that point at any of `losers`. Ids are validated
/// as Salesforce Ids (15/18 alphanumerics) so nothing can be injected; invalid ones are left out.
pub fn child_query(relationship: &ChildRelationship, losers: &[&str]) -> Option<RecordQuery> {
    let ids: Vec<String> = losers
        .iter()
        .filter(|id| {
            (id.len() == 15 || id.len() == 18) && id.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .map(|id| (*id).to_owned())
        .collect();
    if ids.is_empty() {
        return None;
    }
    Some(RecordQuery {
        sobject: relationship.sobject.clone(),
        fields: Vec::new(),
        field: relationship.field.clone(),
        values: ids,
    })
}

/// A number from a version value: integers, or digit strings.
pub fn parse_version(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn write_hashes_are_those_the_ledger_already_holds() {
        // Hashes are stored in the ledger: the bytes hashed must stay `name=<compact JSON>\n` per field.
        let fields: Map<String, Value> = serde_json::from_value(json!({
            "Email": "ann@example.com", "FirstName": "Ann \"A\" \u{e9}", "Phone": null,
            "Score__c": 1.5, "Count__c": 3, "Vip__c": true, "Tags__c": ["a", {"b": 1}]
        }))
        .unwrap();
        let mut h = Sha256::new();
        for (k, v) in &fields {
            h.update(format!("{k}={v}\n").as_bytes());
        }
        assert_eq!(write_hash(&fields), hex::encode(h.finalize()));
        assert_eq!(
            write_hash(&Map::new()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    const MAPPING: &str = r#"
crosswalk_type = "configuration/sources/SFDC_CONTACT"
archive_fields = { Merged_Into__c = "{survivor}", Status__c = "Merged" }
[[fields]]
attribute = "FirstName"
field = "FirstName"
transform = "trim"
[[fields]]
attribute = "Address.City"
field = "MailingCity"
[[children]]
sobject = "Case"
field = "ContactId"
"#;

    #[test]
    fn golden_values_and_plan() {
        let m = CrmMapping::parse(MAPPING).unwrap();
        let entity = json!({
            "attributes": {
                "FirstName": [{"value": "Old", "ov": false}, {"value": " Ann ", "ov": true}],
                "Address": [{"ov": true, "value": {"City": [{"value": "Oslo", "ov": true}]}}]
            },
            "crosswalks": [
                {"type": "configuration/sources/SFDC_CONTACT", "value": "003000000000002AAA"},
                {"type": "configuration/sources/Other", "value": "x"},
                {"type": "configuration/sources/SFDC_CONTACT", "value": "003000000000001AAA"},
                {"type": "configuration/sources/SFDC_CONTACT", "value": "003000000000009AAA", "deleteDate": "2024"}
            ]
        });
        let plan = plan_contacts(&m, &EntitySnapshot::from_entity(entity)).unwrap();
        assert_eq!(plan.survivor, "003000000000001AAA");
        assert_eq!(plan.survivor_fields["FirstName"], "Ann");
        assert_eq!(plan.survivor_fields["MailingCity"], "Oslo");
        assert_eq!(plan.archived.len(), 1);
        assert_eq!(plan.archived[0].1["Merged_Into__c"], "003000000000001AAA");
        assert_eq!(
            child_query(&m.children[0], &plan.losers()).unwrap().soql(),
            "SELECT Id FROM Case WHERE ContactId IN ('003000000000002AAA')"
        );
        assert!(
            plan_contacts(&m, &EntitySnapshot::from_entity(json!({"crosswalks": []}))).is_none()
        );
    }

    #[test]
    fn soap_strategy_merges_losers_two_per_request_and_skips_those_already_merged() {
        let m = CrmMapping::parse(&format!("merge_strategy = \"soap\"\n{MAPPING}")).unwrap();
        assert_eq!(m.merge_strategy, MergeStrategy::Soap);
        let ids = [
            "003000000000004AAA",
            "003000000000001AAA",
            "003000000000003AAA",
            "003000000000002AAA",
        ];
        let crosswalks: Vec<Value> = ids
            .iter()
            .map(|id| json!({"type": "configuration/sources/SFDC_CONTACT", "value": id}))
            .collect();
        let entity = json!({"attributes": {}, "crosswalks": crosswalks});
        let plan = plan_contacts(&m, &EntitySnapshot::from_entity(entity)).unwrap();
        assert_eq!(plan.survivor, "003000000000001AAA");
        assert!(
            plan.archived.iter().all(|(_, f)| f.is_empty()),
            "no archive fields"
        );
        let requests = merge_requests(&plan, &Default::default());
        let records: Vec<Vec<String>> = requests.iter().map(|r| r.records.clone()).collect();
        assert_eq!(
            records,
            vec![
                vec![
                    "003000000000002AAA".to_owned(),
                    "003000000000003AAA".to_owned()
                ],
                vec!["003000000000004AAA".to_owned()]
            ]
        );
        assert!(requests
            .iter()
            .all(|r| r.master == plan.survivor && r.sobject == "Contact"));
        let done = [
            "003000000000002AAA".to_owned(),
            "003000000000004AAA".to_owned(),
        ]
        .into();
        let requests = merge_requests(&plan, &done);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].records, vec!["003000000000003AAA"]);
        let all = plan.losers().iter().map(|s| s.to_string()).collect();
        assert!(merge_requests(&plan, &all).is_empty());
    }

    #[test]
    fn invalid_mappings_are_rejected_with_the_setting() {
        let strategy = format!("merge_strategy = \"delete\"\n{MAPPING}");
        assert!(CrmMapping::parse(&strategy)
            .unwrap_err()
            .to_string()
            .contains("delete"));
        let bad = MAPPING.replace("field = \"FirstName\"", "field = \"First Name\"");
        assert!(CrmMapping::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("First Name"));
        let ev = format!("event_types = [\"NOPE\"]\n{MAPPING}");
        assert!(CrmMapping::parse(&ev)
            .unwrap_err()
            .to_string()
            .contains("NOPE"));
    }
}
