//! Test bench for the worker end to end: a fresh simulator (Jira, ServiceNow, Security Hub) and a
//! fresh pair of queues on the shared moto_server per test, mapping files in a temporary
//! directory, and two ways to run the worker — in this process (built from its parts, like
//! `app::run` does) or as the real `findings-bridge run` binary with its environment.
//!
//! Tests never set process-wide environment variables (they would leak into tests running in
//! parallel): a child process gets its whole environment from [`Bench::worker_env`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use findings_bridge::aws::securityhub::FindingWriter;
use findings_bridge::aws::securityhub::client::SecurityHubWriter;
use findings_bridge::finding;
use findings_bridge::marker::Marker;
use findings_bridge::pipeline::lifecycle::Lifecycle;
use findings_bridge::pipeline::plan::{MappingPlanner, MappingsHandle};
use findings_bridge::pipeline::worker::{RunSummary, Worker, WorkerConfig};
use findings_bridge::render::RenderOptions;
use findings_bridge::runtime::shutdown::Shutdown;
use findings_bridge::store::Store;
use findings_bridge::store::sqlite::SqliteStore;
use findings_bridge::ticket::TicketSystem;
use findings_bridge::ticket::jira::{JiraClient, JiraConfig};
use findings_bridge::ticket::servicenow::{ServiceNowClient, ServiceNowConfig};
use findings_bridge_sim::{Faults, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::RwLock;

use crate::support;

/// The Jira team of every bench: one rule that takes every finding.
pub const JIRA_TEAM: &str = "appsec";
/// The ServiceNow team, for tests that route a finding to two teams.
pub const SERVICENOW_TEAM: &str = "platform";

const JIRA_TEAM_FILE: &str = r#"
team = "appsec"
description = "Application security (end-to-end tests)"

[[rules]]
name = "every-finding"
order = 10
# Let the finding go on to the other team's rules too (terminal stops routing for every team).
terminal = false
[rules.jira]
project = "SEC"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ finding.title }}"
description = "{{ finding.description }}"
priority = "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[finding.severity] | default('Medium') }}"
labels = ["security-hub"]
"#;

const SERVICENOW_TEAM_FILE: &str = r#"
team = "platform"
description = "Cloud platform (end-to-end tests)"

[[rules]]
name = "every-finding"
order = 10
target = "servicenow"
[rules.servicenow]
table = "incident"
short_description = "{{ finding.title }}"
description = "{{ finding.description }}"
urgency = "{{ 1 if finding.severity in ['CRITICAL', 'HIGH'] else 2 }}"
impact = "2"
"#;

/// Tests whose assertions depend on timing (a process must exit within its grace period, a
/// load must finish within a budget) take this exclusively; the others share it. On a 2-core
/// machine a second heavy test running alongside would measure the machine, not the worker.
static TIMING: RwLock<()> = RwLock::const_new(());

pub async fn exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    TIMING.write().await
}

pub async fn shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    TIMING.read().await
}

/// Which team files the bench writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teams {
    JiraOnly,
    JiraAndServiceNow,
}

pub struct Bench {
    pub sim: SimHandle,
    pub moto_endpoint: String,
    /// AWS configuration pointing at moto (SQS, DynamoDB, EventBridge, SNS).
    pub aws: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dir: TempDir,
    pub mappings: PathBuf,
}

impl Bench {
    pub async fn start(teams: Teams, faults: Faults) -> Bench {
        Bench::start_with(
            teams,
            SimConfig {
                faults,
                ..SimConfig::default()
            },
        )
        .await
    }

    /// A bench whose simulator has its own configuration (credentials, rate limits): the
    /// worker's environment must then be given the same credentials through `spawn`'s `extra`.
    pub async fn start_with(teams: Teams, config: SimConfig) -> Bench {
        let sim = Simulator::start(config, "127.0.0.1:0")
            .await
            .expect("simulator starts on a free port");
        let moto = support::moto::moto().await;
        let aws = support::moto::aws_config(&moto.endpoint).await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let dlq_url = create_queue(&sqs, &support::unique("e2e-dlq"), HashMap::new()).await;
        let queue_url = create_queue(&sqs, &support::unique("e2e"), HashMap::new()).await;
        let queue_arn = queue_arn(&sqs, &queue_url).await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let mappings = dir.path().join("mappings");
        std::fs::create_dir(&mappings).expect("mapping directory");
        std::fs::write(mappings.join("appsec.toml"), JIRA_TEAM_FILE).expect("team file");
        if teams == Teams::JiraAndServiceNow {
            std::fs::write(mappings.join("platform.toml"), SERVICENOW_TEAM_FILE)
                .expect("team file");
        }
        Bench {
            sim,
            moto_endpoint: moto.endpoint.clone(),
            aws,
            sqs,
            queue_url,
            queue_arn,
            dlq_url,
            dir,
            mappings,
        }
    }

    // ---- the queue -------------------------------------------------------------------------

    /// Sends one message; returns its SQS message id.
    pub async fn send(&self, body: &str) -> String {
        let out = self
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("SendMessage to moto");
        out.message_id().unwrap_or_default().to_owned()
    }

    /// Sends every body, ten per `SendMessageBatch`, several batches at once, in order of the
    /// batches.
    pub async fn send_all(&self, bodies: &[String]) {
        let mut batches = tokio::task::JoinSet::new();
        for (n, chunk) in bodies.chunks(10).enumerate() {
            let sqs = self.sqs.clone();
            let url = self.queue_url.clone();
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(format!("m{n}-{i}"))
                        .message_body(body)
                        .build()
                        .expect("batch entry has id and body")
                })
                .collect();
            batches.spawn(async move {
                let out = sqs
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .expect("SendMessageBatch to moto");
                assert!(out.failed().is_empty(), "moto refused: {:?}", out.failed());
            });
            if batches.len() >= 8
                && let Some(done) = batches.join_next().await
            {
                done.expect("send task");
            }
        }
        while let Some(r) = batches.join_next().await {
            r.expect("send task");
        }
    }

    /// (visible, in flight) messages on `url`.
    pub async fn depth(&self, url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("GetQueueAttributes from moto");
        let attrs = out.attributes().cloned().unwrap_or_default();
        let read = |name: QueueAttributeName| {
            attrs
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX)
        };
        (
            read(QueueAttributeName::ApproximateNumberOfMessages),
            read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Gives the queue a redrive policy to the bench's DLQ: a message received `max_receive`
    /// times without being deleted moves to the DLQ on its next receive, as SQS does.
    pub async fn redrive_to_dlq(&self, max_receive: u32) {
        let dlq_arn = queue_arn(&self.sqs, &self.dlq_url).await;
        let policy = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive.to_string(),
        });
        self.sqs
            .set_queue_attributes()
            .queue_url(&self.queue_url)
            .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
            .send()
            .await
            .expect("SetQueueAttributes (RedrivePolicy) on moto");
    }

    /// Messages on `url` still waiting out a delay (a parked message's copy): counted neither
    /// as visible nor as in flight.
    pub async fn delayed(&self, url: &str) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("GetQueueAttributes from moto");
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    }

    /// Nothing visible, in flight or delayed — read in one request: asked one after the other,
    /// a parked copy whose delay ends between the two reads is counted by neither.
    pub async fn queue_is_empty(&self) -> bool {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("GetQueueAttributes from moto");
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ]
        .iter()
        .all(|name| attrs.get(name).map(String::as_str) == Some("0"))
    }

    /// Asserts that neither the queue nor the DLQ holds anything, visible, in flight or delayed.
    pub async fn assert_queues_empty(&self) {
        assert_eq!(
            self.depth(&self.queue_url).await,
            (0, 0),
            "queue (visible, in flight) after the run"
        );
        assert_eq!(
            self.delayed(&self.queue_url).await,
            0,
            "queue (delayed) after the run"
        );
        assert_eq!(
            self.depth(&self.dlq_url).await,
            (0, 0),
            "DLQ (visible, in flight) after the run"
        );
    }

    /// Everything on the DLQ, with its message attributes (received once, then made visible
    /// again so a second look sees the same).
    pub async fn dlq_messages(&self) -> Vec<DeadLetter> {
        let mut seen = Vec::new();
        let mut handles = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(&self.dlq_url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .visibility_timeout(30)
                .send()
                .await
                .expect("ReceiveMessage on the DLQ");
            let messages = out.messages();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let attributes = m
                    .message_attributes()
                    .map(|a| {
                        a.iter()
                            .filter_map(|(k, v)| {
                                v.string_value().map(|s| (k.clone(), s.to_owned()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                seen.push(DeadLetter {
                    body: m.body().unwrap_or_default().to_owned(),
                    attributes,
                });
                handles.extend(m.receipt_handle().map(str::to_owned));
            }
        }
        for handle in handles {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.dlq_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .expect("ChangeMessageVisibility on the DLQ");
        }
        seen
    }

    // ---- the ticket systems ----------------------------------------------------------------

    /// The marker labels (`fb-…`) of every Jira issue, one entry per issue that has one.
    pub fn jira_markers(&self) -> Vec<String> {
        self.sim
            .state
            .jira_issues()
            .iter()
            .flat_map(|i| i.labels.iter().filter(|l| l.starts_with("fb-")).cloned())
            .collect()
    }

    /// (project key, marker label) of every Jira issue; the marker is empty when it has none.
    pub fn jira_tickets(&self) -> Vec<(String, String)> {
        self.sim
            .state
            .jira_issues()
            .into_iter()
            .map(|i| {
                let marker = i
                    .labels
                    .iter()
                    .find(|l| l.starts_with("fb-"))
                    .cloned()
                    .unwrap_or_default();
                (i.project, marker)
            })
            .collect()
    }

    /// A fresh DynamoDB table on moto for several replicas; returns its `BRIDGE_STORE` value.
    pub async fn dynamodb_store(&self, prefix: &str) -> String {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.aws);
        let table = support::unique(prefix);
        findings_bridge::store::dynamodb::DynamoStore::create_table_for_tests(&dynamodb, &table)
            .await
            .expect("records table on moto");
        format!("dynamodb:{table}")
    }

    /// `n` workers on `store`, each taking two messages at a time, all polling before this
    /// returns: findings sent afterwards are spread over the processes, so races between
    /// replicas really happen.
    pub async fn replicas_ready(&self, name: &str, n: usize, store: &str) -> Vec<WorkerProcess> {
        let replicas: Vec<WorkerProcess> = (1..=n)
            .map(|i| {
                self.spawn(
                    &format!("{name}-{i}"),
                    store,
                    &[("BRIDGE_CONCURRENCY", "2")],
                    &[],
                )
            })
            .collect();
        for replica in &replicas {
            replica.http_addr(Duration::from_secs(60)).await;
        }
        replicas
    }

    /// Writes one more team file into the bench's mapping directory (before a worker starts).
    pub fn write_team(&self, file: &str, toml: &str) {
        std::fs::write(self.mappings.join(file), toml).expect("team file");
    }

    pub fn jira_count(&self) -> usize {
        self.sim.state.jira_issues().len()
    }

    /// Requests the simulator answered, by endpoint.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.sim.state.stats().requests
    }

    /// Asserts one Jira issue per expected finding of the Jira team, each with its own marker,
    /// and nothing else.
    pub fn assert_one_jira_issue_per_finding(&self, finding_ids: &[String]) {
        let issues = self.sim.state.jira_issues();
        let markers = self.jira_markers();
        let unique: BTreeSet<&String> = markers.iter().collect();
        assert_eq!(
            unique.len(),
            markers.len(),
            "two issues carry the same marker: duplicates were created"
        );
        let expected: BTreeSet<String> = finding_ids
            .iter()
            .map(|id| Marker::new(JIRA_TEAM, id).as_str().to_owned())
            .collect();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|m| !unique.contains(m))
            .take(5)
            .collect();
        assert!(missing.is_empty(), "findings without an issue: {missing:?}");
        assert_eq!(
            issues.len(),
            expected.len(),
            "exactly one issue per finding"
        );
        for issue in &issues {
            assert!(
                issue.labels.iter().any(|l| l == "findings-bridge"),
                "{} lacks the findings-bridge label: {:?}",
                issue.key,
                issue.labels
            );
        }
    }

    // ---- running the worker ----------------------------------------------------------------

    /// The ticket connections and the Security Hub writer, exactly as the environment of a
    /// `run` process would configure them, but from a lookup instead of the process env.
    pub fn connections(&self) -> HashMap<String, Arc<dyn TicketSystem>> {
        let env = self.ticket_env();
        let lookup = |name: &str| env.get(name).cloned();
        let mut systems: HashMap<String, Arc<dyn TicketSystem>> = HashMap::new();
        let jira = JiraConfig::from_lookup(lookup)
            .expect("Jira settings are valid")
            .expect("Jira is configured");
        let jira = JiraClient::new(jira).expect("Jira client");
        systems.insert(jira.name().to_owned(), Arc::new(jira));
        let sn = ServiceNowConfig::from_lookup(lookup)
            .expect("ServiceNow settings are valid")
            .expect("ServiceNow is configured");
        let sn = ServiceNowClient::new(sn).expect("ServiceNow client");
        systems.insert(sn.name().to_owned(), Arc::new(sn));
        systems
    }

    fn ticket_env(&self) -> HashMap<String, String> {
        let sim = &self.sim.base_url;
        [
            ("JIRA_URL", sim.as_str()),
            ("JIRA_EMAIL", "sim@example.com"),
            ("JIRA_API_TOKEN", "sim-token"),
            ("SERVICENOW_URL", sim.as_str()),
            ("SERVICENOW_USERNAME", "sim"),
            ("SERVICENOW_PASSWORD", "sim-password"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A worker in this process, assembled like `app::run` assembles it: SQLite store at
    /// `store` (a path in the bench directory, so a second run sees the first run's records).
    pub async fn worker(&self, store: &str, tune: impl FnOnce(&mut WorkerConfig)) -> Worker {
        let path = self.dir.path().join(store);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&path).expect("SQLite store in the bench directory"));
        let mappings = findings_bridge::mapping::load(&self.mappings)
            .unwrap_or_else(|e| panic!("bench mapping files load: {e}"));
        let planner = MappingPlanner::new(MappingsHandle::new(mappings), RenderOptions::default());
        let sim_aws = support::moto::aws_config(&self.sim.base_url).await;
        let writer: Arc<dyn FindingWriter> = Arc::new(SecurityHubWriter::from_conf(&sim_aws));
        let owner = support::unique("in-process");
        let lifecycle = Lifecycle::new(
            store,
            self.connections(),
            writer,
            Arc::new(planner),
            owner.clone(),
        );
        let mut config = WorkerConfig::new(self.queue_url.clone(), owner);
        config.dlq_url = Some(self.dlq_url.clone());
        config.wait_time = Duration::from_secs(1);
        config.visibility_timeout = Duration::from_secs(30);
        config.grace = Duration::from_secs(10);
        tune(&mut config);
        Worker::from_sqs(config, self.sqs.clone(), lifecycle, finding::decode_each)
    }

    /// Runs an in-process worker until the queue stays empty (`run --drain`).
    pub async fn drain(&self, store: &str, concurrency: usize) -> RunSummary {
        let worker = self
            .worker(store, |c| {
                c.concurrency = concurrency;
                c.exit_when_idle = Some(2);
            })
            .await;
        let run = tokio::spawn(worker.run(Shutdown::new()));
        match tokio::time::timeout(Duration::from_secs(120), run).await {
            Ok(Ok(Ok(summary))) => summary,
            Ok(Ok(Err(e))) => panic!("worker stopped with an error: {e:#}"),
            Ok(Err(e)) => panic!("worker task failed: {e}"),
            Err(_) => panic!("worker did not drain the queue within 120 s"),
        }
    }

    /// The environment of a `findings-bridge run` process on this bench, and nothing else from
    /// the test's own environment (no AWS profile, no stray JIRA_* of the developer).
    pub fn worker_env(&self, store: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_SQS", self.moto_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_DYNAMODB", self.moto_endpoint.as_str()),
            ("AWS_ENDPOINT_URL_SECURITYHUB", self.sim.base_url.as_str()),
            ("BRIDGE_QUEUE_URL", self.queue_url.as_str()),
            ("BRIDGE_DLQ_URL", self.dlq_url.as_str()),
            ("BRIDGE_STORE", store),
            ("BRIDGE_HTTP_ADDR", "127.0.0.1:0"),
            ("BRIDGE_LOG_FORMAT", "json"),
            ("RUST_LOG", "warn,findings_bridge=info"),
            // The simulator's search is consistent unless a test says otherwise, and its slowest
            // answers take seconds: a create whose answer was lost settles in 5 + 5 s.
            ("JIRA_SEARCH_CONSISTENCY", "0"),
            ("JIRA_REQUEST_TIMEOUT", "5"),
            ("SERVICENOW_REQUEST_TIMEOUT", "5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.push((
            "BRIDGE_MAPPINGS".to_owned(),
            self.mappings.display().to_string(),
        ));
        for (k, v) in [
            (
                "AWS_CONFIG_FILE",
                self.dir.path().join("no-aws-config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir
                    .path()
                    .join("no-aws-credentials")
                    .display()
                    .to_string(),
            ),
        ] {
            env.push((k.to_owned(), v));
        }
        env.extend(self.ticket_env());
        env
    }

    /// Starts `findings-bridge run` with the bench environment plus `extra`, logging to a file in
    /// the bench directory (printed if the test fails).
    pub fn spawn(
        &self,
        name: &str,
        store: &str,
        extra: &[(&str, &str)],
        args: &[&str],
    ) -> WorkerProcess {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file handle");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_findings-bridge"));
        cmd.env_clear()
            .arg("run")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in self.worker_env(store) {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("findings-bridge starts");
        WorkerProcess {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }
}

impl Bench {
    /// Runs a one-shot `findings-bridge` command (`replay`, `sync`, `healthcheck`, …) with the
    /// bench environment plus `extra`, off the runtime's threads so the simulator keeps serving.
    pub async fn command(
        &self,
        store: &str,
        extra: &[(&str, &str)],
        args: &[&str],
    ) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_findings-bridge"));
        cmd.env_clear()
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        for (k, v) in self.worker_env(store) {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let what = args.join(" ");
        tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("command task")
            .unwrap_or_else(|e| panic!("findings-bridge {what} starts: {e}"))
    }
}

/// A dead-lettered message as an operator sees it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}

/// A `findings-bridge run` child. Dropping it kills the process (a failing test must not leave
/// workers behind consuming someone else's queue) and, when the test is failing, prints the end
/// of its log.
pub struct WorkerProcess {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, like an OOM kill or a lost host.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as ECS sends on a task stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit, polling so the test's runtime keeps serving the
    /// simulator meanwhile. `None` if it is still running after `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => tokio::time::sleep(Duration::from_millis(25)).await,
                Err(e) => panic!("{}: cannot wait for the process: {e}", self.name),
            }
        }
    }

    /// Waits for a successful exit, failing the test with the log otherwise.
    pub async fn expect_success(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        match self.wait(timeout).await {
            Some(status) if status.success() => started.elapsed(),
            Some(status) => panic!(
                "{} exited with {status}; log:\n{}",
                self.name,
                self.log_tail(60)
            ),
            None => panic!(
                "{} still running after {timeout:?}; log:\n{}",
                self.name,
                self.log_tail(60)
            ),
        }
    }

    /// The address the HTTP server bound (`BRIDGE_HTTP_ADDR=127.0.0.1:0` picks a free port),
    /// read from the JSON "HTTP server listening" log line.
    pub async fn http_addr(&self, timeout: Duration) -> std::net::SocketAddr {
        let mut found = None;
        eventually(timeout, "the HTTP server listening log line", || {
            found = self.log_text().lines().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let message = v.get("message")?.as_str()?;
                if !message.starts_with("HTTP server listening") {
                    return None;
                }
                v.get("addr")?.as_str()?.parse().ok()
            });
            std::future::ready(found.is_some())
        })
        .await;
        found.unwrap_or_else(|| panic!("{}: no HTTP address logged", self.name))
    }

    /// How many times the worker logged that it parked a message (it logs each park at info).
    pub fn parked_in_log(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains("parked while a connection or rule is paused"))
            .count()
    }

    /// Sends a signal by name (`HUP`, `TERM`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} log (last lines) ----\n{}",
                self.name,
                self.log_tail(40)
            );
        }
    }
}

// ---- helpers -------------------------------------------------------------------------------

pub async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> String {
    sqs.create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .expect("CreateQueue on moto")
        .queue_url()
        .expect("moto returns the queue URL")
        .to_owned()
}

pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes on moto")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("moto returns the queue ARN")
}

/// `GET /readyz` of a worker: the status code and the JSON body (component → "ok" or why
/// not). `None` when the server does not answer (yet).
pub async fn readyz(addr: std::net::SocketAddr) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.ok()?;
    Some((status, body))
}

/// The value of one series of a worker's `/metrics`: `name` and every `labels` pair (as
/// `key="value"`) must appear on the line. `None` when there is no such series (yet).
pub async fn metric(addr: std::net::SocketAddr, name: &str, labels: &[&str]) -> Option<f64> {
    let text = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Polls `check` every 50 ms until it holds; fails the test with `what` after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A bare ASFF finding (from `bare-asff.json`) with its own id.
#[derive(Debug, Clone)]
pub struct FindingBuilder {
    json: Value,
}

impl FindingBuilder {
    pub fn new(id_suffix: &str) -> FindingBuilder {
        let mut json = fixture_json("bare-asff.json");
        let id = format!(
            "{}/e2e/{id_suffix}",
            json["Id"].as_str().expect("fixture has an Id")
        );
        json["Id"] = Value::String(id);
        FindingBuilder { json }
    }

    pub fn id(&self) -> String {
        self.json["Id"].as_str().unwrap_or_default().to_owned()
    }

    pub fn updated_at(mut self, at: &str) -> FindingBuilder {
        self.json["UpdatedAt"] = Value::String(at.to_owned());
        self
    }

    pub fn severity(mut self, label: &str) -> FindingBuilder {
        self.json["Severity"]["Label"] = Value::String(label.to_owned());
        self.json["FindingProviderFields"]["Severity"]["Label"] = Value::String(label.to_owned());
        self
    }

    pub fn workflow(mut self, status: &str) -> FindingBuilder {
        self.json["Workflow"]["Status"] = Value::String(status.to_owned());
        self.json["WorkflowState"] = Value::String(status.to_owned());
        self
    }

    /// The finding resolved: `RecordState` ARCHIVED.
    pub fn archived(mut self) -> FindingBuilder {
        self.json["RecordState"] = Value::String("ARCHIVED".to_owned());
        self
    }

    pub fn body(&self) -> String {
        self.json.to_string()
    }
}

/// `count` distinct findings.
pub fn findings(prefix: &str, count: usize) -> Vec<FindingBuilder> {
    (0..count)
        .map(|i| FindingBuilder::new(&format!("{prefix}-{i:04}")))
        .collect()
}
