//! Per-team mapping files: loading, criteria, routing and templates.

pub mod criteria;
pub mod spec;
pub mod template;
