//! The HTTP edges of a request: whether it arrived over HTTPS, and the answers.

use lambda_http::http::{header::CONTENT_TYPE, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

/// HTTPS when every `X-Forwarded-Proto` value (all hops) is `https`. Without the header, only API Gateway
/// (REST, HTTP API) and function-URL requests count as HTTPS: those endpoints serve nothing but HTTPS, and
/// they always set the header in AWS anyway; an ALB request without it is refused.
pub fn arrived_over_https(req: &Request) -> bool {
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-proto")
        .iter()
        .map(|v| v.to_str().unwrap_or("invalid"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if values.is_empty() {
        return matches!(
            req.request_context_ref(),
            Some(RequestContext::ApiGatewayV1(_) | RequestContext::ApiGatewayV2(_))
        );
    }
    values.iter().all(|v| v.eq_ignore_ascii_case("https"))
}

pub(crate) fn answer(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| empty(StatusCode::INTERNAL_SERVER_ERROR))
}

pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = status;
    response
}
