//! The DMS decoder and the CDC transform never panic, whatever the bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mdm_sync_domain::properties;
use std::sync::OnceLock;

static MAPPING: OnceLock<mdm_sync_domain::cdc::mapping::CdcMapping> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    properties::dms_decoder(MAPPING.get_or_init(properties::example_cdc_mapping), data);
});
