//! Salesforce SOAP API (partner WSDL) pieces the REST API lacks: the `merge()` envelope and the parsing of its
//! `MergeResult`s and SOAP faults. Pure: no I/O; the client in the parent module sends what this builds.

use mdm_sync_domain::crm::salesforce::MergeRequest;
use serde_json::Value;

const SOAPENV_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
const PARTNER_NS: &str = "urn:partner.soap.sforce.com";
const SOBJECT_NS: &str = "urn:sobject.partner.soap.sforce.com";

/// The result of one `MergeRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeResult {
    pub success: bool,
    pub merged_record_ids: Vec<String>,
    /// Related records re-parented to the master.
    pub updated_related_ids: Vec<String>,
    /// `(statusCode, message)` of each error.
    pub errors: Vec<(String, String)>,
}

/// A SOAP fault (the whole call failed): `exceptionCode` (else the `faultcode` without its prefix) and
/// `faultstring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapFault {
    pub code: String,
    pub message: String,
}

/// Escapes text for an XML element or attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all are dropped rather than producing an unparseable body.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

fn is_xml_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// The body of a `merge()` call holding `requests` (at most [`MAX_REQUESTS_PER_CALL`]), authenticated by
/// `session_id` (the OAuth access token) in the `SessionHeader`. Field and sObject names that are not API
/// names are left out (they could not be valid and would break the envelope).
pub fn merge_envelope(session_id: &str, requests: &[MergeRequest]) -> String {
    let mut body = String::with_capacity(512 + requests.len() * 256);
    body.push_str(&format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"{SOAPENV_NS}\" xmlns:urn=\"{PARTNER_NS}\" xmlns:urn1=\"{SOBJECT_NS}\">\
         <soapenv:Header><urn:SessionHeader><urn:sessionId>{}</urn:sessionId></urn:SessionHeader></soapenv:Header>\
         <soapenv:Body><urn:merge>",
        escape(session_id)
    ));
    for r in requests.iter().filter(|r| is_xml_name(&r.sobject)) {
        body.push_str("<urn:request><urn:masterRecord>");
        body.push_str(&format!("<urn1:type>{}</urn1:type>", r.sobject));
        // Partner sObject order: type, fieldsToNull*, Id, fields.
        for (name, _) in r
            .fields
            .iter()
            .filter(|(n, v)| v.is_null() && is_xml_name(n))
        {
            body.push_str(&format!("<urn1:fieldsToNull>{name}</urn1:fieldsToNull>"));
        }
        body.push_str(&format!("<urn1:Id>{}</urn1:Id>", escape(&r.master)));
        for (name, value) in r.fields.iter().filter(|(n, _)| is_xml_name(n)) {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            body.push_str(&format!("<urn1:{name}>{}</urn1:{name}>", escape(&text)));
        }
        body.push_str("</urn:masterRecord>");
        for id in &r.records {
            body.push_str(&format!(
                "<urn:recordToMergeIds>{}</urn:recordToMergeIds>",
                escape(id)
            ));
        }
        body.push_str("</urn:request>");
    }
    body.push_str("</urn:merge></soapenv:Body></soapenv:Envelope>");
    body
}

/// A parsed XML element: local name (namespace prefix dropped), text content, children.
#[derive(Debug, Default)]
struct Element {
    name: String,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first descendant (depth first) called `name`.
    fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    fn text_of(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.trim().to_owned())
    }
}

/// Deepest nesting accepted (a SOAP response needs about eight levels).
const MAX_DEPTH: usize = 32;

fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .ok_or_else(|| "unterminated entity".to_owned())?;
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e => {
                let code = if let Some(hex) = e.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = e.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{e};"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse(xml: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = vec![Element::default()];
    for token in xmlparser::Tokenizer::from(xml) {
        let token = token.map_err(|e| e.to_string())?;
        match token {
            xmlparser::Token::ElementStart { local, .. } => {
                if stack.len() > MAX_DEPTH {
                    return Err("XML nested too deeply".into());
                }
                stack.push(Element {
                    name: local.as_str().to_owned(),
                    ..Element::default()
                });
            }
            xmlparser::Token::ElementEnd { end, .. } => match end {
                xmlparser::ElementEnd::Open => {}
                xmlparser::ElementEnd::Close(_, local) => {
                    let done = stack.pop().ok_or("unbalanced XML")?;
                    if done.name != local.as_str() {
                        return Err(format!("</{}> closes <{}>", local.as_str(), done.name));
                    }
                    stack
                        .last_mut()
                        .ok_or("unbalanced XML")?
                        .children
                        .push(done);
                }
                xmlparser::ElementEnd::Empty => {
                    let done = stack.pop().ok_or("unbalanced XML")?;
                    stack
                        .last_mut()
                        .ok_or("unbalanced XML")?
                        .children
                        .push(done);
                }
            },
            xmlparser::Token::Text { text } => {
                let top = stack.last_mut().ok_or("unbalanced XML")?;
                top.text.push_str(&unescape(text.as_str())?);
            }
            xmlparser::Token::Cdata { text, .. } => {
                let top = stack.last_mut().ok_or("unbalanced XML")?;
                top.text.push_str(text.as_str());
            }
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("unterminated XML element".into());
    }
    let root = stack.pop().unwrap_or_default();
    root.children
        .into_iter()
        .next()
        .ok_or_else(|| "empty XML document".into())
}

/// The SOAP fault a response body holds, if any.
pub fn parse_fault(xml: &str) -> Option<SoapFault> {
    let doc = parse(xml).ok()?;
    let fault = doc.find("Fault")?;
    let faultcode = fault.text_of("faultcode").unwrap_or_default();
    let code = fault
        .find("exceptionCode")
        .map(|e| e.text.trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| faultcode.rsplit(':').next().unwrap_or_default().to_owned());
    Some(SoapFault {
        code,
        message: fault.text_of("faultstring").unwrap_or_default(),
    })
}

/// The `MergeResult`s of a `mergeResponse`, in request order.
pub fn parse_merge_response(xml: &str) -> Result<Vec<MergeResult>, String> {
    let doc = parse(xml)?;
    let response = doc
        .find("mergeResponse")
        .ok_or_else(|| "no mergeResponse in the SOAP body".to_owned())?;
    Ok(response
        .all("result")
        .map(|r| MergeResult {
            success: r.text_of("success").as_deref() == Some("true"),
            merged_record_ids: r
                .all("mergedRecordIds")
                .map(|e| e.text.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            updated_related_ids: r
                .all("updatedRelatedIds")
                .map(|e| e.text.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            errors: r
                .all("errors")
                .map(|e| {
                    (
                        e.text_of("statusCode").unwrap_or_default(),
                        e.text_of("message").unwrap_or_default(),
                    )
                })
                .collect(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    #[test]
    fn the_envelope_carries_the_session_the_master_and_the_records_escaped() {
        let mut fields = Map::new();
        fields.insert("LastName".into(), json!("O'Brien & <Sons>"));
        fields.insert("Phone".into(), Value::Null);
        fields.insert("Bad Name".into(), json!("dropped"));
        let xml = merge_envelope(
            "00D!tok<en>",
            &[MergeRequest {
                sobject: "Contact".into(),
                master: "003A".into(),
                records: vec!["003B".into(), "003C".into()],
                fields,
            }],
        );
        assert!(xml.contains("<urn:sessionId>00D!tok&lt;en&gt;</urn:sessionId>"));
        assert!(xml.contains(
            "<urn:request><urn:masterRecord><urn1:type>Contact</urn1:type>\
             <urn1:fieldsToNull>Phone</urn1:fieldsToNull><urn1:Id>003A</urn1:Id>\
             <urn1:LastName>O&apos;Brien &amp; &lt;Sons&gt;</urn1:LastName></urn:masterRecord>\
             <urn:recordToMergeIds>003B</urn:recordToMergeIds><urn:recordToMergeIds>003C</urn:recordToMergeIds>\
             </urn:request>"
        ), "{xml}");
        assert!(!xml.contains("dropped"));
        // It is well-formed XML.
        assert!(parse(&xml).is_ok());
    }

    #[test]
    fn merge_results_are_read_in_order_with_their_errors() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com">
 <soapenv:Body><mergeResponse>
  <result><id>003A</id><mergedRecordIds>003B</mergedRecordIds><mergedRecordIds>003C</mergedRecordIds>
   <success>true</success><updatedRelatedIds>500X</updatedRelatedIds></result>
  <result><errors><fields xsi:nil="true"/><message>entity is deleted &amp; gone</message>
   <statusCode>ENTITY_IS_DELETED</statusCode></errors><id xsi:nil="true"/><success>false</success></result>
 </mergeResponse></soapenv:Body></soapenv:Envelope>"#;
        let results = parse_merge_response(xml).unwrap();
        assert_eq!(results.len(), 2);
        assert!(results[0].success);
        assert_eq!(results[0].merged_record_ids, vec!["003B", "003C"]);
        assert_eq!(results[0].updated_related_ids, vec!["500X"]);
        assert!(!results[1].success);
        assert_eq!(
            results[1].errors,
            vec![(
                "ENTITY_IS_DELETED".to_owned(),
                "entity is deleted & gone".to_owned()
            )]
        );
    }

    #[test]
    fn faults_name_their_exception_code() {
        let xml = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID</faultcode><faultstring>INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session</faultstring><detail><sf:UnexpectedErrorFault><sf:exceptionCode>INVALID_SESSION_ID</sf:exceptionCode><sf:exceptionMessage>Illegal Session</sf:exceptionMessage></sf:UnexpectedErrorFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let fault = parse_fault(xml).unwrap();
        assert_eq!(fault.code, "INVALID_SESSION_ID");
        assert!(fault.message.starts_with("INVALID_SESSION_ID"));
        let bare = r#"<e:Envelope xmlns:e="x"><e:Body><e:Fault><faultcode>soapenv:Client</faultcode><faultstring>bad</faultstring></e:Fault></e:Body></e:Envelope>"#;
        assert_eq!(parse_fault(bare).unwrap().code, "Client");
        assert_eq!(parse_fault("<a><b>no fault</b></a>"), None);
        assert_eq!(parse_fault("not xml at all"), None);
    }

    #[test]
    fn malformed_xml_is_an_error_not_a_panic() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a>&bogus;</a>",
            "<a>&#xZZ;</a>",
            &"<a>".repeat(100),
        ] {
            assert!(parse_merge_response(bad).is_err(), "{bad}");
        }
    }
}
