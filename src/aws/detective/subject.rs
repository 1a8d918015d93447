//! What an investigation of a finding looks at: the IAM principal it is about (from its resources,
//! access keys included) and the time window around its activity, within Detective's retention.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::RETENTION;
use crate::finding::Finding;

/// The time window an investigation looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvestigationScope {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// `[first observed − padding, last observed + padding]` (falling back to created / updated
/// times, then to the last `padding` before `now`), clamped to `[now − RETENTION, now]` and to
/// whole seconds. `None` when the whole window lies beyond Detective's retention.
pub fn investigation_scope(
    finding: &Finding,
    padding: Duration,
    now: DateTime<Utc>,
) -> Option<InvestigationScope> {
    let parse = |s: &Option<String>| s.as_deref().and_then(crate::time::parse_time);
    let first = parse(&finding.first_observed_at).or_else(|| parse(&finding.created_at));
    let last = parse(&finding.last_observed_at).or_else(|| parse(&finding.updated_at));
    let (first, last) = match (first, last) {
        (Some(a), Some(b)) => (a.min(b), a.max(b)),
        (Some(t), None) | (None, Some(t)) => (t, t),
        (None, None) => (now, now),
    };
    let padding = TimeDelta::from_std(padding).unwrap_or(TimeDelta::days(1));
    // A window never collapses to nothing, even with zero padding configured.
    let fallback = padding.max(TimeDelta::hours(1));
    let oldest = now - RETENTION;
    let end = (last + padding).min(now);
    if end <= oldest {
        return None;
    }
    let mut start = (first - padding).max(oldest);
    if start >= end {
        // Observed in the future (clock skew at the producer): look at the time just before now.
        start = (end - fallback).max(oldest);
    }
    let whole = |t: DateTime<Utc>| DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
    Some(InvestigationScope {
        start: whole(start),
        end: whole(end),
    })
}

/// IAM user and role ARNs the finding is about, in resource order, without repeats.
///
/// Resources whose id is an IAM user or role ARN count whatever their type is called (ASFF
/// `AwsIamUser` / `AwsIamRole`, OCSF `AWS::IAM::Role`, ...). Access keys (`AwsIamAccessKey`) carry
/// no ARN: their principal is built from `Details.AwsIamAccessKey` of the raw ASFF resource
/// (`PrincipalName`, or the older `UserName`; an assumed role's `SessionContext.SessionIssuer.Arn`).
pub fn investigable_entities(finding: &Finding) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |arn: String| {
        if !out.contains(&arn) {
            out.push(arn);
        }
    };
    for resource in &finding.resources {
        if let Some(arn) = iam_principal_arn(&resource.id) {
            push(arn);
        }
    }
    let raw_resources = finding
        .raw
        .get("Resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for raw in raw_resources {
        if let Some(arn) = access_key_principal(raw, &finding.account_id) {
            push(arn);
        }
    }
    out
}

/// `Some(arn)` when `arn` is `arn:PARTITION:iam::ACCOUNT:user/...` or `...:role/...`.
fn iam_principal_arn(arn: &str) -> Option<String> {
    let arn = arn.trim();
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let name = resource
        .strip_prefix("user/")
        .or_else(|| resource.strip_prefix("role/"))?;
    let valid = partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && !arn.chars().any(char::is_whitespace);
    valid.then(|| arn.to_owned())
}

/// A non-blank string member.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn access_key_principal(resource: &Value, finding_account: &str) -> Option<String> {
    let kind = resource.get("Type").and_then(Value::as_str)?;
    if kind != "AwsIamAccessKey" {
        return None;
    }
    let details = resource.get("Details")?.get("AwsIamAccessKey")?;
    let partition = text(resource.get("Partition")).unwrap_or("aws");
    let account = text(details.get("AccountId")).unwrap_or(finding_account);
    let name = text(details.get("PrincipalName")).or_else(|| text(details.get("UserName")));
    let principal_type = text(details.get("PrincipalType"));
    let build = |kind: &str| {
        let name = name?;
        if name.contains(':') {
            return None;
        }
        iam_principal_arn(&format!("arn:{partition}:iam::{account}:{kind}/{name}"))
    };
    match principal_type {
        None | Some("IAMUser") => build("user"),
        Some("AssumedRole") | Some("Role") => {
            let issuer = details
                .get("SessionContext")
                .and_then(|c| c.get("SessionIssuer"))
                .and_then(|i| text(i.get("Arn")))
                .and_then(iam_principal_arn);
            issuer.or_else(|| build("role"))
        }
        // Root, federated users and services are not entities Detective investigates.
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        crate::time::parse_time(s).unwrap_or_else(|| panic!("{s}: not RFC 3339"))
    }

    fn finding(first: Option<&str>, last: Option<&str>) -> Finding {
        let raw = serde_json::json!({});
        let mut f = crate::testing::finding(
            "f-1",
            crate::finding::Severity::High,
            "2026-03-01T00:00:00Z",
        );
        f.first_observed_at = first.map(str::to_owned);
        f.last_observed_at = last.map(str::to_owned);
        f.created_at = None;
        f.updated_at = None;
        f.raw = raw;
        f
    }

    #[test]
    fn scope_pads_the_observed_window() {
        let now = at("2026-06-01T00:00:00Z");
        let f = finding(
            Some("2026-03-01T10:00:00.750Z"),
            Some("2026-03-02T10:00:00Z"),
        );
        let scope = investigation_scope(&f, Duration::from_secs(24 * 3600), now).unwrap();
        assert_eq!(scope.start, at("2026-02-28T10:00:00Z"));
        assert_eq!(scope.end, at("2026-03-03T10:00:00Z"));
    }

    #[test]
    fn scope_never_reaches_into_the_future_or_beyond_retention() {
        let now = at("2026-06-01T00:00:00Z");
        let day = Duration::from_secs(24 * 3600);
        let recent = finding(Some("2026-05-31T12:00:00Z"), Some("2026-05-31T20:00:00Z"));
        let scope = investigation_scope(&recent, day, now).unwrap();
        assert_eq!(scope.end, now);
        assert_eq!(scope.start, at("2026-05-30T12:00:00Z"));

        let long = finding(Some("2024-01-01T00:00:00Z"), Some("2026-05-01T00:00:00Z"));
        let scope = investigation_scope(&long, day, now).unwrap();
        assert_eq!(scope.start, now - RETENTION);

        let ancient = finding(Some("2023-01-01T00:00:00Z"), Some("2023-02-01T00:00:00Z"));
        assert_eq!(investigation_scope(&ancient, day, now), None);

        let future = finding(Some("2026-07-01T00:00:00Z"), Some("2026-07-02T00:00:00Z"));
        let scope = investigation_scope(&future, day, now).unwrap();
        assert_eq!((scope.start, scope.end), (now - TimeDelta::days(1), now));
    }

    #[test]
    fn scope_falls_back_to_created_and_updated_then_now() {
        let now = at("2026-06-01T00:00:00Z");
        let mut f = finding(None, None);
        f.created_at = Some("2026-04-01T00:00:00Z".into());
        f.updated_at = Some("2026-04-03T00:00:00Z".into());
        let scope = investigation_scope(&f, Duration::from_secs(3600), now).unwrap();
        assert_eq!(scope.start, at("2026-03-31T23:00:00Z"));
        assert_eq!(scope.end, at("2026-04-03T01:00:00Z"));

        let bare = finding(None, Some("not a time"));
        let scope = investigation_scope(&bare, Duration::ZERO, now).unwrap();
        assert_eq!((scope.start, scope.end), (now - TimeDelta::hours(1), now));
    }

    #[test]
    fn only_iam_user_and_role_arns_are_principals() {
        for good in [
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:user/dev/alice",
            "arn:aws-cn:iam::111122223333:role/ci-deploy",
            "arn:aws:iam::111122223333:role/aws-service-role/x.amazonaws.com/AWSServiceRole",
        ] {
            assert_eq!(iam_principal_arn(good).as_deref(), Some(good));
        }
        for bad in [
            "arn:aws:iam::111122223333:group/admins",
            "arn:aws:iam::111122223333:instance-profile/web",
            "arn:aws:sts::111122223333:assumed-role/ci/session",
            "arn:aws:iam::11112222333:user/alice",
            "arn:aws:iam:us-east-1:111122223333:user/alice",
            "arn:aws:iam::111122223333:user/",
            "arn:aws:iam::111122223333:user/al ice",
            "AKIAIOSFODNN7EXAMPLE",
            "",
        ] {
            assert_eq!(iam_principal_arn(bad), None, "{bad}");
        }
    }

    #[test]
    fn access_keys_of_root_or_without_a_name_yield_nothing() {
        let key = |details: Value| serde_json::json!({"Type": "AwsIamAccessKey", "Id": "AKIA", "Details": {"AwsIamAccessKey": details}});
        assert_eq!(
            access_key_principal(
                &key(serde_json::json!({"PrincipalType": "Root", "PrincipalName": "root"})),
                "111122223333"
            ),
            None
        );
        assert_eq!(
            access_key_principal(
                &key(serde_json::json!({"Status": "Active"})),
                "111122223333"
            ),
            None
        );
        assert_eq!(
            access_key_principal(
                &key(serde_json::json!({"PrincipalName": "a:b"})),
                "111122223333"
            ),
            None
        );
        assert_eq!(
            access_key_principal(
                &key(serde_json::json!({"UserName": "bob"})),
                "not-an-account"
            ),
            None
        );
        assert_eq!(
            access_key_principal(
                &key(
                    serde_json::json!({"PrincipalType": "AssumedRole", "PrincipalName": "deployer"})
                ),
                "111122223333"
            )
            .as_deref(),
            Some("arn:aws:iam::111122223333:role/deployer")
        );
    }
}
