//! Shared setup of the status sync tests ([`crate::sync`], [`crate::webhook`]): the simulator on
//! 127.0.0.1, the real Jira / ServiceNow clients and Security Hub writer pointed at it, a SQLite
//! store in a temporary directory and a one-team mapping directory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_securityhub::config::{Credentials, Region};
use findings_bridge::aws::securityhub::FindingWriter;
use findings_bridge::aws::securityhub::client::{SecurityHubWriter, WritePolicy};
use findings_bridge::finding::{Schema, WriteBackId};
use findings_bridge::mapping;
use findings_bridge::marker::{BRIDGE_LABEL, Marker};
use findings_bridge::pipeline::plan::MappingsHandle;
use findings_bridge::store::sqlite::SqliteStore;
use findings_bridge::store::{Claim, Record, Store, SyncFields};
use findings_bridge::sync::{StatusSync, SyncConfig};
use findings_bridge::ticket::http::HttpSettings;
use findings_bridge::ticket::jira::{JiraApiVersion, JiraAuth, JiraClient, JiraConfig};
use findings_bridge::ticket::servicenow::{ServiceNowAuth, ServiceNowClient, ServiceNowConfig};
use findings_bridge::ticket::{TicketRef, TicketSystem};
use findings_bridge_sim::{SimConfig, SimHandle, Simulator};
use secrecy::SecretString;
use serde_json::json;
use tempfile::TempDir;
use url::Url;

pub const TEAM: &str = "payments";
pub const JIRA_RULE: &str = "to-jira";
pub const SERVICENOW_RULE: &str = "to-servicenow";
pub const PRODUCT_ARN: &str = "arn:aws:securityhub:eu-west-1::product/aws/securityhub";

/// One team, two rules: everything in account 444455556666 goes to Jira (`Won't Do` means the
/// risk was accepted), a never-matching rule names the ServiceNow connection for records made
/// by hand.
pub const MAPPING: &str = r#"
team = "payments"

[defaults]
status_map = { "Won't Do" = "SUPPRESSED" }

[[rules]]
name = "to-jira"
order = 1
target = "jira"
[rules.criteria]
AwsAccountId = [{ Value = "444455556666", Comparison = "EQUALS" }]
[rules.jira]
project = "PAY"
issue_type = "Bug"
summary = "{{ finding.title }}"
description = "{{ finding.description }}"

[[rules]]
name = "to-servicenow"
order = 2
target = "servicenow"
[rules.criteria]
AwsAccountId = [{ Value = "000000000000", Comparison = "EQUALS" }]
[rules.servicenow]
short_description = "{{ finding.title }}"
"#;

pub struct Harness {
    pub sim: SimHandle,
    /// Holds the temporary directory (SQLite database, mapping files) for as long as the
    /// harness lives; never read.
    _dir: TempDir,
    pub store: Arc<SqliteStore>,
    pub jira: Arc<JiraClient>,
    pub servicenow: Arc<ServiceNowClient>,
    pub mappings: MappingsHandle,
}

fn http() -> HttpSettings {
    HttpSettings {
        rate_limit_per_sec: 0.0,
        max_attempts: 2,
        min_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        retry_budget: Duration::from_secs(5),
        ..HttpSettings::default()
    }
}

/// Starts everything; `page_size` is the Jira client's search page size.
pub async fn harness(page_size: u32) -> Harness {
    harness_with(page_size, SimConfig::default(), MAPPING).await
}

/// [`harness`] with a simulator of its own configuration (its credentials must stay the
/// default ones) and `mapping` as the team's file.
pub async fn harness_with(page_size: u32, sim_config: SimConfig, mapping: &str) -> Harness {
    let sim = Simulator::start(sim_config.clone(), "127.0.0.1:0")
        .await
        .expect("simulator starts");
    let base = Url::parse(&sim.base_url).expect("simulator URL");

    let mut jira = JiraConfig::new(
        base.clone(),
        JiraAuth::Basic {
            email: sim_config.jira_email.clone(),
            api_token: SecretString::from(sim_config.jira_token.clone()),
        },
        JiraApiVersion::V3,
    );
    jira.page_size = page_size;
    jira.http = http();
    let jira = Arc::new(JiraClient::new(jira).expect("jira client"));

    let mut servicenow = ServiceNowConfig::new(
        base,
        ServiceNowAuth::Basic {
            username: sim_config.servicenow_user.clone(),
            password: SecretString::from(sim_config.servicenow_password.clone()),
        },
    );
    servicenow.http = http();
    let servicenow = Arc::new(ServiceNowClient::new(servicenow).expect("servicenow client"));

    let dir = tempfile::tempdir().expect("temp dir");
    let mappings_dir = dir.path().join("mappings");
    std::fs::create_dir(&mappings_dir).expect("mappings dir");
    std::fs::write(mappings_dir.join("payments.toml"), mapping).expect("mapping file");
    let mappings = MappingsHandle::new(mapping::load(&mappings_dir).expect("mappings load"));
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("bridge.db")).expect("sqlite store opens"));
    Harness {
        sim,
        _dir: dir,
        store,
        jira,
        servicenow,
        mappings,
    }
}

/// The real Security Hub writer on aws-sdk-securityhub, pointed at the simulator.
pub async fn hub_writer(endpoint: &str) -> SecurityHubWriter {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new(
            "AKIDSIM",
            "sim-secret",
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .retry_config(
            RetryConfig::standard()
                .with_initial_backoff(Duration::from_millis(1))
                .with_max_backoff(Duration::from_millis(5)),
        )
        .load()
        .await;
    SecurityHubWriter::from_conf(&sdk).with_policy(WritePolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        requests_per_second: 1000.0,
        burst: 1000,
        ..WritePolicy::default()
    })
}

pub fn finding_id(n: usize) -> String {
    format!("arn:aws:securityhub:eu-west-1:444455556666:security-control/EC2.8/finding/sync-{n}")
}

impl Harness {
    pub fn tickets(&self) -> HashMap<String, Arc<dyn TicketSystem>> {
        let mut tickets: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
        tickets.insert("jira".to_owned(), self.jira.clone());
        tickets.insert("servicenow".to_owned(), self.servicenow.clone());
        tickets
    }

    pub fn sync(&self, writer: Arc<dyn FindingWriter>, config: SyncConfig) -> StatusSync {
        StatusSync::new(
            self.store.clone(),
            self.tickets(),
            writer,
            self.mappings.clone(),
            config,
        )
    }

    /// A bridge ticket in the simulated Jira for finding `n`, and its record as the lifecycle
    /// leaves it after creating the ticket and writing NOTIFIED.
    pub async fn jira_ticket(&self, n: usize) -> (TicketRef, Marker) {
        let marker = Marker::new(TEAM, &finding_id(n));
        let payload = json!({"fields": {
            "project": {"key": "PAY"},
            "issuetype": {"name": "Bug"},
            "summary": format!("Finding {n}"),
            "labels": [BRIDGE_LABEL, marker.as_str()],
        }});
        let ticket = self
            .jira
            .create(&payload, None)
            .await
            .expect("simulated Jira creates the issue");
        self.record(n, JIRA_RULE, &ticket, |_| {}).await;
        (ticket, marker)
    }

    /// A bridge incident in the simulated ServiceNow for finding `n`, with its record.
    pub async fn servicenow_ticket(&self, n: usize) -> (TicketRef, Marker) {
        let marker = Marker::new(TEAM, &finding_id(n));
        let payload = json!({
            "short_description": format!("Finding {n}"),
            "correlation_id": marker.as_str(),
            "correlation_display": BRIDGE_LABEL,
        });
        let ticket = self
            .servicenow
            .create(&payload, Some("incident"))
            .await
            .expect("simulated ServiceNow creates the incident");
        self.record(n, SERVICENOW_RULE, &ticket, |_| {}).await;
        (ticket, marker)
    }

    /// Stores the record of finding `n`, adjusted by `edit`.
    pub async fn record(
        &self,
        n: usize,
        rule: &str,
        ticket: &TicketRef,
        edit: impl FnOnce(&mut Record),
    ) -> Record {
        let id = finding_id(n);
        let marker = Marker::new(TEAM, &id);
        let mut record = Record {
            marker: marker.clone(),
            finding_id: id.clone(),
            team: TEAM.to_owned(),
            schema: Schema::Asff,
            write_back: WriteBackId::Asff {
                id,
                product_arn: PRODUCT_ARN.to_owned(),
            },
            rule: rule.to_owned(),
            ticket: Some(ticket.clone()),
            updated_at: Some("2026-03-04T02:00:19.114Z".to_owned()),
            fingerprint: "test".to_owned(),
            severity: "HIGH".to_owned(),
            finding_resolved: false,
            closed_by_bridge: false,
            status_to_hub: Some("NOTIFIED".to_owned()),
            status_from_ticket: None,
            modified_at: 0,
            sla: None,
            group: None,
        };
        edit(&mut record);
        let claim = self
            .store
            .claim(&marker, "test", Duration::from_secs(60))
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Acquired(_)), "{claim:?}");
        self.store
            .put(&record, "test", SyncFields::Replace)
            .await
            .expect("put");
        record
    }

    pub async fn stored(&self, marker: &Marker) -> Record {
        self.store
            .get(marker)
            .await
            .expect("store readable")
            .expect("record exists")
    }
}
