//! CloudWatch Embedded Metric Format: one JSON log line per invocation carries all its metrics, so the
//! functions publish metrics without any API call (docs/reference.md, "CloudWatch").

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Default CloudWatch namespace (`METRICS_NAMESPACE` overrides it).
pub const DEFAULT_NAMESPACE: &str = "MdmSync";
/// EMF accepts at most 100 values per metric in one document.
const MAX_VALUES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Metrics gathered during one invocation, written out by `emit`. Dimension: `Function`.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    function: String,
    values: BTreeMap<String, (Unit, Vec<f64>)>,
}

impl Metrics {
    pub fn new(namespace: impl Into<String>, function: impl Into<String>) -> Self {
        Metrics {
            namespace: namespace.into(),
            function: function.into(),
            values: BTreeMap::new(),
        }
    }

    /// Adds `n` to a counter (counters are summed into one value).
    pub fn count(&mut self, name: &str, n: u64) {
        let entry = self
            .values
            .entry(name.to_owned())
            .or_insert((Unit::Count, vec![0.0]));
        entry.1[0] += n as f64;
    }

    /// Records one latency sample in milliseconds (up to 100 samples per invocation are kept).
    pub fn time_ms(&mut self, name: &str, ms: f64) {
        let entry = self
            .values
            .entry(name.to_owned())
            .or_insert((Unit::Milliseconds, Vec::new()));
        if entry.1.len() < MAX_VALUES {
            entry.1.push(ms);
        }
    }

    /// The counter's value so far (0 when never counted).
    pub fn counter(&self, name: &str) -> u64 {
        self.values.get(name).map(|(_, v)| v[0] as u64).unwrap_or(0)
    }

    /// The EMF document, or `None` when nothing was recorded.
    pub fn to_emf(&self, timestamp_ms: i64) -> Option<Value> {
        if self.values.is_empty() {
            return None;
        }
        let definitions: Vec<Value> = self
            .values
            .iter()
            .map(|(name, (unit, _))| json!({"Name": name, "Unit": unit.as_str()}))
            .collect();
        let mut doc = Map::new();
        doc.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["Function"]],
                    "Metrics": definitions,
                }]
            }),
        );
        doc.insert("Function".into(), json!(self.function));
        for (name, (unit, values)) in &self.values {
            let value = match (unit, values.as_slice()) {
                (_, [one]) => json!(one),
                _ => json!(values),
            };
            doc.insert(name.clone(), value);
        }
        Some(Value::Object(doc))
    }

    /// Writes the EMF line to stdout, where the Lambda log agent picks it up.
    pub fn emit(&self) {
        if let Some(doc) = self.to_emf(chrono::Utc::now().timestamp_millis()) {
            println!("{doc}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_and_latencies_keep_samples_in_one_emf_document() {
        let mut m = Metrics::new("MdmSync", "cdc-ingest");
        m.count("RecordsReceived", 3);
        m.count("RecordsReceived", 2);
        m.time_ms("ReltioLatency", 12.0);
        m.time_ms("ReltioLatency", 15.5);
        let doc = m.to_emf(1_700_000_000_000).unwrap();
        assert_eq!(doc["RecordsReceived"], json!(5.0));
        assert_eq!(doc["ReltioLatency"], json!([12.0, 15.5]));
        assert_eq!(doc["Function"], "cdc-ingest");
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "MdmSync");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert!(directive["Metrics"]
            .as_array()
            .unwrap()
            .contains(&json!({"Name": "ReltioLatency", "Unit": "Milliseconds"})));
        assert_eq!(m.counter("RecordsReceived"), 5);
    }

    #[test]
    fn nothing_recorded_means_no_line_and_samples_are_capped() {
        let mut m = Metrics::new("N", "f");
        assert!(m.to_emf(0).is_none());
        for i in 0..150 {
            m.time_ms("L", i as f64);
        }
        assert_eq!(m.to_emf(0).unwrap()["L"].as_array().unwrap().len(), 100);
    }
}
