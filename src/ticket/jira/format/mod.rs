//! The bodies Jira accepts for rich text: ADF (Cloud, v3), wiki markup (Data Center, v2), both from
//! the light Markdown of the templates.

pub mod adf;
pub(crate) mod markdown;
pub mod wiki;
