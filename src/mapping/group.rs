//! Grouped tickets: a rule with `group_by` gives all findings of a team with the same group key
//! one ticket, whose items are the findings (README, "Grouped tickets").
//!
//! The group marker is `fb-` + the first 32 hex characters of SHA-256 of `team\ngroup:KEY`
//! ([`Marker::group`]); it is what the group ticket carries and what the store keys the group by.
//! A group holds at most [`MAX_GROUP_ITEMS`] findings (a DynamoDB item is at most 400 KB); the
//! findings after that go to a continuation group whose key is `KEY #2`, `KEY #3`, …
//! ([`continuation_key`]), each with its own ticket.

use crate::finding::{Finding, Schema, Severity, WriteBackId};
use crate::mapping::spec::TargetKind;
use crate::mapping::template::Template;
use crate::marker::Marker;

/// Findings one group ticket holds; later ones start a continuation group.
pub const MAX_GROUP_ITEMS: usize = 200;

/// Longest group key kept (characters): keys are rendered from findings, so bounded.
pub const MAX_GROUP_KEY_CHARS: usize = 200;

/// Characters of a finding's title kept in its item.
const ITEM_TITLE_CHARS: usize = 160;

/// Characters of a finding's first resource id kept in its item.
const ITEM_RESOURCE_CHARS: usize = 256;

/// One finding as its group ticket lists it. Stored in the group's record, so kept small.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupItem {
    pub id: String,
    pub title: String,
    /// The finding's first resource id (`""` when it names none).
    pub resource: String,
    /// Severity label the item was last seen with (the rule's override applied).
    pub severity: String,
    /// The finding is resolved (ARCHIVED / PASSED) as far as the bridge has processed it.
    pub resolved: bool,
    pub console_url: String,
    /// How to write back to the finding (status sync moves every open item of the group).
    pub schema: Schema,
    pub write_back: WriteBackId,
}

impl GroupItem {
    /// The item for `finding` as it is now, at `severity`.
    pub fn of(finding: &Finding, severity: Severity) -> GroupItem {
        GroupItem {
            id: finding.id.clone(),
            title: clip(&finding.title, ITEM_TITLE_CHARS),
            resource: finding
                .resources
                .first()
                .map(|r| clip(&r.id, ITEM_RESOURCE_CHARS))
                .unwrap_or_default(),
            severity: severity.as_str().to_owned(),
            resolved: finding.is_resolved(),
            console_url: finding.console_url.clone(),
            schema: finding.schema,
            write_back: finding.write_back.clone(),
        }
    }

    pub fn severity(&self) -> Severity {
        Severity::from_label(&self.severity).unwrap_or(Severity::Informational)
    }
}

/// A group as its templates see it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub key: String,
    pub marker: Marker,
    /// Every item, in the order the ticket lists them ([`GroupView::new`] sorts).
    pub items: Vec<GroupItem>,
}

impl GroupView {
    /// Sorts `items` the way tickets list them: open before resolved, then highest severity,
    /// then id — so a list cut at a field limit keeps what matters.
    pub fn new(key: String, marker: Marker, mut items: Vec<GroupItem>) -> GroupView {
        items.sort_by(|a, b| {
            a.resolved
                .cmp(&b.resolved)
                .then(b.severity().cmp(&a.severity()))
                .then(a.id.cmp(&b.id))
        });
        GroupView { key, marker, items }
    }

    pub fn open_count(&self) -> usize {
        self.items.iter().filter(|i| !i.resolved).count()
    }

    /// The highest severity of an open item; of any item when none is open (a group about to
    /// close keeps the priority it had).
    pub fn max_severity(&self) -> Severity {
        let open = self
            .items
            .iter()
            .filter(|i| !i.resolved)
            .map(GroupItem::severity)
            .max();
        open.or_else(|| self.items.iter().map(GroupItem::severity).max())
            .unwrap_or(Severity::Informational)
    }

    pub fn all_resolved(&self) -> bool {
        self.items.iter().all(|i| i.resolved)
    }
}

impl Marker {
    /// The marker of a group ticket: `fb-` + the first 32 hex characters of SHA-256 of
    /// `team\ngroup:KEY`. Part of the public contract, like [`Marker::new`].
    pub fn group(team: &str, key: &str) -> Marker {
        Marker::new(team, &format!("group:{key}"))
    }
}

/// The key of the `n`-th group of `key` (1 is the group itself): `KEY #2`, `KEY #3`, …
pub fn continuation_key(key: &str, n: usize) -> String {
    if n <= 1 {
        key.to_owned()
    } else {
        format!("{key} #{n}")
    }
}

/// A rule's `group_by` and the templates of its group tickets, compiled (README, "Grouped
/// tickets"). The ticket templates are the rule's `group_summary` / `group_description`, or the
/// built-in [`DEFAULT_SUMMARY`] / [`default_description`] when the rule leaves them out.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    /// Renders a finding's group key (then [`normalize_key`]).
    pub by: Template,
    /// Jira `summary` / ServiceNow `short_description` of the group ticket.
    pub summary: Template,
    /// Jira `description` (light Markdown) / ServiceNow `description` (plain text).
    pub description: Template,
}

/// The group ticket's summary when the rule sets no `group_summary`.
pub const DEFAULT_SUMMARY: &str = "[{{ group.max_severity }}] {{ group.key }}: {{ group.open_count }} of {{ group.count }} finding(s) open";

/// The Jira group description when the rule sets no `group_description`: a checklist in the
/// light Markdown the Jira converters understand (`[x]` / `[ ]` stay literal text in ADF and are
/// escaped in wiki markup), then where to find the items the field had no room for.
pub const DEFAULT_DESCRIPTION_MARKDOWN: &str = r#"{{ group.open_count }} of {{ group.count }} finding(s) open; highest open severity **{{ group.max_severity }}**. A finding is ticked off when Security Hub resolves it.

{% for f in group.findings %}- {{ "[x]" if f.resolved else "[ ]" }} **{{ f.severity }}** {{ f.title }}{% if f.resource %} — {{ f.resource }}{% endif %}{% if f.console_url %} — [console]({{ f.console_url }}){% endif %}
{% endfor %}{% if group.omitted %}
…and {{ group.omitted }} more finding(s) not listed here: in Security Hub, filter findings by note text {{ group.marker }} (every finding of this group names it in its note).
{% endif %}"#;

/// The ServiceNow group description when the rule sets no `group_description`: the same
/// checklist as plain text (ServiceNow shows `description` as it is).
pub const DEFAULT_DESCRIPTION_PLAIN: &str = r#"{{ group.open_count }} of {{ group.count }} finding(s) open; highest open severity {{ group.max_severity }}. A finding is ticked off when Security Hub resolves it.

{% for f in group.findings %}- {{ "[x]" if f.resolved else "[ ]" }} {{ f.severity }} {{ f.title }}{% if f.resource %} — {{ f.resource }}{% endif %}{% if f.console_url %}
  {{ f.console_url }}{% endif %}
{% endfor %}{% if group.omitted %}
…and {{ group.omitted }} more finding(s) not listed here: in Security Hub, filter findings by note text {{ group.marker }} (every finding of this group names it in its note).
{% endif %}"#;

/// The built-in description of a group ticket of `kind`.
pub fn default_description(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Jira => DEFAULT_DESCRIPTION_MARKDOWN,
        TargetKind::ServiceNow => DEFAULT_DESCRIPTION_PLAIN,
    }
}

/// A rendered group key as stored: one line, trimmed, at most [`MAX_GROUP_KEY_CHARS`].
pub fn normalize_key(rendered: &str) -> String {
    let one_line: String = rendered.split_whitespace().collect::<Vec<_>>().join(" ");
    clip(&one_line, MAX_GROUP_KEY_CHARS)
}

fn clip(value: &str, chars: usize) -> String {
    crate::mapping::template::cut_to_limit(value, chars).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn item(id: &str, severity: &str, resolved: bool) -> GroupItem {
        GroupItem {
            id: id.to_owned(),
            title: String::new(),
            resource: String::new(),
            severity: severity.to_owned(),
            resolved,
            console_url: String::new(),
            schema: Schema::Asff,
            write_back: WriteBackId::Asff {
                id: id.to_owned(),
                product_arn: String::new(),
            },
        }
    }

    #[test]
    fn group_marker_follows_the_documented_formula() {
        let expected = format!(
            "fb-{}",
            &hex::encode(Sha256::digest(b"platform\ngroup:S3.1"))[..32]
        );
        assert_eq!(Marker::group("platform", "S3.1").as_str(), expected);
        assert_ne!(
            Marker::group("platform", "S3.1"),
            Marker::new("platform", "S3.1"),
            "a group never shares a marker with a finding of the same id"
        );
    }

    #[test]
    fn items_list_open_first_then_by_severity_and_the_group_takes_the_highest_open() {
        let view = GroupView::new(
            "k".into(),
            Marker::group("t", "k"),
            vec![
                item("c", "CRITICAL", true),
                item("b", "LOW", false),
                item("a", "HIGH", false),
                item("d", "HIGH", false),
            ],
        );
        let ids: Vec<&str> = view.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a", "d", "b", "c"]);
        assert_eq!(view.open_count(), 3);
        assert_eq!(
            view.max_severity(),
            Severity::High,
            "the resolved CRITICAL no longer counts"
        );
        assert!(!view.all_resolved());
        let closed = GroupView::new(
            "k".into(),
            Marker::group("t", "k"),
            vec![item("c", "CRITICAL", true), item("b", "LOW", true)],
        );
        assert_eq!(closed.max_severity(), Severity::Critical);
        assert!(closed.all_resolved());
    }

    #[test]
    fn keys_are_one_bounded_line_and_continuations_are_numbered() {
        assert_eq!(normalize_key("  a\n b\t c "), "a b c");
        assert!(normalize_key(&"x".repeat(1000)).chars().count() <= MAX_GROUP_KEY_CHARS);
        assert_eq!(continuation_key("S3.1", 1), "S3.1");
        assert_eq!(continuation_key("S3.1", 3), "S3.1 #3");
    }
}
