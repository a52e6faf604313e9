//! The CDC path's domain: the mapping file, DMS record → Reltio writes, ordering, and applying them.

pub mod apply;
pub mod mapping;
pub mod schedule;
pub mod transform;
pub mod versions;
