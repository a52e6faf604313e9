//! The crm-updater's event decoding and planning never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mdm_sync_domain::properties;
use std::sync::OnceLock;

static MAPPING: OnceLock<mdm_sync_domain::crm::CrmMapping> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    properties::crm_event(MAPPING.get_or_init(properties::example_crm_mapping), data);
});
