//! Both mapping parsers accept or refuse any text, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mdm_sync_domain::properties::mappings(data));
