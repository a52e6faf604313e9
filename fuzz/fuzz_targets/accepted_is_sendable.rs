//! Whatever the webhook receiver accepts, SQS can carry and the crm-updater can read.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mdm_sync_domain::properties;
use std::sync::OnceLock;

static MAPPING: OnceLock<mdm_sync_domain::crm::CrmMapping> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    properties::accepted_is_sendable(MAPPING.get_or_init(properties::example_crm_mapping), data);
});
