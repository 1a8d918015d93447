//! Placeholder: replaced by the criteria engine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Criteria;
