//! Payload rendering as a ticket system sees it: the exact create bodies for Jira Cloud, Jira
//! Data Center and ServiceNow, their limits, labels, typed fields, severity overrides, and the
//! Markdown converters under random and hostile input.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use findings_bridge::finding::{
    Compliance, Finding, RecordState, Remediation, Resource, Schema, Severity, WorkflowStatus,
    WriteBackId,
};
use findings_bridge::mapping::criteria::Criteria;
use findings_bridge::mapping::spec::{
    FieldTemplate, JiraSpec, OnRecurrence, OnResolved, Rule, ServiceNowSpec, StatusMap, TargetKind,
    TicketSpec,
};
use findings_bridge::mapping::template::{TRUNCATION_MARK, Template, TemplateEngine};
use findings_bridge::marker::Marker;
use findings_bridge::render::{
    JiraFlavor, RenderError, RenderOptions, RenderedTicket, jira_rich_text, render_route,
    template_context,
};
use findings_bridge::ticket::jira::format::adf::markdown_to_adf;
use findings_bridge::ticket::jira::format::wiki::markdown_to_wiki;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Builders (kept together so they are easy to adjust when the contracts grow).

fn engine() -> TemplateEngine {
    let fixed = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|_| Utc::now());
    TemplateEngine::new(Arc::new(move || fixed))
}

fn t(engine: &mut TemplateEngine, source: &str) -> Template {
    // Unique location per template, as the loader gives them (a repeated name would replace the
    // earlier template).
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    let location = format!(
        "payments.toml:{} (test)",
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    engine
        .compile(&location, source)
        .unwrap_or_else(|e| panic!("test template {source:?} must compile: {e}"))
}

fn finding() -> Finding {
    Finding {
        id: "arn:aws:securityhub:us-east-1:111122223333:subscription/aws-foundational/v/1.0.0/S3.8/finding/abc".into(),
        schema: Schema::Asff,
        product_arn: "arn:aws:securityhub:us-east-1::product/aws/securityhub".into(),
        product_name: "Security Hub".into(),
        company_name: "AWS".into(),
        generator_id: "aws-foundational-security-best-practices/v/1.0.0/S3.8".into(),
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        title: "S3 general purpose buckets should block public access".into(),
        description: "This control checks whether an S3 bucket blocks public access.".into(),
        severity: Severity::High,
        severity_score: 70,
        types: vec!["Software and Configuration Checks/Industry and Regulatory Standards".into()],
        resources: vec![Resource {
            kind: "AwsS3Bucket".into(),
            id: "arn:aws:s3:::payments-exports".into(),
            region: Some("us-east-1".into()),
            partition: Some("aws".into()),
            tags: BTreeMap::from([("team".into(), "payments".into())]),
        }],
        compliance: Compliance {
            status: Some("FAILED".into()),
            control_id: Some("S3.8".into()),
            standards: vec![],
            related_requirements: vec![],
        },
        workflow_status: WorkflowStatus::New,
        record_state: RecordState::Active,
        created_at: Some("2026-11-01T00:00:00Z".into()),
        updated_at: Some("2026-11-02T00:00:00Z".into()),
        first_observed_at: None,
        last_observed_at: None,
        remediation: Remediation {
            text: Some("Block public access".into()),
            url: Some("https://docs.aws.amazon.com/console/securityhub/S3.8/remediation".into()),
        },
        user_defined_fields: BTreeMap::new(),
        product_fields: BTreeMap::new(),
        console_url: "https://console.aws.amazon.com/securityhub/home?region=us-east-1#/findings"
            .into(),
        write_back: WriteBackId::Asff {
            id: "abc".into(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/securityhub".into(),
        },
        raw: json!({"Id": "abc", "ProductFields": {"aws/securityhub/ControlId": "S3.8"}}),
    }
}

/// A rule with empty criteria (matches everything): these tests are about rendering, not routing.
fn rule(ticket: TicketSpec) -> Rule {
    Rule {
        team: Arc::from("payments"),
        name: Arc::from("s3-public"),
        order: 10,
        file: PathBuf::from("mappings/payments.toml"),
        position: 0,
        line: 7,
        terminal: true,
        target: match ticket.kind() {
            TargetKind::Jira => "jira".into(),
            TargetKind::ServiceNow => "servicenow".into(),
        },
        criteria: Criteria::default(),
        ticket,
        status_map: StatusMap::default(),
        on_resolved: OnResolved::default(),
        on_recurrence: OnRecurrence::default(),
        severity_override: None,
        notify_on_create: true,
        enrich_detective: false,
        sla: Default::default(),
        escalate: None,
        group: None,
    }
}

fn jira_spec(e: &mut TemplateEngine) -> JiraSpec {
    JiraSpec {
        project: t(e, "PAY"),
        issue_type: t(e, "Bug"),
        summary: t(e, "[{{ finding.severity }}] {{ finding.title }}"),
        description: Some(t(
            e,
            "{{ finding.description }}\nAccount {{ finding.account_id }} — [open in console]({{ finding.console_url }})",
        )),
        priority: Some(t(
            e,
            "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}",
        )),
        labels: vec![t(e, "security-hub"), t(e, "team payments")],
        fields: BTreeMap::new(),
    }
}

fn servicenow_spec(e: &mut TemplateEngine) -> ServiceNowSpec {
    ServiceNowSpec {
        table: "incident".into(),
        short_description: t(e, "{{ finding.title }}"),
        description: Some(t(e, "{{ finding.description }}")),
        urgency: Some(t(
            e,
            "{{ 1 if finding.severity in ['CRITICAL', 'HIGH'] else 2 }}",
        )),
        impact: Some(t(e, "2")),
        assignment_group: Some(t(e, "Payments Security")),
        fields: BTreeMap::new(),
    }
}

fn render(e: &TemplateEngine, rule: &Rule, f: &Finding) -> Result<RenderedTicket, RenderError> {
    render_route(e, rule, f, None, &RenderOptions::default())
}

fn render_ok(e: &TemplateEngine, rule: &Rule, f: &Finding, flavor: JiraFlavor) -> RenderedTicket {
    render_route(e, rule, f, None, &RenderOptions { jira: flavor })
        .unwrap_or_else(|err| panic!("render must succeed: {err}"))
}

/// Concatenated text of every text node of an ADF document.
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

// ---------------------------------------------------------------------------------------------
// Jira

#[test]
fn jira_cloud_payload_is_the_documented_create_body() {
    let mut e = engine();
    let r = rule(TicketSpec::Jira(jira_spec(&mut e)));
    let f = finding();
    let rendered = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    let marker = Marker::new("payments", &f.id);
    assert_eq!(rendered.marker, marker);
    assert_eq!(rendered.kind, TargetKind::Jira);
    assert_eq!(rendered.table, None);
    assert_eq!(rendered.severity, Severity::High);
    assert_eq!(
        rendered.payload,
        json!({"fields": {
            "project": {"key": "PAY"},
            "issuetype": {"name": "Bug"},
            "summary": "[HIGH] S3 general purpose buckets should block public access",
            "description": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [
                    {"type": "text", "text": "This control checks whether an S3 bucket blocks public access."},
                    {"type": "hardBreak"},
                    {"type": "text", "text": "Account 111122223333 — "},
                    {"type": "text", "text": "open in console", "marks": [{"type": "link", "attrs": {"href": f.console_url}}]},
                ]},
            ]},
            "priority": {"name": "High"},
            "labels": ["security-hub", "team-payments", "findings-bridge", marker.as_str()],
        }})
    );
    assert_eq!(
        rendered.severity_fields(),
        json!({"priority": {"name": "High"}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    );
}

#[test]
fn jira_data_center_gets_wiki_markup() {
    let mut e = engine();
    let r = rule(TicketSpec::Jira(jira_spec(&mut e)));
    let f = finding();
    let rendered = render_ok(&e, &r, &f, JiraFlavor::DataCenter);
    assert_eq!(
        rendered.payload["fields"]["description"],
        format!(
            "This control checks whether an S3 bucket blocks public access.\nAccount 111122223333 — [open in console|{}]",
            f.console_url
        )
    );
    // Everything else is the same shape as on Cloud.
    assert_eq!(
        rendered.payload["fields"]["priority"],
        json!({"name": "High"})
    );
}

#[test]
fn template_syntax_in_finding_text_is_printed_not_evaluated() {
    let mut e = engine();
    let r = rule(TicketSpec::Jira(jira_spec(&mut e)));
    let mut f = finding();
    f.title = "{{ 7*7 }} {% if true %}x{% endif %}".into();
    f.description = "{{ 7*7 }} and {{ finding.account_id }}".into();
    let cloud = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    assert_eq!(
        cloud.payload["fields"]["summary"],
        "[HIGH] {{ 7*7 }} {% if true %}x{% endif %}"
    );
    let description = adf_text(&cloud.payload["fields"]["description"]);
    assert!(
        description.starts_with("{{ 7*7 }} and {{ finding.account_id }}"),
        "{description}"
    );
    let dc = render_ok(&e, &r, &f, JiraFlavor::DataCenter);
    let wiki = dc.payload["fields"]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !wiki.contains("49") && !wiki.contains("111122223333 and"),
        "{wiki}"
    );
    // Wiki shows the braces literally by escaping them (`*` between digits cannot be markup).
    assert!(wiki.starts_with("\\{\\{ 7*7 \\}\\}"), "{wiki}");
}

#[test]
fn jira_summary_is_one_line_and_cut_to_255_with_a_visible_mark() {
    let mut e = engine();
    let r = rule(TicketSpec::Jira(jira_spec(&mut e)));
    let mut f = finding();
    f.title = "first line\nsecond\tline\r\n".into();
    let rendered = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    assert_eq!(
        rendered.payload["fields"]["summary"],
        "[HIGH] first line second line"
    );

    f.title = format!("start {}", "ü".repeat(400));
    let rendered = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    let summary = rendered.payload["fields"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(summary.chars().count(), 255);
    assert!(summary.starts_with("[HIGH] start ü"));
    assert!(summary.ends_with(TRUNCATION_MARK));
}

#[test]
fn jira_text_fields_are_cut_to_32767() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    spec.description = Some(t(&mut e, "{{ finding.description }}"));
    spec.fields.insert(
        "customfield_10060".into(),
        FieldTemplate::Text(t(&mut e, "{{ finding.description }}")),
    );
    spec.fields.insert(
        "customfield_10061".into(),
        FieldTemplate::Table(BTreeMap::from([(
            "text".into(),
            FieldTemplate::Text(t(&mut e, "{{ finding.description }}")),
        )])),
    );
    let r = rule(TicketSpec::Jira(spec));
    let mut f = finding();
    f.description = "d".repeat(40_000);
    for flavor in [JiraFlavor::Cloud, JiraFlavor::DataCenter] {
        let rendered = render_ok(&e, &r, &f, flavor);
        let fields = &rendered.payload["fields"];
        let description = match flavor {
            JiraFlavor::Cloud => adf_text(&fields["description"]),
            JiraFlavor::DataCenter => fields["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        // Cloud counts the Markdown before conversion; Data Center stores the wiki text itself,
        // so escapes must fit inside the limit too.
        let count = description.chars().count();
        match flavor {
            JiraFlavor::Cloud => assert_eq!(count, 32_767),
            JiraFlavor::DataCenter => assert!((32_000..=32_767).contains(&count), "{count}"),
        }
        let mark = match flavor {
            JiraFlavor::Cloud => TRUNCATION_MARK.to_owned(),
            JiraFlavor::DataCenter => markdown_to_wiki(TRUNCATION_MARK),
        };
        assert!(description.ends_with(&mark), "{flavor:?}");
        for custom in [
            &fields["customfield_10060"],
            &fields["customfield_10061"]["text"],
        ] {
            let s = custom.as_str().unwrap_or_default();
            assert_eq!(s.chars().count(), 32_767);
            assert!(s.ends_with(TRUNCATION_MARK));
        }
    }
    // Escapes make wiki text longer than its Markdown: it still has to fit.
    for hostile in [
        "\\".repeat(40_000),
        "{".repeat(40_000),
        "x\n".repeat(20_000),
    ] {
        f.description = hostile;
        let wiki = render_ok(&e, &r, &f, JiraFlavor::DataCenter).payload["fields"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(wiki.chars().count() <= 32_767, "{}", wiki.chars().count());
        assert!(wiki.chars().count() > 30_000, "{}", wiki.chars().count());
        assert!(
            wiki.ends_with(&markdown_to_wiki(TRUNCATION_MARK)),
            "{}",
            &wiki[wiki.len() - 40..]
        );
    }
    // Exactly at the limit nothing is cut.
    f.description = "d".repeat(32_767);
    let rendered = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    assert_eq!(
        rendered.payload["fields"]["customfield_10060"],
        f.description
    );
}

#[test]
fn labels_are_sanitized_and_always_carry_the_bridge_label_and_marker() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    spec.labels = vec![
        t(&mut e, "  Payments   Team\t2 "),
        t(&mut e, ""),
        t(&mut e, "{{ '' }}"),
        t(&mut e, "Payments-Team-2"),
        t(&mut e, "findings-bridge"),
        t(&mut e, "{{ finding.generator_id }}"),
    ];
    let r = rule(TicketSpec::Jira(spec));
    let f = finding();
    let rendered = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    let marker = Marker::new("payments", &f.id);
    assert_eq!(
        rendered.payload["fields"]["labels"],
        json!([
            "Payments-Team-2",
            "findings-bridge",
            "aws-foundational-security-best-practices/v/1.0.0/S3.8",
            marker.as_str(),
        ])
    );

    // No rule labels at all: the two the bridge depends on are still there.
    let mut spec = jira_spec(&mut e);
    spec.labels.clear();
    let rendered = render_ok(&e, &rule(TicketSpec::Jira(spec)), &f, JiraFlavor::Cloud);
    assert_eq!(
        rendered.payload["fields"]["labels"],
        json!(["findings-bridge", marker.as_str()])
    );
}

#[test]
fn typed_fields_keep_their_shapes() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    let text = |e: &mut TemplateEngine, s: &str| FieldTemplate::Text(t(e, s));
    spec.fields = BTreeMap::from([
        (
            "customfield_10050".into(),
            FieldTemplate::Table(BTreeMap::from([(
                "value".into(),
                text(&mut e, "{{ finding.severity }}"),
            )])),
        ),
        (
            "components".into(),
            FieldTemplate::Array(vec![FieldTemplate::Table(BTreeMap::from([(
                "name".into(),
                text(&mut e, "Security"),
            )]))]),
        ),
        ("customfield_10051".into(), FieldTemplate::Integer(42)),
        ("customfield_10052".into(), FieldTemplate::Float(2.5)),
        ("customfield_10053".into(), FieldTemplate::Bool(true)),
        (
            "customfield_10054".into(),
            text(&mut e, "{{ finding.severity_score }}"),
        ),
        (
            "duedate".into(),
            text(&mut e, "{{ now() | add_days(7) | date }}"),
        ),
        (
            "assignee".into(),
            FieldTemplate::Table(BTreeMap::from([(
                "accountId".into(),
                text(&mut e, "5b10ac8d82e05b22cc7d4ef5"),
            )])),
        ),
        // Renders empty: left out instead of sending "".
        (
            "customfield_10055".into(),
            text(&mut e, "{{ finding.first_observed_at or '' }}"),
        ),
    ]);
    let r = rule(TicketSpec::Jira(spec));
    let fields = render_ok(&e, &r, &finding(), JiraFlavor::Cloud).payload["fields"].clone();
    assert_eq!(fields["customfield_10050"], json!({"value": "HIGH"}));
    assert_eq!(fields["components"], json!([{"name": "Security"}]));
    assert_eq!(fields["customfield_10051"], json!(42));
    assert_eq!(fields["customfield_10052"], json!(2.5));
    assert_eq!(fields["customfield_10053"], json!(true));
    assert_eq!(fields["customfield_10054"], json!("70"));
    assert_eq!(fields["duedate"], json!("2026-12-05"));
    assert_eq!(
        fields["assignee"],
        json!({"accountId": "5b10ac8d82e05b22cc7d4ef5"})
    );
    assert!(fields.get("customfield_10055").is_none(), "{fields}");
}

#[test]
fn non_finite_numbers_in_fields_are_an_error_naming_the_field() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    spec.fields
        .insert("customfield_1".into(), FieldTemplate::Float(f64::NAN));
    let err = render(&e, &rule(TicketSpec::Jira(spec)), &finding())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("customfield_1") && err.contains("payments/s3-public"),
        "{err}"
    );
}

#[test]
fn explicit_keys_win_over_colliding_fields() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    for key in [
        "summary",
        "labels",
        "project",
        "description",
        "priority",
        "issuetype",
    ] {
        spec.fields
            .insert(key.into(), FieldTemplate::Text(t(&mut e, "clobbered")));
    }
    let r = rule(TicketSpec::Jira(spec));
    let payload = render_ok(&e, &r, &finding(), JiraFlavor::Cloud).payload;
    assert!(!payload.to_string().contains("clobbered"), "{payload}");

    let mut spec = servicenow_spec(&mut e);
    for key in [
        "short_description",
        "correlation_id",
        "correlation_display",
        "urgency",
    ] {
        spec.fields
            .insert(key.into(), FieldTemplate::Text(t(&mut e, "clobbered")));
    }
    spec.fields.insert(
        "category".into(),
        FieldTemplate::Text(t(&mut e, "security")),
    );
    let payload = render_ok(
        &e,
        &rule(TicketSpec::ServiceNow(spec)),
        &finding(),
        JiraFlavor::Cloud,
    )
    .payload;
    assert!(!payload.to_string().contains("clobbered"), "{payload}");
    assert_eq!(payload["category"], "security");
}

#[test]
fn empty_priority_and_description_leave_the_keys_out() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    spec.priority = Some(t(&mut e, "{{ '' }}"));
    spec.description = Some(t(&mut e, "{{ finding.remediation.text if false else '' }}"));
    let rendered = render_ok(
        &e,
        &rule(TicketSpec::Jira(spec)),
        &finding(),
        JiraFlavor::Cloud,
    );
    let fields = rendered.payload["fields"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(!fields.contains_key("priority"));
    assert!(!fields.contains_key("description"));
    assert!(rendered.severity_fields().is_empty());
}

#[test]
fn an_empty_summary_is_a_permanent_error_naming_the_rule() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    spec.summary = t(&mut e, "{{ finding.title[:0] }}");
    let err = render(&e, &rule(TicketSpec::Jira(spec)), &finding()).err();
    match err {
        Some(RenderError::EmptyField { rule, field }) => {
            assert_eq!(field, "summary");
            assert_eq!(rule, "payments/s3-public (mappings/payments.toml:7)");
        }
        other => panic!("expected EmptyField, got {other:?}"),
    }
}

#[test]
fn a_failing_template_is_reported_with_its_location() {
    let mut e = engine();
    let mut spec = jira_spec(&mut e);
    let location = "payments.toml:31 (rules.jira.summary)";
    spec.summary = e
        .compile(location, "{{ finding.no_such_field }}")
        .unwrap_or_else(|err| panic!("{err}"));
    match render(&e, &rule(TicketSpec::Jira(spec)), &finding()) {
        Err(RenderError::Template(err)) => {
            assert_eq!(err.location, location);
            assert!(err.to_string().contains("undefined"), "{err}");
        }
        other => panic!("expected a template error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Severity override

#[test]
fn severity_override_is_what_templates_and_severity_fields_see() {
    let mut e = engine();
    let mut r = rule(TicketSpec::Jira(jira_spec(&mut e)));
    r.severity_override = Some(t(&mut e, "CRITICAL"));
    let rendered = render_ok(&e, &r, &finding(), JiraFlavor::Cloud);
    assert_eq!(rendered.severity, Severity::Critical);
    assert!(
        rendered.payload["fields"]["summary"]
            .as_str()
            .unwrap_or_default()
            .starts_with("[CRITICAL] ")
    );
    assert_eq!(
        Value::Object(rendered.severity_fields()),
        json!({"priority": {"name": "Highest"}})
    );

    // A template override sees the original severity and may keep or change it.
    let mut r = rule(TicketSpec::ServiceNow(servicenow_spec(&mut e)));
    r.severity_override = Some(t(
        &mut e,
        "{{ 'low' if finding.resources[0].tags.team == 'payments' else finding.severity }}",
    ));
    let rendered = render_ok(&e, &r, &finding(), JiraFlavor::Cloud);
    assert_eq!(rendered.severity, Severity::Low);
    assert_eq!(
        Value::Object(rendered.severity_fields()),
        json!({"urgency": "2", "impact": "2"})
    );
}

#[test]
fn template_context_replaces_severity_and_exposes_raw_team_rule_and_context() {
    let mut e = engine();
    let r = rule(TicketSpec::Jira(jira_spec(&mut e)));
    let f = finding();
    let ctx = template_context(&f, &r, Severity::Low, None);
    let probe = t(
        &mut e,
        "{{ finding.severity }}|{{ raw.ProductFields['aws/securityhub/ControlId'] }}|{{ finding.raw.Id }}|{{ team }}|{{ rule }}|{{ context | length }}|{{ finding.title }}",
    );
    let out = e.render(&probe, &ctx).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        out,
        "LOW|S3.8|abc|payments|s3-public|0|S3 general purpose buckets should block public access"
    );
    // `context.application` is absent, not an error when guarded.
    let guarded = t(
        &mut e,
        "{{ 'app' if context.application is defined else 'none' }}",
    );
    assert_eq!(e.render(&guarded, &ctx).ok().as_deref(), Some("none"));
}

#[test]
fn an_override_that_is_not_a_label_is_an_error() {
    let mut e = engine();
    for bad in ["URGENT", "{{ '' }}", "{{ finding.severity_score }}"] {
        let mut r = rule(TicketSpec::Jira(jira_spec(&mut e)));
        r.severity_override = Some(t(&mut e, bad));
        match render(&e, &r, &finding()) {
            Err(err @ RenderError::InvalidSeverityOverride { .. }) => {
                assert!(err.to_string().contains("payments/s3-public"), "{err}");
            }
            other => panic!("{bad}: expected InvalidSeverityOverride, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ServiceNow

#[test]
fn servicenow_payload_is_the_documented_create_body() {
    let mut e = engine();
    let mut spec = servicenow_spec(&mut e);
    spec.table = "sn_si_incident".into();
    let r = rule(TicketSpec::ServiceNow(spec));
    let f = finding();
    let rendered = render_ok(&e, &r, &f, JiraFlavor::Cloud);
    assert_eq!(rendered.kind, TargetKind::ServiceNow);
    assert_eq!(rendered.table.as_deref(), Some("sn_si_incident"));
    assert_eq!(
        rendered.payload,
        json!({
            "short_description": f.title,
            "description": f.description,
            "urgency": "1",
            "impact": "2",
            "assignment_group": "Payments Security",
            "correlation_id": Marker::new("payments", &f.id).as_str(),
            "correlation_display": "findings-bridge",
        })
    );
    assert_eq!(
        Value::Object(rendered.severity_fields()),
        json!({"urgency": "1", "impact": "2"})
    );
}

#[test]
fn servicenow_text_is_cut_to_160_and_4000() {
    let mut e = engine();
    let r = rule(TicketSpec::ServiceNow(servicenow_spec(&mut e)));
    let mut f = finding();
    f.title = format!("multi\nline {}", "t".repeat(300));
    f.description = "d".repeat(5_000);
    let payload = render_ok(&e, &r, &f, JiraFlavor::Cloud).payload;
    let short = payload["short_description"].as_str().unwrap_or_default();
    assert_eq!(short.chars().count(), 160);
    assert!(short.starts_with("multi line t") && short.ends_with(TRUNCATION_MARK));
    let description = payload["description"].as_str().unwrap_or_default();
    assert_eq!(description.chars().count(), 4_000);
    assert!(description.ends_with(TRUNCATION_MARK));
}

#[test]
fn urgency_and_impact_must_be_one_to_three() {
    let mut e = engine();
    for (field, bad) in [
        ("urgency", "{{ 4 }}"),
        ("impact", "high"),
        ("urgency", "1.0"),
    ] {
        let mut spec = servicenow_spec(&mut e);
        let template = Some(t(&mut e, bad));
        match field {
            "urgency" => spec.urgency = template,
            _ => spec.impact = template,
        }
        match render(&e, &rule(TicketSpec::ServiceNow(spec)), &finding()) {
            Err(err @ RenderError::InvalidChoice { .. }) => {
                let text = err.to_string();
                assert!(
                    text.contains(field) && text.contains("payments/s3-public"),
                    "{text}"
                );
            }
            other => panic!("{field}={bad}: expected InvalidChoice, got {other:?}"),
        }
    }
    // Empty output leaves the field to ServiceNow's default.
    let mut spec = servicenow_spec(&mut e);
    spec.urgency = Some(t(&mut e, "{{ '' }}"));
    spec.impact = None;
    spec.assignment_group = Some(t(&mut e, "{{ '' }}"));
    let rendered = render_ok(
        &e,
        &rule(TicketSpec::ServiceNow(spec)),
        &finding(),
        JiraFlavor::Cloud,
    );
    let body = rendered.payload.as_object().cloned().unwrap_or_default();
    assert!(!body.contains_key("urgency") && !body.contains_key("impact"));
    assert!(!body.contains_key("assignment_group"));
    assert!(rendered.severity_fields().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Rich text helpers

#[test]
fn jira_rich_text_follows_the_flavor() {
    assert_eq!(
        jira_rich_text(JiraFlavor::Cloud, "**Resolved** in Security Hub"),
        json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
            {"type": "text", "text": "Resolved", "marks": [{"type": "strong"}]},
            {"type": "text", "text": " in Security Hub"},
        ]}]})
    );
    assert_eq!(
        jira_rich_text(JiraFlavor::DataCenter, "**Resolved** in Security Hub"),
        json!("*Resolved* in Security Hub")
    );
}

// ---------------------------------------------------------------------------------------------
// Markdown converters under random and hostile input

/// Checks a value against the ADF node shapes Jira Cloud accepts for what the converter emits.
fn check_adf(doc: &Value) -> Result<(), String> {
    if doc["type"] != "doc" || doc["version"] != 1 {
        return Err(format!("not a doc: {doc}"));
    }
    let blocks = doc["content"].as_array().ok_or("doc without content")?;
    blocks.iter().try_for_each(check_block)
}

fn keys(node: &Value, allowed: &[&str]) -> Result<(), String> {
    let obj = node
        .as_object()
        .ok_or_else(|| format!("not an object: {node}"))?;
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("unexpected key {k} in {node}")),
        None => Ok(()),
    }
}

fn check_block(node: &Value) -> Result<(), String> {
    let content = node["content"]
        .as_array()
        .ok_or_else(|| format!("block without content: {node}"))?;
    match node["type"].as_str() {
        Some("paragraph") => {
            keys(node, &["type", "content"])?;
            if content.is_empty() {
                return Err("empty paragraph".into());
            }
            content.iter().try_for_each(check_inline)
        }
        Some("heading") => {
            keys(node, &["type", "attrs", "content"])?;
            let level = node["attrs"]["level"].as_u64().unwrap_or(0);
            if !(1..=6).contains(&level) || content.is_empty() {
                return Err(format!("bad heading {node}"));
            }
            content.iter().try_for_each(check_inline)
        }
        Some(kind @ ("bulletList" | "orderedList")) => {
            keys(node, &["type", "attrs", "content"])?;
            if kind == "bulletList" && node.get("attrs").is_some() {
                return Err("bulletList with attrs".into());
            }
            if kind == "orderedList"
                && node.get("attrs").is_some()
                && node["attrs"]["order"].as_u64().is_none()
            {
                return Err(format!("bad order {node}"));
            }
            if content.is_empty() {
                return Err("empty list".into());
            }
            for item in content {
                keys(item, &["type", "content"])?;
                let inner = item["content"].as_array().ok_or("item without content")?;
                if item["type"] != "listItem" || inner.is_empty() {
                    return Err(format!("bad list item {item}"));
                }
                inner.iter().try_for_each(check_block)?;
            }
            Ok(())
        }
        Some("codeBlock") => {
            keys(node, &["type", "attrs", "content"])?;
            if let Some(attrs) = node.get("attrs") {
                keys(attrs, &["language"])?;
                attrs["language"].as_str().ok_or("language not a string")?;
            }
            for text in content {
                keys(text, &["type", "text"])?;
                if text["type"] != "text" || text["text"].as_str().is_none_or(str::is_empty) {
                    return Err(format!("bad code text {text}"));
                }
            }
            Ok(())
        }
        _ => Err(format!("unknown block {node}")),
    }
}

fn check_inline(node: &Value) -> Result<(), String> {
    match node["type"].as_str() {
        Some("hardBreak") => keys(node, &["type"]),
        Some("text") => {
            keys(node, &["type", "text", "marks"])?;
            if node["text"].as_str().is_none_or(str::is_empty) {
                return Err(format!("empty text node {node}"));
            }
            let Some(marks) = node.get("marks") else {
                return Ok(());
            };
            let marks = marks.as_array().ok_or("marks not an array")?;
            if marks.is_empty() {
                return Err("empty marks".into());
            }
            let kinds: Vec<&str> = marks.iter().filter_map(|m| m["type"].as_str()).collect();
            if kinds.contains(&"code") && kinds.iter().any(|k| *k != "code" && *k != "link") {
                return Err(format!("code combined with another mark {node}"));
            }
            for mark in marks {
                match mark["type"].as_str() {
                    Some("strong" | "code") => keys(mark, &["type"])?,
                    Some("link") => {
                        keys(mark, &["type", "attrs"])?;
                        let href = mark["attrs"]["href"].as_str().unwrap_or_default();
                        let lower = href.to_ascii_lowercase();
                        if !(lower.starts_with("https://")
                            || lower.starts_with("http://")
                            || lower.starts_with("mailto:"))
                        {
                            return Err(format!("unsafe href {href}"));
                        }
                    }
                    _ => return Err(format!("unknown mark {mark}")),
                }
            }
            Ok(())
        }
        _ => Err(format!("unknown inline {node}")),
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "(",
    ")",
    "](",
    "**",
    "*",
    "`",
    "```",
    "```rust",
    "\n",
    "\n\n",
    "- ",
    "* ",
    "1. ",
    "12) ",
    "# ",
    "###### ",
    "https://x.test/a_b",
    "http://",
    "HTTPS://Y.TEST",
    "javascript:alert(1)",
    "mailto:a@b.c",
    "data:x",
    " ",
    "   ",
    "a",
    "word",
    "é",
    "日本",
    "\u{0}",
    "\u{1b}",
    "\u{7f}",
    "\u{85}",
    "\u{2028}",
    "\r",
    "\t",
    "{{",
    "}}",
    "{code}",
    "|",
    "\\",
    "h1. ",
    "bq. ",
    "_",
    "-",
    "!",
    "~",
    "^",
    "+",
    "?",
    "#",
    "{",
    "}",
];

fn random_markdown(rng: &mut Rng) -> String {
    let n = rng.below(60);
    (0..n).map(|_| TOKENS[rng.below(TOKENS.len())]).collect()
}

#[test]
fn random_and_hostile_markdown_always_yields_valid_adf() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..5_000 {
        let md = random_markdown(&mut rng);
        let adf = markdown_to_adf(&md);
        if let Err(why) = check_adf(&adf) {
            panic!("invalid ADF for {md:?}: {why}\n{adf}");
        }
        // The wiki converter must cope with the same input.
        let _ = markdown_to_wiki(&md);
    }
}

#[test]
fn plain_text_never_becomes_wiki_markup() {
    // Without Markdown constructs every wiki-special character must come out escaped.
    const PLAIN: &[&str] = &[
        "{", "}", "[", "]", "|", "\\", "*", "_", "-", "+", "^", "~", "?", "!", "#", " ", "a",
        "h1.", "bq.", "(x)", "é",
    ];
    let mut rng = Rng(42);
    for _ in 0..3_000 {
        let n = rng.below(40) + 1;
        let text: String = (0..n).map(|_| PLAIN[rng.below(PLAIN.len())]).collect();
        let wiki = markdown_to_wiki(&text);
        let chars: Vec<char> = wiki.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if matches!(c, '{' | '}' | '[' | ']' | '|') {
                assert!(
                    i > 0 && chars[i - 1] == '\\',
                    "unescaped {c} in {wiki:?} from {text:?}"
                );
            }
        }
        assert!(!wiki.contains("\\\\"), "accidental line break in {wiki:?}");
        // Only a Markdown heading (`# `) may turn into a wiki heading.
        let heading = text.trim_start().starts_with("# ");
        assert!(
            heading || (!wiki.starts_with("h1.") && !wiki.starts_with("bq.")),
            "{wiki:?} from {text:?}"
        );
    }
}

#[test]
fn hostile_inputs_convert_to_valid_bodies() {
    let n = 100_000;
    let inputs = [
        "[".repeat(n),
        "[a](".repeat(n / 4),
        "](".repeat(n / 2),
        "`".repeat(n),
        "**a".repeat(n / 3),
        "https://!".repeat(n / 9),
        "https://x\u{2028}".repeat(n / 10),
        format!("{}{}", "[".repeat(n), "a](https://x.test)"),
        "[x](https://a.test/".repeat(n / 18),
        "- ".repeat(n / 2) + &"\n- a".repeat(n / 4),
        "\n```".repeat(n / 4),
    ];
    // That each converts in linear time is a benchmark's business (`cargo bench --bench pipeline
    // -- markdown_hostile`: time per character at 10k and 100k); a timed assertion here would
    // fail on a busy machine, not on a slow converter.
    for input in &inputs {
        let adf = markdown_to_adf(input);
        let wiki = markdown_to_wiki(input);
        assert!(
            check_adf(&adf).is_ok(),
            "invalid ADF for {:?}…",
            &input[..20]
        );
        assert!(!wiki.is_empty());
    }
    // 100k nested `[` with a link at the end: the innermost bracket is the link.
    let adf = markdown_to_adf(&inputs[7]);
    let para = &adf["content"][0]["content"];
    assert_eq!(para[0]["text"].as_str().map(str::len), Some(n - 1));
    assert_eq!(para[1]["text"], "a");
    assert_eq!(para[1]["marks"][0]["attrs"]["href"], "https://x.test");
}
