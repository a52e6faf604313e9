//! The CDC path's domain: the mapping file, DMS record → Reltio writes, a batch's records (from Kinesis or Kafka)
//! planned and ordered, and applying them.

pub mod apply;
pub mod batch;
pub mod input;
pub mod mapping;
pub mod schedule;
pub mod transform;
pub mod versions;
