//! Connection and rule health: failures that are nobody's finding's fault pause what they are
//! the fault of, and a probe resumes it.
//!
//! A refused credential (401/403, a token endpoint refusing the client, AWS access denied) or a
//! broken connection setting (DNS, TLS) is the *connection's* fault: every finding routed to it
//! would fail the same way. A project, issue type or table that no longer exists is the *rule's*
//! fault. Neither may dead-letter findings: while a connection or rule is paused, its work is not
//! attempted, its messages are parked (see the worker) and come back later, `/readyz` names
//! what is paused and why, `findings_bridge_connection_up` / `findings_bridge_rule_up` are 0, and
//! the error is logged when the pause begins and then once per [`LOG_EVERY`], not per message.
//! A light probe per paused subject (Jira `myself`, a ServiceNow table read, a store ping) runs
//! from [`FIRST_PROBE`] to [`MAX_PROBE`] apart; when one succeeds, work resumes by itself.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use std::collections::HashMap;
use std::sync::Arc;

use crate::runtime::shutdown::Shutdown;
use crate::runtime::telemetry;
use crate::store::Store;
use crate::ticket::TicketSystem;

/// The `event` field of every log line about a paused subject (when the pause begins, then once
/// per [`LOG_EVERY`]): what the CloudFormation stack's metric filter counts and alarms on.
pub const PAUSED_EVENT: &str = "connection_paused";

/// Between two log lines about the same paused subject.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// The first probe after a pause; probes then back off, doubling, to [`MAX_PROBE`].
pub const FIRST_PROBE: Duration = Duration::from_secs(5);
pub const MAX_PROBE: Duration = Duration::from_secs(60);

/// What a failure is the fault of, when it is not the finding's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A ticket connection (`jira`, `servicenow`), or `store` / `securityhub`.
    Connection(String),
    /// One team's rule: its project, issue type or table.
    Rule { team: String, rule: String },
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Connection(name) => write!(f, "connection {name}"),
            Subject::Rule { team, rule } => write!(f, "rule {team}/{rule}"),
        }
    }
}

/// How to find out that a paused subject works again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The connection's own light call (Jira `myself`, ServiceNow table read, store ping).
    Connection(String),
    /// A rule's target on a connection: a Jira project key or a ServiceNow table
    /// ([`crate::ticket::TicketSystem::probe_target`]).
    Target { connection: String, target: String },
    /// Nothing to call: resumes when work succeeds again (Security Hub write-back).
    Passive,
}

#[derive(Debug)]
struct Pause {
    reason: String,
    since: chrono::DateTime<chrono::Utc>,
    probe: Probe,
    next_probe: Instant,
    probe_gap: Duration,
    last_logged: Instant,
    probes_failed: u32,
}

/// The registry of paused subjects. One per process, shared by the worker, the lifecycle, the
/// prober and `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    paused: Mutex<BTreeMap<Subject, Pause>>,
}

/// A paused subject as `/readyz` and tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    pub subject: Subject,
    pub reason: String,
    pub since: String,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Subject, Pause>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pauses `subject` (or notes one more failure of a paused one). Logs when the pause begins
    /// and then once per [`LOG_EVERY`].
    pub fn pause(&self, subject: Subject, reason: &str, probe: Probe) {
        let now = Instant::now();
        let mut paused = self.lock();
        match paused.get_mut(&subject) {
            Some(pause) => {
                if now.duration_since(pause.last_logged) >= LOG_EVERY {
                    tracing::error!(event = PAUSED_EVENT, %subject, reason, since = %pause.since, "still paused");
                    pause.last_logged = now;
                }
                pause.reason = reason.to_owned();
            }
            None => {
                tracing::error!(event = PAUSED_EVENT, %subject, reason, "paused: its findings wait on the queue (never dead-lettered) until a probe succeeds");
                set_gauge(&subject, false);
                paused.insert(
                    subject,
                    Pause {
                        reason: reason.to_owned(),
                        since: chrono::Utc::now(),
                        probe,
                        next_probe: now + FIRST_PROBE,
                        probe_gap: FIRST_PROBE,
                        last_logged: now,
                        probes_failed: 0,
                    },
                );
            }
        }
    }

    /// Resumes `subject`; a no-op when it is not paused.
    pub fn resume(&self, subject: &Subject) {
        if let Some(pause) = self.lock().remove(subject) {
            tracing::warn!(%subject, paused_since = %pause.since, "resumed");
            set_gauge(subject, true);
        }
    }

    /// Why `subject` is paused, if it is.
    pub fn paused(&self, subject: &Subject) -> Option<String> {
        self.lock().get(subject).map(|p| p.reason.clone())
    }

    /// Why the connection or the rule is paused, if either is.
    pub fn route_paused(&self, connection: &str, team: &str, rule: &str) -> Option<Subject> {
        let paused = self.lock();
        if paused.is_empty() {
            return None;
        }
        let connection = Subject::Connection(connection.to_owned());
        if paused.contains_key(&connection) {
            return Some(connection);
        }
        let rule = Subject::Rule {
            team: team.to_owned(),
            rule: rule.to_owned(),
        };
        paused.contains_key(&rule).then_some(rule)
    }

    /// Everything paused, for `/readyz` and `healthcheck`.
    pub fn report(&self) -> Vec<Paused> {
        self.lock()
            .iter()
            .map(|(subject, pause)| Paused {
                subject: subject.clone(),
                reason: pause.reason.clone(),
                since: pause
                    .since
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The probes due now; each is scheduled again (backing off) until its outcome is reported
    /// through [`Health::probed`].
    pub fn due_probes(&self) -> Vec<(Subject, Probe)> {
        let now = Instant::now();
        let mut due = Vec::new();
        for (subject, pause) in self.lock().iter_mut() {
            if pause.next_probe <= now && pause.probe != Probe::Passive {
                pause.probe_gap = (pause.probe_gap * 2).min(MAX_PROBE);
                pause.next_probe = now + pause.probe_gap;
                due.push((subject.clone(), pause.probe.clone()));
            }
        }
        due
    }

    /// The outcome of a probe: success resumes the subject, failure keeps it paused.
    pub fn probed(&self, subject: &Subject, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.resume(subject),
            Err(reason) => {
                let mut paused = self.lock();
                if let Some(pause) = paused.get_mut(subject) {
                    pause.probes_failed += 1;
                    let now = Instant::now();
                    if now.duration_since(pause.last_logged) >= LOG_EVERY {
                        tracing::error!(event = PAUSED_EVENT, %subject, reason, probes_failed = pause.probes_failed, since = %pause.since, "still paused");
                        pause.last_logged = now;
                    }
                    pause.reason = reason;
                }
            }
        }
    }
}

fn set_gauge(subject: &Subject, up: bool) {
    match subject {
        Subject::Connection(name) => telemetry::connection_up(name, up),
        Subject::Rule { team, rule } => telemetry::rule_up(team, rule, up),
    }
}

pub use crate::aws::secrets::CredentialRefresh;

/// Probes paused subjects until shutdown: each due probe runs on its own (a hung one cannot
/// hold up the others), bounded by [`MAX_PROBE`].
pub async fn run_prober(
    health: Arc<Health>,
    tickets: HashMap<String, Arc<dyn TicketSystem>>,
    store: Arc<dyn Store>,
    shutdown: Shutdown,
) {
    run_prober_with(health, tickets, store, None, shutdown).await
}

/// [`run_prober`] that first re-reads a paused connection's credentials through `credentials`
/// (at most once per probe).
pub async fn run_prober_with(
    health: Arc<Health>,
    tickets: HashMap<String, Arc<dyn TicketSystem>>,
    store: Arc<dyn Store>,
    credentials: Option<Arc<dyn CredentialRefresh>>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tick.tick() => {}
        }
        for (subject, probe) in health.due_probes() {
            let (health, tickets, store) = (health.clone(), tickets.clone(), store.clone());
            let credentials = credentials.clone();
            tokio::spawn(async move {
                let attempt = async {
                    let refreshed = match (&credentials, &probe) {
                        (Some(credentials), Probe::Connection(name)) => {
                            credentials.refresh(name).await
                        }
                        _ => Ok(()),
                    };
                    let outcome = run_probe(&probe, &tickets, store.as_ref()).await;
                    match (outcome, refreshed) {
                        (Err(probe), Err(refresh)) => Err(format!("{probe}; {refresh}")),
                        (outcome, _) => outcome,
                    }
                };
                let outcome = tokio::time::timeout(MAX_PROBE, attempt)
                    .await
                    .unwrap_or_else(|_| Err("the probe timed out".to_owned()));
                health.probed(&subject, outcome);
            });
        }
    }
}

async fn run_probe(
    probe: &Probe,
    tickets: &HashMap<String, Arc<dyn TicketSystem>>,
    store: &dyn Store,
) -> Result<(), String> {
    let system = |name: &str| {
        tickets
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no connection named {name}"))
    };
    match probe {
        Probe::Connection(name) if name == crate::pipeline::lifecycle::STORE_CONNECTION => {
            store.ping().await.map_err(|e| e.to_string())
        }
        Probe::Connection(name) => system(name)?.probe().await.map_err(|e| e.to_string()),
        Probe::Target { connection, target } => system(connection)?
            .probe_target(target)
            .await
            .map_err(|e| e.to_string()),
        Probe::Passive => Err("resumes when its work succeeds".to_owned()),
    }
}

/// How long a parked message waits before it comes back: 5 s doubling per park, at most
/// [`MAX_PARK`]. The cap bounds the tail after an outage ends (a parked copy cannot be called
/// back early) at the price of one send and one delete per message per cap during a long one.
pub fn park_delay(times_parked: u32) -> Duration {
    let exponent = times_parked.min(8);
    Duration::from_secs(5u64 << exponent).min(MAX_PARK)
}

/// The longest a parked message waits (SQS would allow 15 minutes).
pub const MAX_PARK: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxFuture;

    fn jira() -> Subject {
        Subject::Connection("jira".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_subject_is_probed_with_backoff_and_resumes_on_success() {
        let health = Health::new();
        assert!(health.is_empty());
        health.pause(jira(), "HTTP 401", Probe::Connection("jira".into()));
        assert_eq!(health.paused(&jira()).as_deref(), Some("HTTP 401"));
        assert_eq!(health.route_paused("jira", "payments", "r"), Some(jira()));
        assert!(health.due_probes().is_empty(), "the first probe waits");
        tokio::time::sleep(FIRST_PROBE).await;
        assert_eq!(health.due_probes().len(), 1);
        assert!(health.due_probes().is_empty(), "scheduled again, later");
        health.probed(&jira(), Err("HTTP 401 again".into()));
        assert_eq!(health.paused(&jira()).as_deref(), Some("HTTP 401 again"));
        tokio::time::sleep(FIRST_PROBE * 2).await;
        assert_eq!(health.due_probes().len(), 1);
        health.probed(&jira(), Ok(()));
        assert!(health.is_empty());
        assert_eq!(health.route_paused("jira", "payments", "r"), None);
    }

    #[test]
    fn a_paused_rule_pauses_only_that_rule() {
        let health = Health::new();
        let rule = Subject::Rule {
            team: "payments".into(),
            rule: "gone".into(),
        };
        health.pause(
            rule.clone(),
            "project PAY does not exist",
            Probe::Target {
                connection: "jira".into(),
                target: "PAY".into(),
            },
        );
        assert_eq!(health.route_paused("jira", "payments", "gone"), Some(rule));
        assert_eq!(health.route_paused("jira", "payments", "other"), None);
        assert_eq!(health.route_paused("jira", "platform", "gone"), None);
        let report = health.report();
        assert_eq!(report.len(), 1);
        assert!(report[0].reason.contains("PAY"));
    }

    /// Stands in for Secrets Manager: "rotates" the credential by lifting the probe's failure,
    /// and records which connections it was asked about.
    struct Rotation {
        tickets: Arc<crate::testing::FakeTickets>,
        asked: Mutex<Vec<String>>,
        fails: bool,
    }

    impl CredentialRefresh for Rotation {
        fn refresh<'a>(&'a self, connection: &'a str) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.asked.lock().unwrap().push(connection.to_owned());
                if self.fails {
                    return Err("re-reading JIRA_API_TOKEN_SECRET_ARN failed: denied".to_owned());
                }
                self.tickets.failures.lock().unwrap().remove("probe");
                Ok(())
            })
        }
    }

    async fn probe_with(
        fails: bool,
    ) -> (
        Arc<Health>,
        Arc<Rotation>,
        Subject,
        Shutdown,
        tokio::task::JoinHandle<()>,
    ) {
        use crate::testing::{FakeTickets, MemoryStore, unusable};
        let tickets = Arc::new(FakeTickets::new("jira"));
        tickets.fail("probe", unusable("probe", crate::ticket::Blame::Connection));
        let rotation = Arc::new(Rotation {
            tickets: tickets.clone(),
            asked: Mutex::new(Vec::new()),
            fails,
        });
        let health = Arc::new(Health::new());
        health.pause(jira(), "HTTP 401", Probe::Connection("jira".into()));
        let rule = Subject::Rule {
            team: "payments".into(),
            rule: "r".into(),
        };
        health.pause(
            rule.clone(),
            "project PAY does not exist",
            Probe::Target {
                connection: "jira".into(),
                target: "PAY".into(),
            },
        );
        let shutdown = Shutdown::new();
        let systems: HashMap<String, Arc<dyn TicketSystem>> =
            HashMap::from([("jira".to_owned(), tickets as Arc<dyn TicketSystem>)]);
        let prober = tokio::spawn(run_prober_with(
            health.clone(),
            systems,
            Arc::new(MemoryStore::default()),
            Some(rotation.clone() as Arc<dyn CredentialRefresh>),
            shutdown.clone(),
        ));
        (health, rotation, rule, shutdown, prober)
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_connection_rereads_its_credentials_before_each_probe_and_resumes() {
        let (health, rotation, rule, shutdown, prober) = probe_with(false).await;
        tokio::time::sleep(FIRST_PROBE + Duration::from_secs(2)).await;
        assert_eq!(health.paused(&jira()), None, "the re-read credential works");
        assert_eq!(health.paused(&rule), None, "the target probe succeeds");
        assert_eq!(
            *rotation.asked.lock().unwrap(),
            ["jira"],
            "once per probe of the paused connection, never for a rule's target"
        );
        shutdown.trigger();
        prober.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_reread_is_part_of_the_pause_reason_and_the_probe_still_runs() {
        let (health, rotation, _rule, shutdown, prober) = probe_with(true).await;
        tokio::time::sleep(FIRST_PROBE + Duration::from_secs(2)).await;
        let reason = health.paused(&jira()).expect("still paused");
        assert!(reason.contains("refused"), "{reason}");
        assert!(reason.contains("JIRA_API_TOKEN_SECRET_ARN"), "{reason}");
        assert_eq!(*rotation.asked.lock().unwrap(), ["jira"]);
        shutdown.trigger();
        prober.await.unwrap();
    }

    #[test]
    fn parked_messages_back_off_to_five_minutes() {
        assert_eq!(park_delay(0), Duration::from_secs(5));
        assert_eq!(park_delay(1), Duration::from_secs(10));
        assert_eq!(park_delay(5), Duration::from_secs(160));
        assert_eq!(park_delay(6), MAX_PARK);
        assert_eq!(park_delay(100), MAX_PARK);
    }
}
