//! Test doubles: in-memory stand-ins for the store, a ticket system, the planner and the
//! Security Hub writer, faithful to the parts of their contracts the lifecycle relies on (leases,
//! marker search, status), plus a finding to feed them. Used by the unit tests of the lifecycle,
//! the worker, health, replay and Detective enrichment, and by the integration tests; compiled
//! only for tests (`cfg(test)`, or the `testing` feature the integration tests turn on), never
//! into the release binary.

pub mod planner;
pub mod store;
pub mod tickets;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Mutex;

pub use planner::{FakePlanner, Route, priority};
pub use store::MemoryStore;
pub use tickets::{Call, FakeTickets, permanent, rate_limited, transient, unknown, unusable};
pub use writer::RecordingWriter;

use crate::finding::{
    Compliance, Finding, RecordState, Remediation, Resource, Schema, Severity, WorkflowStatus,
    WriteBackId,
};

/// Locks `m`, taking its data even when a panicking test poisoned it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A GuardDuty-like ASFF finding, active and FAILED-free, updated at `updated_at`.
pub fn finding(id: &str, severity: Severity, updated_at: &str) -> Finding {
    Finding {
        id: id.to_owned(),
        schema: Schema::Asff,
        product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        product_name: "GuardDuty".into(),
        company_name: "Amazon".into(),
        generator_id: "gen".into(),
        account_id: "111122223333".into(),
        region: "us-east-1".into(),
        title: format!("Finding {id}"),
        description: "Something suspicious".into(),
        severity,
        severity_score: severity.default_score(),
        types: vec![],
        resources: vec![Resource {
            kind: "AwsEc2Instance".into(),
            id: "arn:aws:ec2:us-east-1:111122223333:instance/i-1".into(),
            region: Some("us-east-1".into()),
            partition: Some("aws".into()),
            tags: BTreeMap::new(),
        }],
        compliance: Compliance::default(),
        workflow_status: WorkflowStatus::New,
        record_state: RecordState::Active,
        created_at: Some("2026-11-01T00:00:00Z".into()),
        updated_at: Some(updated_at.to_owned()),
        first_observed_at: None,
        last_observed_at: None,
        remediation: Remediation::default(),
        user_defined_fields: BTreeMap::new(),
        product_fields: BTreeMap::new(),
        console_url: format!("https://console.aws.amazon.com/securityhub/home#/findings?id={id}"),
        write_back: WriteBackId::Asff {
            id: id.to_owned(),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        },
        raw: serde_json::json!({ "Id": id }),
    }
}
