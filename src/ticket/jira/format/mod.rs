//! The bodies Jira accepts for rich text: ADF (Cloud, v3), wiki markup (Data Center, v2), both from
//! the light Markdown of the templates, within Jira's text limit ([`jira_rich_text`]). Ticket
//! descriptions (`render`) and the client's own comments go through the same function, so both
//! are cut and escaped alike.

pub mod adf;
pub(crate) mod markdown;
pub mod wiki;

use serde_json::Value;

use crate::mapping::template::cut_to_limit;
use adf::markdown_to_adf;
use wiki::markdown_to_wiki;

/// Jira text fields (description, text custom fields).
pub const JIRA_TEXT_LIMIT: usize = 32_767;

/// Which Jira API the payload is for: they differ in how rich text is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum JiraFlavor {
    /// Jira Cloud, REST v3: description and comments are Atlassian Document Format.
    #[default]
    Cloud,
    /// Jira Data Center / Server, REST v2: description and comments are wiki markup.
    DataCenter,
}

/// Light Markdown → the rich-text value a Jira field or comment body takes: ADF for Cloud, wiki
/// markup for Data Center, within Jira's text limit. Also for comments built outside templates
/// (lifecycle comments).
pub fn jira_rich_text(flavor: JiraFlavor, markdown: &str) -> Value {
    match flavor {
        JiraFlavor::Cloud => markdown_to_adf(&cut_to_limit(markdown, JIRA_TEXT_LIMIT)),
        JiraFlavor::DataCenter => Value::String(wiki_within_limit(markdown, JIRA_TEXT_LIMIT)),
    }
}

/// Data Center stores the wiki text itself, and escaping makes it longer than the Markdown
/// (`\` becomes five characters), so the Markdown is cut until its wiki form fits. Cutting the
/// Markdown rather than the wiki keeps escapes and macros whole; the budget shrinks in proportion
/// to the overshoot, which converges in a few rounds. A last hard cut guarantees the limit.
fn wiki_within_limit(markdown: &str, limit: usize) -> String {
    let mut budget = limit;
    for _ in 0..8 {
        let wiki = markdown_to_wiki(&cut_to_limit(markdown, budget));
        let len = wiki.chars().count();
        if len <= limit {
            return wiki;
        }
        let scaled = budget.saturating_mul(limit) / len;
        budget = scaled.min(budget - 1).max(1);
    }
    cut_to_limit(&markdown_to_wiki(&cut_to_limit(markdown, budget)), limit).into_owned()
}
