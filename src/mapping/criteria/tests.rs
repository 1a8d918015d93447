use std::collections::BTreeMap;

use chrono::TimeDelta;

use super::*;
use crate::finding::{
    Compliance, RecordState, Resource, Schema, Severity, WorkflowStatus, WriteBackId,
};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap()
}

fn finding() -> Finding {
    Finding {
        id: "arn:aws:securityhub:us-east-1:111122223333:finding/abc".into(),
        schema: Schema::Asff,
        product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        product_name: "GuardDuty".into(),
        company_name: "Amazon".into(),
        generator_id: "guardduty-generator".into(),
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        title: "EC2 instance is communicating with a known command and control server".into(),
        description: "Backdoor:EC2/C&CActivity.B".into(),
        severity: Severity::High,
        severity_score: 70,
        types: vec![
            "TTPs/Command and Control/Backdoor:EC2-C&CActivity.B".into(),
            "Effects/Data Exfiltration".into(),
        ],
        resources: vec![
            Resource {
                kind: "AwsEc2Instance".into(),
                id: "arn:aws:ec2:us-east-1:111122223333:instance/i-1".into(),
                region: Some("us-east-1".into()),
                partition: Some("aws".into()),
                tags: BTreeMap::from([("team".into(), "payments".into())]),
            },
            Resource {
                kind: "AwsIamRole".into(),
                id: "arn:aws:iam::111122223333:role/app".into(),
                region: None,
                partition: Some("aws".into()),
                tags: BTreeMap::from([("env".into(), "prod-eu".into())]),
            },
        ],
        compliance: Compliance::default(),
        workflow_status: WorkflowStatus::New,
        record_state: RecordState::Active,
        created_at: Some("2026-11-20T08:00:00Z".into()),
        updated_at: Some("2026-11-27T08:00:00.123Z".into()),
        first_observed_at: None,
        last_observed_at: Some("2026-11-27T08:00:00+02:00".into()),
        remediation: Default::default(),
        user_defined_fields: BTreeMap::from([("ticket".into(), "none".into())]),
        product_fields: BTreeMap::from([(
            "aws/guardduty/service/action/actionType".into(),
            "NETWORK_CONNECTION".into(),
        )]),
        console_url: String::new(),
        write_back: WriteBackId::Asff {
            id: "abc".into(),
            product_arn: "p".into(),
        },
        raw: serde_json::Value::Null,
    }
}

fn matches(criteria: &str) -> bool {
    let c = Criteria::from_toml(criteria).unwrap();
    c.matches(&finding(), None, now())
}

fn err(criteria: &str) -> String {
    Criteria::from_toml(criteria).unwrap_err().message
}

#[test]
fn empty_criteria_match_everything() {
    assert!(Criteria::default().matches(&finding(), None, now()));
    assert!(Criteria::default().is_empty());
    assert!(matches(""));
}

#[test]
fn each_string_comparison() {
    let cases = [
        ("EQUALS", "GuardDuty", true),
        ("EQUALS", "Guard", false),
        ("EQUALS", "guardduty", false),
        ("PREFIX", "Guard", true),
        ("PREFIX", "Duty", false),
        ("CONTAINS", "ardDu", true),
        ("CONTAINS", "Inspector", false),
        ("NOT_EQUALS", "Inspector", true),
        ("NOT_EQUALS", "GuardDuty", false),
        ("PREFIX_NOT_EQUALS", "Insp", true),
        ("PREFIX_NOT_EQUALS", "Guard", false),
        ("NOT_CONTAINS", "Macie", true),
        ("NOT_CONTAINS", "Duty", false),
    ];
    for (cmp, value, want) in cases {
        let src = format!("ProductName = [{{ Value = {value:?}, Comparison = {cmp:?} }}]");
        assert_eq!(matches(&src), want, "{src}");
    }
}

#[test]
fn positives_are_ored_negatives_anded() {
    // Either label matches → OR.
    assert!(matches(
        r#"SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }, { Value = "HIGH", Comparison = "EQUALS" }]"#
    ));
    // Both negatives must hold: the second excludes the finding.
    assert!(!matches(
        r#"Title = [{ Value = "S3", Comparison = "NOT_CONTAINS" }, { Value = "EC2", Comparison = "NOT_CONTAINS" }]"#
    ));
    // Positive group holds but a negative fails → no match.
    assert!(!matches(
        r#"Title = [{ Value = "EC2", Comparison = "PREFIX" }, { Value = "known", Comparison = "NOT_CONTAINS" }]"#
    ));
    // Positive group holds and the negative holds → match.
    assert!(matches(
        r#"Title = [{ Value = "EC2", Comparison = "PREFIX" }, { Value = "Lambda", Comparison = "NOT_CONTAINS" }]"#
    ));
    // Only negatives, all hold.
    assert!(matches(
        r#"Title = [{ Value = "S3", Comparison = "NOT_CONTAINS" }, { Value = "RDS", Comparison = "NOT_CONTAINS" }]"#
    ));
}

#[test]
fn fields_are_anded() {
    assert!(matches(
        r#"
        ProductName = [{ Value = "GuardDuty", Comparison = "EQUALS" }]
        AwsAccountId = [{ Value = "111122223333", Comparison = "EQUALS" }]
        "#
    ));
    assert!(!matches(
        r#"
        ProductName = [{ Value = "GuardDuty", Comparison = "EQUALS" }]
        AwsAccountId = [{ Value = "444455556666", Comparison = "EQUALS" }]
        "#
    ));
}

#[test]
fn multi_valued_fields_match_any_value_and_negatives_exclude_any() {
    assert!(matches(
        r#"Type = [{ Value = "Effects/", Comparison = "PREFIX" }]"#
    ));
    assert!(!matches(
        r#"Type = [{ Value = "Effects/Data Exfiltration", Comparison = "NOT_EQUALS" }]"#
    ));
    assert!(matches(
        r#"Type = [{ Value = "Software and Configuration Checks", Comparison = "PREFIX_NOT_EQUALS" }]"#
    ));
}

#[test]
fn resource_fields_match_when_any_resource_matches() {
    assert!(matches(
        r#"ResourceType = [{ Value = "AwsIamRole", Comparison = "EQUALS" }]"#
    ));
    assert!(matches(
        r#"ResourceId = [{ Value = "arn:aws:ec2:", Comparison = "PREFIX" }]"#
    ));
    assert!(!matches(
        r#"ResourceType = [{ Value = "AwsS3Bucket", Comparison = "EQUALS" }]"#
    ));
    // One resource is an EC2 instance, so "not an EC2 instance" excludes the finding.
    assert!(!matches(
        r#"ResourceType = [{ Value = "AwsEc2Instance", Comparison = "NOT_EQUALS" }]"#
    ));
    // Regions: only the first resource has one.
    assert!(matches(
        r#"ResourceRegion = [{ Value = "us-east-1", Comparison = "EQUALS" }]"#
    ));
    assert!(matches(
        r#"ResourcePartition = [{ Value = "aws", Comparison = "EQUALS" }]"#
    ));
}

#[test]
fn absent_values_fail_positives_and_pass_negatives() {
    assert!(!matches(
        r#"ComplianceStatus = [{ Value = "FAILED", Comparison = "EQUALS" }]"#
    ));
    assert!(matches(
        r#"ComplianceStatus = [{ Value = "PASSED", Comparison = "NOT_EQUALS" }]"#
    ));
}

#[test]
fn enum_fields_compare_their_labels() {
    assert!(matches(
        r#"WorkflowStatus = [{ Value = "NEW", Comparison = "EQUALS" }]"#
    ));
    assert!(matches(
        r#"RecordState = [{ Value = "ARCHIVED", Comparison = "NOT_EQUALS" }]"#
    ));
}

#[test]
fn map_filters() {
    let cases = [
        (
            r#"{ Key = "team", Value = "payments", Comparison = "EQUALS" }"#,
            true,
        ),
        (
            r#"{ Key = "team", Value = "pay", Comparison = "EQUALS" }"#,
            false,
        ),
        (
            r#"{ Key = "owner", Value = "payments", Comparison = "EQUALS" }"#,
            false,
        ),
        (
            r#"{ Key = "env", Value = "prod", Comparison = "CONTAINS" }"#,
            true,
        ),
        (
            r#"{ Key = "env", Value = "prod", Comparison = "NOT_CONTAINS" }"#,
            false,
        ),
        (
            r#"{ Key = "env", Value = "dev", Comparison = "NOT_CONTAINS" }"#,
            true,
        ),
        (
            r#"{ Key = "team", Value = "payments", Comparison = "NOT_EQUALS" }"#,
            false,
        ),
        (
            r#"{ Key = "team", Value = "search", Comparison = "NOT_EQUALS" }"#,
            true,
        ),
        // A key no resource has: negative holds.
        (
            r#"{ Key = "owner", Value = "x", Comparison = "NOT_EQUALS" }"#,
            true,
        ),
    ];
    for (filter, want) in cases {
        let src = format!("ResourceTags = [{filter}]");
        assert_eq!(matches(&src), want, "{src}");
    }
    assert!(matches(
        r#"UserDefinedFields = [{ Key = "ticket", Value = "none", Comparison = "EQUALS" }]"#
    ));
    assert!(matches(
        r#"ProductFields = [{ Key = "aws/guardduty/service/action/actionType", Value = "NETWORK", Comparison = "CONTAINS" }]"#
    ));
    // ORed positives across keys.
    assert!(matches(
        r#"ResourceTags = [{ Key = "team", Value = "search", Comparison = "EQUALS" }, { Key = "env", Value = "prod-eu", Comparison = "EQUALS" }]"#
    ));
}

#[test]
fn number_filters() {
    let cases = [
        ("{ Gte = 70 }", true),
        ("{ Gte = 71 }", false),
        ("{ Lte = 70 }", true),
        ("{ Lte = 69.5 }", false),
        ("{ Eq = 70 }", true),
        ("{ Eq = 90 }", false),
        ("{ Gte = 40, Lte = 69 }", false),
        ("{ Gte = 90 }, { Gte = 40, Lte = 89 }", true),
    ];
    for (filter, want) in cases {
        let src = format!("SeverityNormalized = [{filter}]");
        assert_eq!(matches(&src), want, "{src}");
    }
}

#[test]
fn absolute_date_filters() {
    let cases = [
        (
            "CreatedAt",
            r#"Start = "2026-11-01T00:00:00Z", End = "2026-11-30T00:00:00Z""#,
            true,
        ),
        ("CreatedAt", r#"Start = "2026-11-21""#, false),
        // A plain End date covers the whole day.
        ("CreatedAt", r#"End = "2026-11-20""#, true),
        ("CreatedAt", r#"End = "2026-11-19""#, false),
        // Offsets are honoured: 08:00+02:00 is 06:00Z.
        ("LastObservedAt", r#"End = "2026-11-27T06:00:00Z""#, true),
        ("LastObservedAt", r#"End = "2026-11-27T05:59:59Z""#, false),
        // Fractional seconds in the finding.
        ("UpdatedAt", r#"Start = "2026-11-27T08:00:00Z""#, true),
        // The finding has no FirstObservedAt: no match.
        ("FirstObservedAt", r#"Start = "2000-01-01""#, false),
    ];
    for (field, filter, want) in cases {
        let src = format!("{field} = [{{ {filter} }}]");
        assert_eq!(matches(&src), want, "{src}");
    }
}

#[test]
fn date_range_is_relative_to_the_given_now() {
    let c = Criteria::from_toml(r#"UpdatedAt = [{ DateRange = { Value = 1, Unit = "DAYS" } }]"#)
        .unwrap();
    let f = finding(); // updated 2026-11-27T08:00Z, 26 hours before now()
    assert!(!c.matches(&f, None, now()));
    assert!(c.matches(&f, None, now() - TimeDelta::hours(3)));
    let c7 = Criteria::from_toml(r#"UpdatedAt = [{ DateRange = { Value = 7, Unit = "DAYS" } }]"#)
        .unwrap();
    let later = now() + TimeDelta::days(8);
    assert!(c7.matches(&f, None, now()));
    assert!(!c7.matches(&f, None, later));
}

#[test]
fn bad_criteria_are_rejected() {
    assert!(
        err(r#"Severity = [{ Value = "HIGH", Comparison = "EQUALS" }]"#)
            .contains("unknown field `Severity`")
    );
    assert!(
        err(r#"Title = [{ Value = "x", Comparison = "STARTS_WITH" }]"#)
            .contains("unknown variant `STARTS_WITH`")
    );
    assert!(
        err(r#"ResourceTags = [{ Key = "a", Value = "x", Comparison = "PREFIX" }]"#)
            .contains("unknown variant `PREFIX`")
    );
    assert!(err(r#"Title = [{ Value = "x" }]"#).contains("missing field `Comparison`"));
    assert!(
        err(r#"Title = [{ Value = "x", Comparison = "EQUALS", Extra = 1 }]"#)
            .contains("unknown field `Extra`")
    );
    assert!(err("Title = []").contains("empty filter list"));
    let many: Vec<String> = (0..21)
        .map(|i| format!(r#"{{ Value = "t{i}", Comparison = "EQUALS" }}"#))
        .collect();
    assert!(err(&format!("Title = [{}]", many.join(", "))).contains("at most 20"));
    assert!(err("SeverityNormalized = [{}]").contains("at least one of"));
    assert!(err("SeverityNormalized = [{ Gte = 80, Lte = 10 }]").contains("never match"));
    assert!(err(r#"CreatedAt = [{ Start = "yesterday" }]"#).contains("RFC 3339"));
    assert!(
        err(r#"CreatedAt = [{ DateRange = { Value = 3, Unit = "WEEKS" } }]"#)
            .contains("unknown variant `WEEKS`")
    );
    assert!(
        err(r#"CreatedAt = [{ DateRange = { Value = 0, Unit = "DAYS" } }]"#)
            .contains("positive number of days")
    );
    assert!(
        err(r#"CreatedAt = [{ Start = "2026-01-01", DateRange = { Value = 3, Unit = "DAYS" } }]"#)
            .contains("cannot be combined")
    );
    assert!(
        err(r#"CreatedAt = [{ Start = "2026-02-01", End = "2026-01-01" }]"#)
            .contains("never match")
    );
}

#[test]
fn exactly_twenty_values_are_allowed() {
    let many: Vec<String> = (0..20)
        .map(|i| format!(r#"{{ Value = "t{i}", Comparison = "EQUALS" }}"#))
        .collect();
    assert!(Criteria::from_toml(&format!("Title = [{}]", many.join(", "))).is_ok());
}
