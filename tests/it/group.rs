//! Grouped tickets on the mapping and rendering side: `group_by` and the group templates as the
//! loader reads them, the group key, the group ticket's create body and update fields in every
//! flavour (ADF, wiki, ServiceNow text), the description summarised at the field limit without
//! cutting an item, and `render` output of grouped routes.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use findings_bridge::commands::offline;
use findings_bridge::finding::{Finding, Resource, Severity, decode};
use findings_bridge::mapping::group::{
    DEFAULT_SUMMARY, GroupItem, GroupView, MAX_GROUP_ITEMS, MAX_GROUP_KEY_CHARS,
};
use findings_bridge::mapping::spec::{Rule, TicketSpec};
use findings_bridge::mapping::template::TRUNCATION_MARK;
use findings_bridge::mapping::{self, Mappings};
use findings_bridge::marker::Marker;
use findings_bridge::render::{
    JIRA_TEXT_LIMIT, JiraFlavor, RenderError, RenderOptions, RenderedGroup,
    SERVICENOW_DESCRIPTION_LIMIT, group_key, render_group, render_route_shared,
};
use serde_json::Value;
use tempfile::TempDir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn dir(files: &[(&str, &str)]) -> TempDir {
    let d = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap_or_else(|e| panic!("{e}"));
    }
    d
}

fn load(files: &[(&str, &str)]) -> Mappings {
    let d = dir(files);
    let t = now();
    mapping::load_with_clock(d.path(), Arc::new(move || t))
        .unwrap_or_else(|e| panic!("expected the mappings to load, got:\n{e}"))
}

fn errors(files: &[(&str, &str)]) -> String {
    let d = dir(files);
    match mapping::load(d.path()) {
        Ok(m) => panic!("expected load errors, got {} rule(s)", m.rules.len()),
        Err(e) => e.to_string(),
    }
}

fn rule<'a>(m: &'a Mappings, name: &str) -> &'a Rule {
    m.rules
        .iter()
        .find(|r| &*r.name == name)
        .unwrap_or_else(|| panic!("no rule {name}"))
}

/// A Jira team and a ServiceNow team, each with one rule grouping by control id, with the
/// built-in ticket templates.
const JIRA_TEAM: &str = r#"team = "payments"

[[rules]]
name = "by-control"
order = 10
group_by = "{{ finding.compliance.control_id }}"
severity_override = "LOW"
sla = { CRITICAL = "1d", HIGH = "7d", MEDIUM = "30d", LOW = "90d" }
[rules.jira]
project = "PAY"
issue_type = "Bug"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
labels = ["security-hub"]
"#;

const SERVICENOW_TEAM: &str = r#"team = "platform"

[[rules]]
name = "by-control-sn"
order = 20
group_by = "{{ finding.account_id }}/{{ finding.compliance.control_id }}"
[rules.servicenow]
urgency = "{{ 1 if finding.severity in ['CRITICAL', 'HIGH'] else 2 }}"
impact = "2"
assignment_group = "Cloud Platform"
"#;

fn grouped() -> Mappings {
    load(&[
        ("payments.toml", JIRA_TEAM),
        ("platform.toml", SERVICENOW_TEAM),
    ])
}

/// The failed S3.8 control of `tests/fixtures/cspm-control-failed.json` (HIGH).
fn control() -> Finding {
    let bytes = std::fs::read(Path::new(ROOT).join("tests/fixtures/cspm-control-failed.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    decode(&bytes)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("one finding"))
}

/// The control failing on another resource: id, title and resource made from `n`.
fn member(n: usize, severity: Severity, resolved: bool, resource: &str) -> GroupItem {
    let mut f = control();
    f.id = format!("{}-{n}", f.id);
    f.title = format!("Finding {n}: S3 general purpose buckets should block public access");
    f.resources = vec![Resource {
        kind: "AwsS3Bucket".into(),
        id: resource.to_owned(),
        region: None,
        partition: None,
        tags: Default::default(),
    }];
    let mut item = GroupItem::of(&f, severity);
    item.resolved = resolved;
    item
}

fn view(team: &str, key: &str, items: Vec<GroupItem>) -> GroupView {
    GroupView::new(key.to_owned(), Marker::group(team, key), items)
}

fn render(m: &Mappings, name: &str, v: &GroupView, flavor: JiraFlavor) -> RenderedGroup {
    render_group(
        &m.engine,
        rule(m, name),
        &Arc::new(control()),
        None,
        v,
        &RenderOptions { jira: flavor },
    )
    .unwrap_or_else(|e| panic!("render_group: {e}"))
}

/// Every text of an ADF node, concatenated.
fn adf_text(node: &Value) -> String {
    let mut out = String::new();
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        if let Some(s) = n.get("text").and_then(Value::as_str) {
            out.push_str(s);
        }
        if let Some(children) = n.get("content").and_then(Value::as_array) {
            stack.extend(children.iter().rev());
        }
    }
    out
}

/// The list items of the first bullet list of an ADF document, each as its text.
fn adf_items(doc: &Value) -> Vec<String> {
    doc["content"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "bulletList"))
        .and_then(|list| list["content"].as_array())
        .map(|items| items.iter().map(adf_text).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn a_grouped_rule_gets_the_built_in_templates_and_needs_no_summary() {
    let m = grouped();
    for name in ["by-control", "by-control-sn"] {
        let r = rule(&m, name);
        let group = r.group.as_ref().unwrap_or_else(|| panic!("{name} groups"));
        assert_eq!(group.summary.source(), DEFAULT_SUMMARY);
        let (summary, description) = match &r.ticket {
            TicketSpec::Jira(j) => (&j.summary, &j.description),
            TicketSpec::ServiceNow(s) => (&s.short_description, &s.description),
        };
        assert_eq!(
            summary, &group.summary,
            "{name}: the group summary stands in"
        );
        assert_eq!(description.as_ref(), Some(&group.description), "{name}");
    }
    let jira = rule(&m, "by-control")
        .group
        .as_ref()
        .map(|g| g.description.source());
    let servicenow = rule(&m, "by-control-sn")
        .group
        .as_ref()
        .map(|g| g.description.source());
    assert!(jira.is_some_and(|d| d.contains("[console]")), "{jira:?}");
    assert!(
        servicenow.is_some_and(|d| !d.contains("**") && !d.contains("](")),
        "ServiceNow's is plain text: {servicenow:?}"
    );
}

#[test]
fn defaults_group_every_rule_and_an_empty_group_by_opts_out() {
    let m = load(&[(
        "platform.toml",
        r#"team = "platform"

[defaults]
group_by = "{{ finding.compliance.control_id }}"
group_summary = "Control {{ group.key }}"

[defaults.servicenow]
short_description = "{{ finding.title }}"

[[rules]]
name = "grouped"
order = 1
[rules.servicenow]

[[rules]]
name = "single"
order = 2
group_by = ""
[rules.servicenow]
"#,
    )]);
    let grouped = rule(&m, "grouped").group.as_ref();
    assert_eq!(
        grouped.map(|g| g.summary.source()),
        Some("Control {{ group.key }}")
    );
    assert!(rule(&m, "single").group.is_none());
}

#[test]
fn group_templates_without_group_by_are_errors_at_their_line() {
    let text = r#"team = "payments"

[[rules]]
name = "single"
order = 1
group_summary = "{{ group.key }}"
group_description = "x"
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "{{ finding.title }}"
"#;
    let found = errors(&[("payments.toml", text)]);
    assert!(
        found.contains("payments.toml:6: rules[0] (`single`): `group_summary` needs `group_by`"),
        "{found}"
    );
    assert!(
        found
            .contains("payments.toml:7: rules[0] (`single`): `group_description` needs `group_by`"),
        "{found}"
    );
    let opted_out = text.replace("order = 1\n", "order = 1\ngroup_by = \"\"\n");
    let found = errors(&[("payments.toml", &opted_out)]);
    assert!(
        found.contains("payments.toml:7: rules[0] (`single`): `group_summary` needs"),
        "{found}"
    );
}

#[test]
fn broken_group_templates_name_file_and_line() {
    let text = r#"team = "platform"

[[rules]]
name = "grouped"
order = 1
group_by = "{{ finding.account_id"
group_description = '''
{{ group.open_count }} open
{% for f in group.findings %}- {{ f.title }}
{% endfor %
'''
[rules.servicenow]
"#;
    let errors = errors(&[("platform.toml", text)]);
    assert!(
        errors.contains("platform.toml:6: rules[0].group_by: template error"),
        "{errors}"
    );
    assert!(
        errors.contains("platform.toml:10: rules[0].group_description: template error"),
        "the error is on the template's third line: {errors}"
    );
    assert!(
        !errors.contains("short_description"),
        "a broken group template still stands in for the summary: {errors}"
    );
}

// ---------------------------------------------------------------------------------------------
// Keys

#[test]
fn group_keys_are_one_bounded_line_and_an_empty_key_fails_naming_the_rule() {
    let key_of = |template: &str, f: Finding| {
        let text = SERVICENOW_TEAM.replace(
            "{{ finding.account_id }}/{{ finding.compliance.control_id }}",
            template,
        );
        let m = load(&[("platform.toml", &text)]);
        group_key(&m.engine, rule(&m, "by-control-sn"), &Arc::new(f), None)
    };
    let m = grouped();
    let f = Arc::new(control());
    assert_eq!(
        group_key(&m.engine, rule(&m, "by-control-sn"), &f, None).ok(),
        Some(Some("111122223333/S3.8".to_owned()))
    );
    assert_eq!(
        key_of(
            r"  {{ finding.compliance.control_id }}\n\t in {{ finding.region }} ",
            control()
        )
        .ok(),
        Some(Some("S3.8 in us-east-1".to_owned()))
    );
    let mut long = control();
    long.title = "t".repeat(5_000);
    let key = key_of("{{ finding.title }}", long)
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(key.chars().count(), MAX_GROUP_KEY_CHARS);
    assert!(key.ends_with(TRUNCATION_MARK), "{key}");

    let mut without = control();
    without.compliance.control_id = None;
    match key_of("{{ finding.compliance.control_id or '' }}", without) {
        Err(e @ RenderError::EmptyGroupKey { .. }) => {
            let text = e.to_string();
            assert!(text.contains("platform/by-control-sn ("), "{text}");
            assert!(text.contains("platform.toml:3)"), "{text}");
        }
        other => panic!("expected an empty-key error, got {other:?}"),
    }

    let plain = load(&[(
        "platform.toml",
        &SERVICENOW_TEAM
            .replace(
                "group_by = \"{{ finding.account_id }}/{{ finding.compliance.control_id }}\"\n",
                "",
            )
            .replace(
                "[rules.servicenow]\n",
                "[rules.servicenow]\nshort_description = \"{{ finding.title }}\"\n",
            ),
    )]);
    let single = rule(&plain, "by-control-sn");
    assert!(single.group.is_none());
    assert_eq!(
        group_key(&plain.engine, single, &f, None).ok(),
        Some(None),
        "no group_by, no key"
    );
    assert!(matches!(
        render_group(
            &plain.engine,
            single,
            &f,
            None,
            &view("platform", "k", vec![]),
            &RenderOptions::default()
        ),
        Err(RenderError::NotGrouped { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// The group ticket

fn three() -> GroupView {
    view(
        "payments",
        "S3.8",
        vec![
            member(1, Severity::Critical, true, "arn:aws:s3:::one"),
            member(2, Severity::Medium, false, "arn:aws:s3:::two"),
            member(3, Severity::High, false, "arn:aws:s3:::three"),
        ],
    )
}

#[test]
fn jira_cloud_group_ticket_is_an_adf_checklist_under_the_group_marker() {
    let m = grouped();
    let v = three();
    let g = render(&m, "by-control", &v, JiraFlavor::Cloud);
    let fields = &g.ticket.payload["fields"];
    assert_eq!(fields["project"]["key"], "PAY");
    assert_eq!(
        fields["summary"], "[HIGH] S3.8: 2 of 3 finding(s) open",
        "the highest OPEN severity; the override (LOW) does not apply to groups"
    );
    assert_eq!(fields["priority"]["name"], "High");
    assert_eq!(
        fields["labels"],
        serde_json::json!(["security-hub", "findings-bridge", v.marker.as_str()])
    );
    assert_eq!(g.ticket.marker, v.marker);
    assert_eq!(g.ticket.severity, Severity::High);
    assert_eq!(g.ticket.severity_note, None);
    let route = g.ticket.group.as_ref().map(|r| (r.key.as_str(), &r.marker));
    assert_eq!(route, Some(("S3.8", &v.marker)));
    // Due: first observed (2026-02-28) + the HIGH SLA of 7 days.
    assert_eq!(fields["duedate"], "2026-03-07");
    assert!(g.ticket.sla.is_some());

    let description = &fields["description"];
    assert_eq!(description["type"], "doc");
    let items = adf_items(description);
    assert_eq!(items.len(), 3, "{description}");
    assert!(items[0].starts_with("[ ] HIGH Finding 3:"), "{items:?}");
    assert!(items[0].contains("arn:aws:s3:::three"), "{items:?}");
    assert!(items[0].ends_with("console"), "{items:?}");
    assert!(items[1].starts_with("[ ] MEDIUM Finding 2:"), "{items:?}");
    assert!(items[2].starts_with("[x] CRITICAL Finding 1:"), "{items:?}");
    let link = description.to_string();
    assert!(
        link.contains(r#""type":"link""#),
        "console links are links: {link}"
    );
    assert!(adf_text(description).starts_with("2 of 3 finding(s) open"));
    assert!(!adf_text(description).contains("more finding(s)"));
}

#[test]
fn jira_data_center_group_description_is_wiki_markup() {
    let m = grouped();
    let g = render(&m, "by-control", &three(), JiraFlavor::DataCenter);
    let wiki = g.ticket.payload["fields"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let items: Vec<&str> = wiki.lines().filter(|l| l.starts_with("* ")).collect();
    assert_eq!(items.len(), 3, "{wiki}");
    assert!(
        items[0].starts_with("* \\[ \\] *HIGH* Finding 3:"),
        "{wiki}"
    );
    assert!(
        items[2].starts_with("* \\[x\\] *CRITICAL* Finding 1:"),
        "{wiki}"
    );
    assert!(items[0].contains("[console|https://"), "{wiki}");
}

#[test]
fn servicenow_group_ticket_is_a_plain_text_checklist() {
    let m = grouped();
    let v = view("platform", "111122223333/S3.8", three().items);
    let g = render(&m, "by-control-sn", &v, JiraFlavor::Cloud);
    let body = &g.ticket.payload;
    assert_eq!(body["correlation_id"], v.marker.as_str());
    assert_eq!(body["assignment_group"], "Cloud Platform");
    assert_eq!(body["urgency"], "1");
    assert_eq!(
        body["short_description"],
        "[HIGH] 111122223333/S3.8: 2 of 3 finding(s) open"
    );
    assert_eq!(g.ticket.table.as_deref(), Some("incident"));
    let text = body["description"].as_str().unwrap_or_default();
    let items: Vec<&str> = text.lines().filter(|l| l.starts_with("- ")).collect();
    assert_eq!(
        items,
        [
            "- [ ] HIGH Finding 3: S3 general purpose buckets should block public access — arn:aws:s3:::three",
            "- [ ] MEDIUM Finding 2: S3 general purpose buckets should block public access — arn:aws:s3:::two",
            "- [x] CRITICAL Finding 1: S3 general purpose buckets should block public access — arn:aws:s3:::one",
        ],
        "{text}"
    );
    assert!(
        text.contains("\n  https://us-east-1.console.aws.amazon.com/securityhub/"),
        "{text}"
    );
    assert!(!text.contains("**") && !text.contains("]("), "{text}");
}

#[test]
fn update_fields_are_the_create_body_fields_that_change() {
    let m = grouped();
    let g = render(&m, "by-control", &three(), JiraFlavor::Cloud);
    let keys: Vec<&str> = g.fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["description", "duedate", "priority", "summary"]);
    for key in keys {
        assert_eq!(g.fields[key], g.ticket.payload["fields"][key], "{key}");
    }
    let sn = render(&m, "by-control-sn", &three(), JiraFlavor::Cloud);
    let keys: Vec<&str> = sn.fields.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["description", "impact", "short_description", "urgency"]
    );
    for key in keys {
        assert_eq!(sn.fields[key], sn.ticket.payload[key], "{key}");
    }
}

#[test]
fn every_group_variable_reaches_the_templates() {
    let text = r#"team = "platform"

[[rules]]
name = "vars"
order = 1
group_by = "{{ finding.compliance.control_id }}"
group_summary = "{{ group.key }} {{ group.count }} {{ group.open_count }} {{ group.max_severity }} {{ group.omitted }} {{ team }}/{{ rule }} {{ finding.severity }}"
group_description = "{{ group.marker }}{% for f in group.findings %}|{{ f.id[-2:] }},{{ f.severity }},{{ f.state }},{{ f.resolved }},{{ f.resource }},{{ f.title[:9] }},{{ f.console_url[:8] }}{% endfor %}"
[rules.servicenow]
description = "replaced by the group description"
fields = { u_group = "{{ group.key }}" }
"#;
    let m = load(&[("platform.toml", text)]);
    let v = view("platform", "S3.8", three().items);
    let g = render(&m, "vars", &v, JiraFlavor::Cloud);
    let body = &g.ticket.payload;
    assert_eq!(
        body["short_description"],
        "S3.8 3 2 HIGH 0 platform/vars HIGH"
    );
    assert_eq!(
        body["description"],
        format!(
            "{}|-3,HIGH,OPEN,False,arn:aws:s3:::three,Finding 3,https://\
             |-2,MEDIUM,OPEN,False,arn:aws:s3:::two,Finding 2,https://\
             |-1,CRITICAL,RESOLVED,True,arn:aws:s3:::one,Finding 1,https://",
            v.marker
        )
    );
    assert_eq!(
        body["u_group"], "S3.8",
        "the rule's other templates see `group` too"
    );
}

// ---------------------------------------------------------------------------------------------
// The field limit

/// `n` open findings of alternating severity whose resources make every list item long, with
/// characters wiki markup has to escape.
fn crowd(team: &str, n: usize) -> GroupView {
    let items = (0..n)
        .map(|i| {
            let severity = if i % 2 == 0 {
                Severity::High
            } else {
                Severity::Medium
            };
            let resource = format!("arn:aws:s3:::bucket-{i:03}-{}", "{x}[y]|".repeat(30));
            member(i, severity, i % 7 == 0, &resource)
        })
        .collect();
    view(team, "S3.8", items)
}

/// The number in "…and N more finding(s)", if the text has that line.
fn omitted(text: &str) -> Option<usize> {
    let rest = text.split("…and ").nth(1)?;
    rest.split(' ').next()?.parse().ok()
}

#[test]
fn jira_cloud_lists_whole_items_up_to_the_limit_and_counts_the_rest() {
    let m = grouped();
    let v = crowd("payments", MAX_GROUP_ITEMS);
    let g = render(&m, "by-control", &v, JiraFlavor::Cloud);
    let description = &g.ticket.payload["fields"]["description"];
    let text = adf_text(description);
    assert!(!text.contains(TRUNCATION_MARK), "never cut: {text}");
    let items = adf_items(description);
    assert!(
        items.len() > 10 && items.len() < MAX_GROUP_ITEMS,
        "{}",
        items.len()
    );
    for (item, expected) in items.iter().zip(&v.items) {
        assert!(item.contains(&expected.resource), "{item}");
        assert!(item.ends_with("console"), "whole item: {item}");
    }
    assert_eq!(
        omitted(&text),
        Some(MAX_GROUP_ITEMS - items.len()),
        "{text}"
    );
    assert!(
        text.contains(v.marker.as_str()),
        "how to find the rest: {text}"
    );
    assert_eq!(g.fields["description"], *description);
}

#[test]
fn jira_data_center_measures_the_wiki_markup() {
    let m = grouped();
    let v = crowd("payments", MAX_GROUP_ITEMS);
    let g = render(&m, "by-control", &v, JiraFlavor::DataCenter);
    let wiki = g.ticket.payload["fields"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(wiki.chars().count() <= JIRA_TEXT_LIMIT);
    assert!(!wiki.contains(TRUNCATION_MARK), "never cut");
    let items: Vec<&str> = wiki.lines().filter(|l| l.starts_with("* ")).collect();
    for (item, expected) in items.iter().zip(&v.items) {
        assert!(item.contains(&expected.title), "whole item: {item}");
        assert!(item.ends_with(']'), "whole item ends with its link: {item}");
    }
    assert_eq!(omitted(wiki), Some(MAX_GROUP_ITEMS - items.len()));
    // Escaping makes wiki longer than its Markdown, so fewer items fit than on Cloud.
    let cloud = render(&m, "by-control", &v, JiraFlavor::Cloud);
    let cloud_items = adf_items(&cloud.ticket.payload["fields"]["description"]).len();
    assert!(
        items.len() < cloud_items,
        "{} vs {cloud_items}",
        items.len()
    );
}

#[test]
fn servicenow_lists_whole_items_within_its_4000_characters() {
    let m = grouped();
    let v = crowd("platform", 40);
    let g = render(&m, "by-control-sn", &v, JiraFlavor::Cloud);
    let text = g.ticket.payload["description"].as_str().unwrap_or_default();
    assert!(text.chars().count() <= SERVICENOW_DESCRIPTION_LIMIT);
    assert!(!text.contains(TRUNCATION_MARK), "never cut: {text}");
    let items: Vec<&str> = text.lines().filter(|l| l.starts_with("- [")).collect();
    assert!(!items.is_empty() && items.len() < 40, "{text}");
    let urls = text.lines().filter(|l| l.starts_with("  https://")).count();
    assert_eq!(
        urls,
        items.len(),
        "every listed item has its link line: {text}"
    );
    assert_eq!(omitted(text), Some(40 - items.len()), "{text}");
    // The open items come first.
    assert!(items.iter().all(|i| i.starts_with("- [ ]")), "{text}");
}

#[test]
fn a_description_too_long_even_without_items_is_truncated_as_usual() {
    let text = SERVICENOW_TEAM.replace(
        "[rules.servicenow]",
        &format!(
            "group_description = \"{{{{ group.omitted }}}} left out. {}{{% for f in group.findings %}}{{{{ f.id }}}}{{% endfor %}}\"\n[rules.servicenow]",
            "x".repeat(5_000)
        ),
    );
    let m = load(&[("platform.toml", &text)]);
    let g = render(&m, "by-control-sn", &three(), JiraFlavor::Cloud);
    let description = g.ticket.payload["description"].as_str().unwrap_or_default();
    assert!(description.starts_with("3 left out. xxx"), "{description}");
    assert!(description.ends_with(TRUNCATION_MARK));
    assert_eq!(description.chars().count(), SERVICENOW_DESCRIPTION_LIMIT);
}

// ---------------------------------------------------------------------------------------------
// Routes and `render`

#[test]
fn a_grouped_route_renders_the_group_ticket_under_the_finding_marker() {
    let m = grouped();
    let f = Arc::new(control());
    let r = rule(&m, "by-control");
    let t = render_route_shared(&m.engine, r, &f, None, &RenderOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let group_marker = Marker::group("payments", "S3.8");
    assert_eq!(
        t.marker,
        Marker::new("payments", &f.id),
        "the lifecycle key"
    );
    assert_eq!(
        t.group.as_ref().map(|g| (g.key.as_str(), &g.marker)),
        Some(("S3.8", &group_marker))
    );
    let labels = &t.payload["fields"]["labels"];
    assert_eq!(
        labels,
        &serde_json::json!(["security-hub", "findings-bridge", group_marker.as_str()])
    );
    // The finding alone: its effective severity (the override, LOW) is the group's.
    assert_eq!(t.severity, Severity::Low);
    assert_eq!(
        t.payload["fields"]["summary"],
        "[LOW] S3.8: 1 of 1 finding(s) open"
    );
    assert!(
        t.severity_note
            .as_deref()
            .is_some_and(|n| n.contains("lowered from HIGH to LOW")),
        "{:?}",
        t.severity_note
    );
}

fn render_lines(m: &Mappings, fixture: &str) -> Vec<(String, Value)> {
    let input = std::fs::read(Path::new(ROOT).join("tests/fixtures").join(fixture))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    offline::render(m, &input, &RenderOptions::default(), &mut out)
        .unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| {
            let v = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}"));
            (l.to_owned(), v)
        })
        .collect()
}

#[test]
fn render_shows_the_group_of_the_shipped_grouped_rule() {
    let t = now();
    let m = offline::load_mappings(&Path::new(ROOT).join("mappings"), Some(t))
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = render_lines(&m, "cspm-control-failed-org.json");
    assert_eq!(lines.len(), 2);
    let marker = Marker::group("platform", "S3.8");
    for (_, line) in &lines {
        let routes = line["routes"].as_array().cloned().unwrap_or_default();
        assert_eq!(routes.len(), 1, "{line}");
        let route = &routes[0];
        assert_eq!(route["rule"], "cspm-controls-by-control");
        assert_eq!(
            route["group"],
            serde_json::json!({"key": "S3.8", "marker": marker.as_str()})
        );
        let id = line["finding_id"].as_str().unwrap_or_default();
        assert_eq!(route["marker"], Marker::new("platform", id).as_str());
        assert_eq!(route["payload"]["correlation_id"], marker.as_str());
        assert_eq!(
            route["payload"]["short_description"],
            "CSPM control S3.8 failing on 1 resource(s)"
        );
        assert!(route["payload"].get("u_aws_account").is_none(), "{route}");
    }

    // A route of a rule without group_by has exactly the keys it always had.
    let lines = render_lines(&m, "cspm-control-failed.json");
    let (text, line) = &lines[0];
    assert!(!text.contains("\"group\""), "{text}");
    let keys: Vec<&str> = line["routes"][0]
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["marker", "payload", "rule", "target", "team"]);
}
