//! The webhook body's fast path answers exactly as the tree parse does.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdm_sync_domain::properties::webhook_parsers_agree(data));
