//! A Salesforce SOAP merge() on wiremock: the MergeRequests of each call, merge responses and SOAP faults, and
//! the end-to-end environment with the SOAP merge strategy.

use super::{env_full, Env};
use std::collections::HashMap;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const SOAP: &str = "/services/Soap/u/66.0";

/// SOAP merge(): merges every request unless a record is already gone (ENTITY_IS_DELETED) or listed in
/// `fail` (record Id → statusCode); merged records are remembered as deleted.
pub struct SoapMerge {
    deleted: std::sync::Mutex<std::collections::HashSet<String>>,
    fail: HashMap<String, String>,
}

impl SoapMerge {
    pub fn new(fail: &[(&str, &str)]) -> SoapMerge {
        SoapMerge {
            deleted: Default::default(),
            fail: fail
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Vec<&'a str> {
    text.split(open)
        .skip(1)
        .filter_map(|part| part.split(close).next())
        .collect()
}

/// `(master, records)` of each MergeRequest in a merge() envelope.
fn merge_requests_in(body: &str) -> Vec<(String, Vec<String>)> {
    between(body, "<urn:request>", "</urn:request>")
        .into_iter()
        .map(|r| {
            let master = between(r, "<urn1:Id>", "</urn1:Id>")[0].to_owned();
            let records = between(r, "<urn:recordToMergeIds>", "</urn:recordToMergeIds>")
                .into_iter()
                .map(str::to_owned)
                .collect();
            (master, records)
        })
        .collect()
}

pub fn merge_response(results: &[String]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><mergeResponse>{}</mergeResponse></soapenv:Body></soapenv:Envelope>"#,
        results.concat()
    )
}

pub fn soap_fault(code: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault><faultcode>sf:{code}</faultcode><faultstring>{code}: injected</faultstring><detail><sf:UnexpectedErrorFault><sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>injected</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
    )
}

impl Respond for SoapMerge {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body = String::from_utf8_lossy(&req.body);
        let mut deleted = self.deleted.lock().unwrap();
        let results: Vec<String> = merge_requests_in(&body)
            .into_iter()
            .map(|(master, records)| {
                let error = records.iter().find_map(|r| {
                    if deleted.contains(r) {
                        Some("ENTITY_IS_DELETED".to_owned())
                    } else {
                        self.fail.get(r).cloned()
                    }
                });
                match error {
                    Some(code) => format!("<result><errors><message>injected</message><statusCode>{code}</statusCode></errors><id xsi:nil=\"true\"/><success>false</success></result>"),
                    None => {
                        deleted.extend(records.iter().cloned());
                        let merged: String = records.iter().map(|r| format!("<mergedRecordIds>{r}</mergedRecordIds>")).collect();
                        let related: String = records.iter().map(|r| format!("<updatedRelatedIds>500{}</updatedRelatedIds>", &r[3..])).collect();
                        format!("<result><id>{master}</id>{merged}<success>true</success>{related}</result>")
                    }
                }
            })
            .collect();
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/xml; charset=utf-8")
            .set_body_string(merge_response(&results))
    }
}

pub async fn soap_env(fail: &[(&str, &str)]) -> Env {
    let env = env_full(true, &[], &[("merge_strategy", "soap")]).await;
    Mock::given(method("POST"))
        .and(path(SOAP))
        .and(header("soapaction", "merge"))
        .respond_with(SoapMerge::new(fail))
        .mount(&env.server)
        .await;
    env
}

/// Every merge() call so far: its MergeRequests.
pub async fn merge_calls(server: &MockServer) -> Vec<Vec<(String, Vec<String>)>> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == SOAP)
        .map(|r| merge_requests_in(&String::from_utf8_lossy(&r.body)))
        .collect()
}
