//! Signed webhooks carrying Reltio events (docs/contract.md, "webhook-receiver"): signature verification as pure
//! functions over the raw body, the headers, the secrets and a clock; parsing of the body into events; the
//! queue messages those events become.
//!
//! Nothing here does I/O, so every rule is tested without a network; the webhook-receiver function adds
//! Secrets Manager, SQS and HTTP around it.

pub mod events;
pub mod signature;

pub use events::{parse_body, BodyError, Subscription, WebhookEvent};
pub use signature::{
    sign_reltio, sign_standard, verify, Rejection, RequestHeaders, Scheme, Verified, VerifyOptions,
    WebhookSecrets,
};
