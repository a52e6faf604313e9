//! Keeps odd requests from crashing the runtime before the handler sees them.
//!
//! `lambda_http` (1.3) converts each event into an `http::Request` with `unwrap`/`expect`: a body marked
//! `isBase64Encoded` that is not base64, an `X-Forwarded-Proto` that is not a URL scheme (`""`,
//! `"https, http"`), a `Host` that is not a host, or a raw path or query that is not URI text panics, and the
//! release profile aborts on panic. [`SafeConversion`] sits between the runtime and `lambda_http`'s adapter and
//! replaces only such pieces with harmless values that keep the outcome the handler would have chosen: a
//! proto list becomes `https` when every hop was HTTPS and `invalid` otherwise (403), an undecodable body
//! becomes empty (no signature matches it: 401). The handler never reads the host, path or query.

use lambda_http::http::header::{HeaderName, HOST};
use lambda_http::http::{HeaderMap, HeaderValue};
use lambda_http::lambda_runtime::{LambdaEvent, Service};
use lambda_http::request::LambdaRequest;
use std::task::{Context, Poll};

const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// A `tower::Service` wrapper applying [`make_convertible`] to every event before `inner` converts it.
pub struct SafeConversion<S> {
    inner: S,
}

impl<S> SafeConversion<S> {
    pub fn new(inner: S) -> Self {
        SafeConversion { inner }
    }
}

impl<S> Service<LambdaEvent<LambdaRequest>> for SafeConversion<S>
where
    S: Service<LambdaEvent<LambdaRequest>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut event: LambdaEvent<LambdaRequest>) -> Self::Future {
        make_convertible(&mut event.payload);
        self.inner.call(event)
    }
}

/// Replaces the pieces of `req` that `lambda_http`'s conversion would panic on (see the module comment).
/// Well-formed events, which is every event AWS sends, are left untouched.
pub fn make_convertible(req: &mut LambdaRequest) {
    match req {
        LambdaRequest::ApiGatewayV1(ag) => {
            fix_body(&mut ag.body, &mut ag.is_base64_encoded);
            fix_path(&mut ag.path);
            fix_stage(&mut ag.request_context.stage);
            fix_host_and_scheme(
                &mut ag.headers,
                Some(&mut ag.multi_value_headers),
                ag.request_context.domain_name.as_deref(),
            );
        }
        LambdaRequest::ApiGatewayV2(ag) => {
            fix_body(&mut ag.body, &mut ag.is_base64_encoded);
            fix_path(&mut ag.raw_path);
            fix_stage(&mut ag.request_context.stage);
            if ag
                .raw_query_string
                .as_deref()
                .is_some_and(|q| !is_uri_text(q))
            {
                ag.raw_query_string = None;
            }
            fix_host_and_scheme(
                &mut ag.headers,
                None,
                ag.request_context.domain_name.as_deref(),
            );
        }
        LambdaRequest::Alb(alb) => {
            fix_body(&mut alb.body, &mut alb.is_base64_encoded);
            fix_path(&mut alb.path);
            fix_host_and_scheme(&mut alb.headers, Some(&mut alb.multi_value_headers), None);
        }
        _ => {}
    }
}

fn fix_body(body: &mut Option<String>, is_base64: &mut bool) {
    use base64::Engine;
    let undecodable = *is_base64
        && body
            .as_deref()
            .is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_err());
    if undecodable {
        *body = None;
        *is_base64 = false;
    }
}

fn fix_path(path: &mut Option<String>) {
    if path
        .as_deref()
        .is_some_and(|p| !(p.is_empty() || (p.starts_with('/') && is_uri_text(p))))
    {
        *path = Some("/".to_owned());
    }
}

fn fix_stage(stage: &mut Option<String>) {
    let safe = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'$' | b'.'))
    };
    if stage.as_deref().is_some_and(|s| !safe(s)) {
        *stage = None;
    }
}

fn fix_host_and_scheme(
    headers: &mut HeaderMap,
    mut multi: Option<&mut HeaderMap>,
    domain_name: Option<&str>,
) {
    let proto = HeaderName::from_static(FORWARDED_PROTO);
    // As lambda_http reads them: the first value, when it is text.
    let scheme = headers
        .get(&proto)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("https")
        .to_owned();
    if !is_scheme(&scheme) {
        // A list in which every hop was HTTPS stays HTTPS; anything else is not.
        let all_https = scheme
            .split(',')
            .all(|p| p.trim().eq_ignore_ascii_case("https"));
        let value = HeaderValue::from_static(if all_https { "https" } else { "invalid" });
        headers.insert(proto.clone(), value.clone());
        if let Some(m) = multi.as_deref_mut() {
            m.insert(proto.clone(), value);
        }
    }
    let scheme = headers
        .get(&proto)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("https")
        .to_owned();
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or(domain_name)
        .map(str::to_owned);
    if let Some(host) = host {
        if !is_host(&host) || reqwest::Url::parse(&format!("{scheme}://{host}/")).is_err() {
            let localhost = HeaderValue::from_static("localhost");
            headers.insert(HOST, localhost.clone());
            if let Some(m) = multi {
                m.insert(HOST, localhost);
            }
        }
    }
}

/// A URL scheme the URL parser takes with a host and port (`file:` takes no port).
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !s.eq_ignore_ascii_case("file")
}

/// Letters, digits, dots and hyphens, with an optional numeric port.
fn is_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (h, None),
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// Characters every URI parser takes as they are in a path or query: unreserved, sub-delims, `:@/?` and
/// well-formed percent escapes.
fn is_uri_text(s: &str) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
            );
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Request;
    use serde_json::{json, Value};

    fn rest_v1(headers: Value, body: &str, base64: bool) -> LambdaRequest {
        serde_json::from_value(json!({
            "httpMethod": "POST", "path": "/webhook", "headers": headers,
            "requestContext": {"httpMethod": "POST", "stage": "prod", "domainName": "abc.execute-api.us-east-1.amazonaws.com"},
            "body": body, "isBase64Encoded": base64
        }))
        .unwrap()
    }

    fn convert(mut req: LambdaRequest) -> Request {
        make_convertible(&mut req);
        // Debug builds unwind: a panic here fails the test instead of aborting.
        Request::from(req)
    }

    #[test]
    fn without_the_guard_lambda_http_panics_on_these_inputs() {
        // Why the guard exists (lambda_http 1.3); if this starts failing, lambda_http no longer panics.
        let cases = [
            rest_v1(
                json!({"X-Forwarded-Proto": "https, http", "Host": "a.example"}),
                "{}",
                false,
            ),
            rest_v1(
                json!({"X-Forwarded-Proto": "https", "Host": "a b"}),
                "{}",
                false,
            ),
            rest_v1(json!({"X-Forwarded-Proto": "https"}), "%%%", true),
        ];
        for req in cases {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Request::from(req)));
            assert!(outcome.is_err());
        }
    }

    #[test]
    fn a_forwarded_proto_that_is_not_a_scheme_becomes_invalid_not_a_crash() {
        for proto in ["", "https, http", "ht tp", "file", "1http"] {
            let req = convert(rest_v1(
                json!({"X-Forwarded-Proto": proto, "Host": "a.example"}),
                "{}",
                false,
            ));
            assert_eq!(req.headers()["x-forwarded-proto"], "invalid", "{proto:?}");
        }
        // Every hop HTTPS stays HTTPS.
        let req = convert(rest_v1(
            json!({"X-Forwarded-Proto": "https, HTTPS", "Host": "a.example"}),
            "{}",
            false,
        ));
        assert_eq!(req.headers()["x-forwarded-proto"], "https");
        // Good values are left alone.
        let req = convert(rest_v1(
            json!({"X-Forwarded-Proto": "https", "Host": "a.example"}),
            "{}",
            false,
        ));
        assert_eq!(req.headers()["x-forwarded-proto"], "https");
        assert_eq!(req.headers()["host"], "a.example");
    }

    #[test]
    fn a_host_that_is_not_a_host_becomes_localhost() {
        for host in ["a b", "1.2.3.999", "xn--zz", "h:99999", "h:port", "[::1"] {
            let req = convert(rest_v1(
                json!({"X-Forwarded-Proto": "https", "Host": host}),
                "{}",
                false,
            ));
            assert_eq!(req.headers()["host"], "localhost", "{host:?}");
        }
    }

    #[test]
    fn an_undecodable_base64_body_becomes_empty() {
        let req = convert(rest_v1(
            json!({"X-Forwarded-Proto": "https"}),
            "%%% not base64",
            true,
        ));
        assert!(req.body().as_ref().is_empty());
        let req = convert(rest_v1(json!({"X-Forwarded-Proto": "https"}), "e30=", true));
        assert_eq!(req.body().as_ref(), b"{}");
    }

    #[test]
    fn odd_paths_queries_and_stages_are_neutralised() {
        let mut v2: LambdaRequest = serde_json::from_value(json!({
            "version": "2.0", "rawPath": "no-slash {}", "rawQueryString": "a=\"b\"&c={d}|e",
            "headers": {"x-forwarded-proto": "https"},
            "requestContext": {"http": {"method": "POST", "path": "/"}, "stage": "st age", "domainName": "d.example"},
            "isBase64Encoded": false
        }))
        .unwrap();
        make_convertible(&mut v2);
        let req = Request::from(v2);
        assert_eq!(req.uri().path(), "/");
        assert_eq!(req.uri().query(), None);
        // A clean request keeps its path and query.
        let v2: LambdaRequest = serde_json::from_value(json!({
            "version": "2.0", "rawPath": "/webhook", "rawQueryString": "a=b%20c",
            "headers": {"x-forwarded-proto": "https", "host": "d.example"},
            "requestContext": {"http": {"method": "POST", "path": "/webhook"}, "stage": "$default"},
            "isBase64Encoded": false
        }))
        .unwrap();
        let req = convert(v2);
        assert_eq!(req.uri().to_string(), "https://d.example/webhook?a=b%20c");
    }

    #[test]
    fn alb_events_are_guarded_too() {
        let alb: LambdaRequest = serde_json::from_value(json!({
            "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-2:1:targetgroup/x/y"}},
            "httpMethod": "POST", "path": "/webhook",
            "headers": {"host": "bad host", "x-forwarded-proto": ""},
            "body": "***", "isBase64Encoded": true
        }))
        .unwrap();
        let req = convert(alb);
        assert_eq!(req.headers()["x-forwarded-proto"], "invalid");
        assert!(req.body().as_ref().is_empty());
    }
}
