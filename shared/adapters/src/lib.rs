//! mdm-sync's adapters: everything that does I/O for the functions — the Reltio and Salesforce clients (one OAuth
//! session, one send loop), the DynamoDB ledger, SQS, SNS and Firehose (one partial-failure retry), the letter
//! store (S3), Secrets Manager, EMF metrics, typed settings and the event-source responses. Each implements a port
//! of `mdm_sync_domain`.

pub mod aws;
pub mod config;
pub mod enqueue;
pub mod eventbridge;
pub mod firehose;
pub mod http;
pub mod kafka;
pub mod key_ledger;
pub mod kinesis;
pub mod ledger;
pub mod metrics;
pub mod oauth;
pub mod reltio;
pub mod replay;
pub mod retry;
pub mod runner;
pub mod s3;
pub mod salesforce;
pub mod secrets;
pub mod sns;
pub mod source;
pub mod sqs;
pub mod sqs_event;
