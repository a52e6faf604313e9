//! Sign-then-verify holds under both schemes; any other body fails.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdm_sync_domain::properties::signature_roundtrip(data));
