//! Operating the bridge as a process (issues 6 and 8): what an on-call engineer does and sees —
//! replaying the DLQ after fixing a mapping, scraping `/metrics` and the health endpoints,
//! reading logs that must never hold a secret, reloading mappings with SIGHUP, the payments
//! scenario of the shipped mapping files, and `sync --once` from cron.
//!
//! Every test runs the real `findings-bridge` binary against moto (SQS) and the simulator (Jira,
//! ServiceNow, Security Hub). Needs `moto_server` (`scripts/venv`).

use crate::bench as e2e;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use e2e::{Bench, FindingBuilder, JIRA_TEAM, Teams, eventually};
use findings_bridge::marker::Marker;
use findings_bridge::runtime::telemetry::names;
use findings_bridge_sim::{Faults, SimConfig};
use serde_json::Value;

/// A rule that renders for findings with a `Note` and fails at render time for the others: the
/// kind of mistake `check` cannot see, which dead-letters every finding without a note.
const RENDER_FAILS_WITHOUT_NOTE: &str = r#"
team = "appsec"

[[rules]]
name = "every-finding"
order = 10
[rules.jira]
project = "SEC"
issue_type = "Bug"
summary = "[{{ finding.severity }}] {{ finding.title }}: {{ raw.Note.Text }}"
description = "{{ finding.description }}"
"#;

fn store_path(bench: &Bench) -> String {
    format!("sqlite:{}", bench.dir.path().join("records.db").display())
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &std::process::Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn marker(finding: &FindingBuilder) -> String {
    Marker::new(JIRA_TEAM, &finding.id()).as_str().to_owned()
}

fn has_issue(bench: &Bench, finding: &FindingBuilder) -> bool {
    let m = marker(finding);
    bench.jira_markers().contains(&m)
}

/// Every message on `url` with its message attributes, made visible again afterwards.
async fn peek_with_attributes(bench: &Bench, url: &str) -> Vec<BTreeMap<String, String>> {
    let out = bench
        .sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .visibility_timeout(30)
        .send()
        .await
        .expect("ReceiveMessage on moto");
    let mut seen = Vec::new();
    for m in out.messages() {
        seen.push(
            m.message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
        );
        if let Some(handle) = m.receipt_handle() {
            bench
                .sqs
                .change_message_visibility()
                .queue_url(url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .expect("ChangeMessageVisibility on moto");
        }
    }
    seen
}

// ---- 1. replay -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_broken_template_get_their_tickets_after_the_fix_and_a_replay() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let team_file = bench.mappings.join("appsec.toml");
    let good_rule = std::fs::read_to_string(&team_file).expect("bench team file");
    std::fs::write(&team_file, RENDER_FAILS_WITHOUT_NOTE).expect("broken team file");
    let store = store_path(&bench);
    let via_queue = FindingBuilder::new("replay-to-queue");
    let via_process = FindingBuilder::new("replay-process");
    bench.send(&via_queue.body()).await;
    bench.send(&via_process.body()).await;

    let mut broken = bench.spawn("broken-template", &store, &[], &["--drain"]);
    broken.expect_success(Duration::from_secs(60)).await;
    assert_eq!(bench.jira_count(), 0, "no ticket can be rendered");
    let dead = bench.dlq_messages().await;
    assert_eq!(dead.len(), 2, "both findings are dead-lettered: {dead:?}");
    for d in &dead {
        assert_eq!(
            d.attributes.get("fb-error-kind").map(String::as_str),
            Some("render"),
            "{d:?}"
        );
    }

    // The operator fixes the mapping file.
    std::fs::write(&team_file, good_rule).expect("fixed team file");

    // A dry run reports and changes nothing.
    let dry = bench
        .command(
            &store,
            &[],
            &[
                "replay",
                "--from",
                &bench.dlq_url,
                "--to",
                &bench.queue_url,
                "--dry-run",
            ],
        )
        .await;
    assert!(dry.status.success(), "{}", describe(&dry));
    assert!(stdout(&dry).contains("dry run"), "{}", describe(&dry));
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (2, 0),
        "DLQ after --dry-run"
    );
    assert_eq!(
        bench.depth(&bench.queue_url).await,
        (0, 0),
        "queue after --dry-run"
    );
    let dry_process = bench
        .command(
            &store,
            &[],
            &["replay", "--from", &bench.dlq_url, "--process", "--dry-run"],
        )
        .await;
    assert!(dry_process.status.success(), "{}", describe(&dry_process));
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (2, 0),
        "DLQ after --process --dry-run"
    );
    assert_eq!(bench.jira_count(), 0, "a dry run creates no ticket");

    // Back to the source queue, one finding only.
    let to_queue = bench
        .command(
            &store,
            &[],
            &[
                "replay",
                "--from",
                &bench.dlq_url,
                "--to",
                &bench.queue_url,
                "--match",
                &format!("finding-id={}", via_queue.id()),
            ],
        )
        .await;
    assert!(to_queue.status.success(), "{}", describe(&to_queue));
    assert_eq!(bench.depth(&bench.dlq_url).await, (1, 0), "DLQ after --to");
    let resent = peek_with_attributes(&bench, &bench.queue_url).await;
    assert_eq!(resent.len(), 1, "one message back on the source queue");
    for name in resent[0].keys() {
        assert!(
            ![
                "fb-error-kind",
                "fb-error",
                "fb-original-message-id",
                "fb-receive-count"
            ]
            .contains(&name.as_str()),
            "the re-sent message still carries {name}: {:?}",
            resent[0]
        );
    }
    assert!(
        resent[0].contains_key("fb-first-failure"),
        "the first failure time travels with the message: {:?}",
        resent[0]
    );

    let mut fixed = bench.spawn("fixed-template", &store, &[], &["--drain"]);
    fixed.expect_success(Duration::from_secs(60)).await;
    assert!(
        has_issue(&bench, &via_queue),
        "the replayed finding's ticket"
    );
    assert!(
        !has_issue(&bench, &via_process),
        "the finding left in the DLQ has no ticket yet"
    );
    assert_eq!(bench.depth(&bench.queue_url).await, (0, 0), "queue drained");

    // The rest through the pipeline directly, no worker running.
    let process = bench
        .command(
            &store,
            &[],
            &["replay", "--from", &bench.dlq_url, "--process"],
        )
        .await;
    assert!(process.status.success(), "{}", describe(&process));
    bench.assert_one_jira_issue_per_finding(&[via_queue.id(), via_process.id()]);
    bench.assert_queues_empty().await;
}

// ---- 2. metrics and health -------------------------------------------------------------------

/// The sum of every sample of `name` whose labels include all of `labels`; `None` if none.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        if !labels
            .iter()
            .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")))
        {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints_tell_what_the_worker_did() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let store = store_path(&bench);
    let good: Vec<FindingBuilder> = (0..3)
        .map(|i| FindingBuilder::new(&format!("metrics-{i}")))
        .collect();
    for f in &good {
        bench.send(&f.body()).await;
    }
    bench
        .send(r#"{"detail-type": "Security Hub Findings - Imported", "detail": {"#)
        .await;

    let worker = bench.spawn("metrics", &store, &[], &[]);
    let addr = worker.http_addr(Duration::from_secs(30)).await;
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();

    // The counters move after the work: scrape until the run is fully accounted for.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let text = loop {
        let (status, text) = get(&client, &format!("{base}/metrics")).await;
        let settled = status == 200
            && sample(&text, names::TICKETS_CREATED, &[]) == Some(3.0)
            && sample(&text, names::MESSAGES_DELETED, &[]).unwrap_or(0.0) >= 4.0
            && sample(&text, names::DLQ_MOVED, &[]).unwrap_or(0.0) >= 1.0
            && sample(&text, names::WRITEBACKS, &[("result", "processed")]).unwrap_or(0.0) >= 3.0;
        if settled {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/metrics never accounted for 3 tickets, 4 deleted messages, 1 DLQ move and 3 \
             write-backs (status {status}):\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels)
            .unwrap_or_else(|| panic!("{name} {labels:?} missing from /metrics:\n{text}"))
    };
    assert_eq!(value(names::MESSAGES_RECEIVED, &[]), 4.0);
    assert_eq!(value(names::MESSAGES_DELETED, &[]), 4.0);
    assert_eq!(value(names::FINDINGS_RECEIVED, &[("schema", "asff")]), 3.0);
    assert_eq!(value(names::FINDINGS_ROUTED, &[("team", JIRA_TEAM)]), 3.0);
    assert_eq!(
        value(
            names::TICKETS_CREATED,
            &[("system", "jira"), ("team", JIRA_TEAM)]
        ),
        3.0
    );
    assert_eq!(value(names::DLQ_MOVED, &[("kind", "decode")]), 1.0);
    assert!(value(names::ERRORS, &[("kind", "decode")]) >= 1.0);
    assert_eq!(
        value(names::WRITEBACKS, &[("result", "processed")]),
        3.0,
        "one NOTIFIED write-back per finding"
    );
    let creates = value(
        &format!("{}_count", names::API_REQUEST_DURATION),
        &[("system", "jira"), ("operation", "create")],
    );
    assert_eq!(creates, 3.0, "one timed create call per ticket");
    let create_seconds = value(
        &format!("{}_sum", names::API_REQUEST_DURATION),
        &[("system", "jira"), ("operation", "create")],
    );
    assert!(
        create_seconds > 0.0 && create_seconds < 30.0,
        "three local create calls took {create_seconds} s in total"
    );
    assert_eq!(value(names::BUILD_INFO, &[]), 1.0);

    let (status, body) = get(&client, &format!("{base}/healthz")).await;
    assert_eq!(status, 200, "/healthz: {body}");
    let (status, body) = get(&client, &format!("{base}/readyz")).await;
    assert_eq!(status, 200, "/readyz: {body}");
    let ready: Value = serde_json::from_str(&body).expect("/readyz answers JSON");
    for component in ["mappings", "queue", "store"] {
        assert_eq!(ready[component], "ok", "/readyz {component}: {body}");
    }

    let addr_text = addr.to_string();
    let healthy = bench
        .command(
            &store,
            &[],
            &["healthcheck", "--http-addr", &addr_text, "--timeout", "5"],
        )
        .await;
    assert_eq!(healthy.status.code(), Some(0), "{}", describe(&healthy));

    // A port nobody listens on: bind one, then let it go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .to_string();
    let unhealthy = bench
        .command(
            &store,
            &[],
            &["healthcheck", "--http-addr", &closed, "--timeout", "2"],
        )
        .await;
    assert_eq!(unhealthy.status.code(), Some(1), "{}", describe(&unhealthy));
    drop(worker);
}

// ---- 3. secrets ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_even_at_trace_level_or_when_auth_fails() {
    let _timing = e2e::shared().await;
    let jira_token = "jira-token-Zq8VvX31mK";
    let sn_password = "sn-password-Pw7hT9cRe2";
    let webhook_secret = "webhook-secret-Lk4Jd0sQa6";
    let wrong_token = "wrong-jira-token-Yb5Nn2Gx";
    let wrong_password = "wrong-sn-password-Rt6Mm1Hc";
    let bench = Bench::start_with(
        Teams::JiraAndServiceNow,
        SimConfig {
            jira_token: jira_token.to_owned(),
            servicenow_password: sn_password.to_owned(),
            ..SimConfig::default()
        },
    )
    .await;
    let store = store_path(&bench);
    let logging = [
        ("RUST_LOG", "trace"),
        ("BRIDGE_LOG_FORMAT", "json"),
        ("JIRA_WEBHOOK_SECRET", webhook_secret),
    ];

    // A run with the right credentials: tickets in both systems, and a forged webhook.
    let first = FindingBuilder::new("secrets-right");
    bench.send(&first.body()).await;
    let mut env: Vec<(&str, &str)> = logging.to_vec();
    env.extend([
        ("JIRA_API_TOKEN", jira_token),
        ("SERVICENOW_PASSWORD", sn_password),
        // A long poll still open in moto when this process stops takes the next message with
        // it; a short visibility timeout gives that message back to the second run soon.
        ("BRIDGE_VISIBILITY_TIMEOUT", "2"),
    ]);
    let mut right = bench.spawn("right-credentials", &store, &env, &[]);
    let addr = right.http_addr(Duration::from_secs(30)).await;
    eventually(
        Duration::from_secs(60),
        "a Jira issue and a ServiceNow incident",
        || async { bench.jira_count() == 1 && bench.sim.state.servicenow_records().len() == 1 },
    )
    .await;
    let forged = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/jira"))
        .header("X-Hub-Signature", format!("sha256={}", "0".repeat(64)))
        .body(r#"{"webhookEvent":"jira:issue_updated"}"#)
        .send()
        .await
        .expect("POST /webhooks/jira");
    assert_eq!(
        forged.status().as_u16(),
        401,
        "a forged signature is refused"
    );
    right.terminate();
    right.expect_success(Duration::from_secs(30)).await;

    // A run with wrong credentials: both systems answer 401. That is the connection's fault,
    // not the finding's: the connections pause, /readyz says so, and the finding is parked on
    // the queue instead of dead-lettered.
    let second = FindingBuilder::new("secrets-wrong");
    bench.send(&second.body()).await;
    let mut env: Vec<(&str, &str)> = logging.to_vec();
    env.extend([
        ("JIRA_API_TOKEN", wrong_token),
        ("SERVICENOW_PASSWORD", wrong_password),
    ]);
    let mut wrong = bench.spawn("wrong-credentials", &store, &env, &[]);
    let addr = wrong.http_addr(Duration::from_secs(30)).await;
    let readyz = format!("http://{addr}/readyz");
    eventually(
        Duration::from_secs(60),
        "/readyz names the paused Jira connection",
        || async {
            match reqwest::get(&readyz).await {
                Ok(r) if r.status().as_u16() == 503 => r
                    .text()
                    .await
                    .is_ok_and(|t| t.contains("connection jira") && t.contains("401")),
                _ => false,
            }
        },
    )
    .await;
    eventually(
        Duration::from_secs(60),
        "the refused finding is parked",
        || async {
            wrong
                .log_text()
                .contains("parked while a connection or rule is paused")
        },
    )
    .await;
    wrong.terminate();
    wrong.expect_success(Duration::from_secs(30)).await;
    assert_eq!(bench.jira_count(), 1, "no ticket with a wrong token");
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (0, 0),
        "refused credentials dead-letter nothing"
    );

    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secrets = [
        jira_token.to_owned(),
        sn_password.to_owned(),
        webhook_secret.to_owned(),
        wrong_token.to_owned(),
        wrong_password.to_owned(),
        b64(&format!("sim@example.com:{jira_token}")),
        b64(&format!("sim:{sn_password}")),
        b64(&format!("sim@example.com:{wrong_token}")),
        b64(&format!("sim:{wrong_password}")),
    ];
    for process in [&right, &wrong] {
        let log = process.log_text();
        assert!(
            log.lines().count() > 20,
            "{}: trace logging produced almost nothing:\n{log}",
            process.name
        );
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "{}: the log contains the secret {secret:?}",
                process.name
            );
        }
        for (n, line) in log.lines().enumerate() {
            assert!(
                serde_json::from_str::<Value>(line).is_ok(),
                "{}: log line {} is not JSON: {line}",
                process.name,
                n + 1
            );
        }
    }
    assert!(
        wrong.log_text().contains("401"),
        "the auth failure is logged (with its status, not the credentials)"
    );
}

// ---- 4. SIGHUP -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_the_old_mappings_when_the_new_ones_are_broken_and_applies_valid_ones() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let store = store_path(&bench);
    let team_file = bench.mappings.join("appsec.toml");
    let worker = bench.spawn("reloaded", &store, &[], &[]);

    let before = FindingBuilder::new("before-reload");
    bench.send(&before.body()).await;
    eventually(Duration::from_secs(60), "the first ticket", || async {
        has_issue(&bench, &before)
    })
    .await;

    std::fs::write(&team_file, "team = \"appsec\"\n[[rules]\nname = ").expect("broken file");
    worker.signal("HUP");
    eventually(
        Duration::from_secs(20),
        "the log says the reload failed",
        || async { worker.log_text().contains("mapping reload failed") },
    )
    .await;
    let during = FindingBuilder::new("after-broken-reload");
    bench.send(&during.body()).await;
    eventually(
        Duration::from_secs(60),
        "a ticket from the old mappings after the failed reload",
        || async { has_issue(&bench, &during) },
    )
    .await;

    // Only CRITICAL findings now, to a project the old rule never used.
    std::fs::write(
        &team_file,
        r#"
team = "appsec"

[[rules]]
name = "critical-only"
order = 10
[rules.criteria]
SeverityLabel = [{ Value = "CRITICAL", Comparison = "EQUALS" }]
[rules.jira]
project = "HOT"
issue_type = "Bug"
summary = "{{ finding.title }}"
description = "{{ finding.description }}"
"#,
    )
    .expect("new team file");
    worker.signal("HUP");
    eventually(
        Duration::from_secs(20),
        "the log says the mappings were reloaded",
        || async { worker.log_text().contains("mapping files reloaded") },
    )
    .await;
    let critical = FindingBuilder::new("critical-after-reload").severity("CRITICAL");
    let low = FindingBuilder::new("low-after-reload").severity("LOW");
    bench.send(&low.body()).await;
    bench.send(&critical.body()).await;
    eventually(Duration::from_secs(60), "the new rule's ticket", || async {
        has_issue(&bench, &critical)
    })
    .await;
    eventually(Duration::from_secs(30), "the queue drained", || async {
        bench.queue_is_empty().await
    })
    .await;
    assert!(
        !has_issue(&bench, &low),
        "the old catch-all rule no longer applies"
    );
    let hot: Vec<String> = bench
        .sim
        .state
        .jira_issues()
        .into_iter()
        .filter(|i| i.labels.contains(&marker(&critical)))
        .map(|i| i.project)
        .collect();
    assert_eq!(hot, ["HOT"], "created by the new rule");
    assert_eq!(bench.jira_count(), 3);
    assert_eq!(
        bench.depth(&bench.dlq_url).await,
        (0, 0),
        "nothing dead-lettered"
    );
}

// ---- 5. payments (issue 8) -------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mapping copy directory");
    for entry in std::fs::read_dir(from).expect("shipped mappings directory") {
        let entry = entry.expect("directory entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy mapping file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medium_vulnerability_on_payments_becomes_a_critical_servicenow_incident() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let shipped = bench.dir.path().join("shipped-mappings");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"),
        &shipped,
    );
    let shipped_text = shipped.display().to_string();
    let store = store_path(&bench);
    let event = e2e::fixture_json("inspector-medium-payments.json");
    let finding_id = event["detail"]["findings"][0]["Id"]
        .as_str()
        .expect("fixture finding id")
        .to_owned();
    bench.send(&event.to_string()).await;

    let mut worker = bench.spawn(
        "payments",
        &store,
        &[("BRIDGE_MAPPINGS", &shipped_text)],
        &["--drain"],
    );
    worker.expect_success(Duration::from_secs(60)).await;

    let incidents = bench.sim.state.servicenow_records();
    assert_eq!(incidents.len(), 1, "one incident: {incidents:?}");
    let incident = &incidents[0];
    assert_eq!(incident.table, "incident");
    assert_eq!(
        incident.fields.get("urgency").map(String::as_str),
        Some("1")
    );
    assert!(
        incident
            .fields
            .get("short_description")
            .is_some_and(|s| s.starts_with("[CRITICAL] payments:")),
        "{:?}",
        incident.fields.get("short_description")
    );
    // The payments team's SLA: CRITICAL (after the override) is due a day after the finding was
    // first observed, as a UTC glide date-time.
    assert_eq!(
        incident.fields.get("due_date").map(String::as_str),
        Some("2026-11-28 22:40:11")
    );

    let overrides: Vec<Value> = bench
        .sim
        .state
        .writebacks()
        .into_iter()
        .map(|w| w.request)
        .filter(|r| r["Severity"]["Label"] == "CRITICAL")
        .collect();
    assert_eq!(
        overrides.len(),
        1,
        "one write-back raises the severity: {:?}",
        bench.sim.state.writebacks()
    );
    let request = &overrides[0];
    assert!(
        request.to_string().contains(&finding_id),
        "the write-back is for the payments finding: {request}"
    );
    let note = request["Note"]["Text"].as_str().unwrap_or_default();
    assert!(
        note.contains("payments"),
        "the note names the application: {request}"
    );
    assert_eq!(
        bench
            .sim
            .state
            .finding(&finding_id)
            .and_then(|f| f.severity_label)
            .as_deref(),
        Some("CRITICAL"),
        "Security Hub shows the raised severity"
    );
    bench.assert_queues_empty().await;
}

// ---- 6. sync --once --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_writes_a_done_ticket_back_as_resolved() {
    let _timing = e2e::shared().await;
    let bench = Bench::start(Teams::JiraOnly, Faults::none()).await;
    let store = store_path(&bench);
    let finding = FindingBuilder::new("sync-once");
    bench.send(&finding.body()).await;
    let mut worker = bench.spawn("before-sync", &store, &[], &["--drain"]);
    worker.expect_success(Duration::from_secs(60)).await;
    let issues = bench.sim.state.jira_issues();
    assert_eq!(issues.len(), 1);
    assert_eq!(
        bench.sim.state.finding_workflow(&finding.id()).as_deref(),
        Some("NOTIFIED")
    );

    bench
        .sim
        .state
        .transition_issue(&issues[0].key, "Done")
        .expect("the issue can be moved to Done");
    let out = bench.command(&store, &[], &["sync", "--once"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("sync prints a JSON report ({e}): {}", describe(&out)));
    assert_eq!(report["written"], 1, "{report}");
    assert_eq!(
        report["errors"].as_array().map(Vec::len),
        Some(0),
        "{report}"
    );
    assert_eq!(
        bench.sim.state.finding_workflow(&finding.id()).as_deref(),
        Some("RESOLVED")
    );

    // Nothing changed since: a second run writes nothing.
    let again = bench.command(&store, &[], &["sync", "--once"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let report: Value = serde_json::from_str(&stdout(&again)).expect("JSON report");
    assert_eq!(report["written"], 0, "{report}");
}
