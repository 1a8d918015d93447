//! The real [`FindingWriter`]: workflow state written back to Security Hub through
//! `aws-sdk-securityhub`.
//!
//! ASFF findings go through `BatchUpdateFindings`, OCSF findings through `BatchUpdateFindingsV2`.
//! Both calls apply ONE set of changes (status, severity, note) to up to 100 findings, so updates
//! are grouped by those changes. The bridge's notes name the ticket and therefore differ per
//! finding, which makes most requests carry a single finding; that is accepted on purpose: a
//! correct note on every finding matters more than packing requests, and the rate limit below
//! keeps the request count within Security Hub's quota either way.
//!
//! Failures are split three ways:
//! - the whole request failed transiently (throttling, 5xx, timeouts): the SDK's own standard
//!   retries run first (with its throttling backoff, and `x-amz-retry-after`), then this module
//!   retries the request with jittered exponential backoff, never sooner than the answer's
//!   `Retry-After`; when that budget is spent the write returns [`WriteError::Transient`] so the
//!   caller can try again later (every write is idempotent: it sets a state, it does not toggle one);
//! - the request was refused for good: access denied or bad credentials ([`WriteError::Refused`],
//!   the connection's fault), anything else ([`WriteError::Permanent`]);
//! - Security Hub accepted the request but listed some findings in `UnprocessedFindings`:
//!   retriable codes (concurrent updates, internal failures, conflicts, throttling) are sent again
//!   a bounded number of times, everything else lands in [`WriteReport::unprocessed`] and the log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_securityhub::Client;
use aws_sdk_securityhub::config::retry::RetryConfig;
use aws_sdk_securityhub::types::{
    AwsSecurityFindingIdentifier, NoteUpdate, OcsfFindingIdentifier, SeverityLabel, SeverityUpdate,
    WorkflowStatus as HubWorkflowStatus, WorkflowUpdate as HubWorkflowUpdate,
};
use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

use crate::aws::securityhub::{
    FindingWriter, NOTE_LIMIT, Unprocessed, WorkflowUpdate, WriteError, WriteReport,
};
use crate::finding::{Severity, WorkflowStatus, WriteBackId};
use crate::mapping::template::cut_to_limit;
use crate::ticket::BoxFuture;
use crate::ticket::http::{RateLimiter, TokioClock};

mod batches;
mod failures;
use batches::*;
use failures::*;

/// Both batch calls accept at most this many finding identifiers.
pub const MAX_FINDINGS_PER_CALL: usize = 100;

/// `Note.UpdatedBy` on ASFF findings, so analysts can tell the bridge's notes from people's.
pub const UPDATED_BY: &str = "findings-bridge";

/// Attempts the SDK makes per request (standard retry mode) before this module's own backoff
/// takes over. Kept small because the two layers multiply.
pub const SDK_MAX_ATTEMPTS: u32 = 3;

/// Unprocessed-finding codes that mean "try again", for both APIs. Everything else
/// (`FindingNotFound`, `InvalidInput`, `ResourceNotFoundException`, `ValidationException`,
/// `DuplicatedFindingIdentifier`, `FindingSizeExceeded`…) would fail the same way again.
const RETRIABLE_UNPROCESSED: &[&str] = &[
    "ConcurrentUpdateError",
    "InternalFailure",
    "InternalServerException",
    "ConflictException",
    "ThrottlingException",
    "TooManyRequestsException",
    "LimitExceededException",
];

/// How hard the writer pushes and how long it keeps trying.
#[derive(Debug, Clone, PartialEq)]
pub struct WritePolicy {
    /// Sustained requests per second across every clone of the writer (Security Hub: ~10).
    pub requests_per_second: f64,
    /// Requests that may go out at once after a quiet period (Security Hub: burst 30).
    pub burst: u32,
    /// Retries after the first try, both for a transiently failing request and for findings
    /// that came back with a retriable `UnprocessedFindings` code.
    pub retries: usize,
    /// First backoff delay; doubles each retry, with jitter.
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for WritePolicy {
    fn default() -> WritePolicy {
        WritePolicy {
            requests_per_second: 10.0,
            burst: 30,
            retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Client-side rate limit (the shared token bucket of `http`): keeps the bridge under Security
/// Hub's request quota so the quota is not spent on throttled requests and their retries.
fn request_rate_limit(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(
        sanitized_rate(per_second),
        burst,
        Arc::new(TokioClock::new()),
    )
}

/// A zero, negative or NaN rate would turn the limiter off or make it wait forever: fall back to
/// the default quota instead.
fn sanitized_rate(per_second: f64) -> f64 {
    if per_second.is_finite() && per_second > 0.0 {
        per_second
    } else {
        WritePolicy::default().requests_per_second
    }
}

/// Writes workflow updates to Security Hub. Clones share one rate limit.
#[derive(Debug, Clone)]
pub struct SecurityHubWriter {
    client: Client,
    policy: WritePolicy,
    limit: Arc<RateLimiter>,
}

impl SecurityHubWriter {
    /// Uses `client` exactly as configured (its endpoint, credentials and retry settings).
    pub fn new(client: Client) -> SecurityHubWriter {
        SecurityHubWriter::with_client_and_policy(client, WritePolicy::default())
    }

    /// Builds the client from the shared AWS configuration, so `AWS_ENDPOINT_URL_SECURITYHUB`,
    /// profiles and credentials work as everywhere else. Retries are forced to standard mode with
    /// [`SDK_MAX_ATTEMPTS`]; the configured backoff timing is kept.
    pub fn from_conf(sdk_config: &aws_config::SdkConfig) -> SecurityHubWriter {
        let configured = sdk_config
            .retry_config()
            .cloned()
            .unwrap_or_else(RetryConfig::standard);
        let retry = RetryConfig::standard()
            .with_max_attempts(SDK_MAX_ATTEMPTS)
            .with_initial_backoff(configured.initial_backoff())
            .with_max_backoff(configured.max_backoff());
        let config = aws_sdk_securityhub::config::Builder::from(sdk_config)
            .retry_config(retry)
            .interceptor(crate::aws::metered::CountRequests)
            .build();
        SecurityHubWriter::new(Client::from_conf(config))
    }

    /// Replaces the rate limit and retry budget (a fresh rate limit, shared by later clones).
    pub fn with_policy(self, policy: WritePolicy) -> SecurityHubWriter {
        SecurityHubWriter::with_client_and_policy(self.client, policy)
    }

    fn with_client_and_policy(client: Client, policy: WritePolicy) -> SecurityHubWriter {
        let limit = Arc::new(request_rate_limit(policy.requests_per_second, policy.burst));
        SecurityHubWriter {
            client,
            policy,
            limit,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.policy.min_delay)
            .with_max_delay(self.policy.max_delay)
            .with_max_times(self.policy.retries)
            .with_jitter()
            .with_jitter_seed(jitter_seed())
    }

    async fn write_all(&self, updates: Vec<WorkflowUpdate>) -> Result<WriteReport, WriteError> {
        let plan = plan(updates);
        let mut report = WriteReport {
            processed: plan.nothing_to_write,
            unprocessed: Vec::new(),
        };
        for batch in plan.batches {
            self.send_batch(&batch.changes, batch.entries, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Sends one batch, resending the findings Security Hub reported with a retriable code.
    async fn send_batch(
        &self,
        changes: &Changes,
        entries: Vec<Entry>,
        report: &mut WriteReport,
    ) -> Result<(), WriteError> {
        let mut pending = entries;
        let mut delays = self.backoff().build();
        loop {
            let rejected = match self.request_with_retries(changes, &pending).await {
                Ok(rejected) => rejected,
                Err(RequestFailure::BatchRejected { code, message }) => {
                    for entry in &pending {
                        record_unprocessed(report, &entry.finding_id, &code, &message);
                    }
                    return Ok(());
                }
                Err(RequestFailure::Transient { message, .. }) => {
                    return Err(WriteError::Transient(message));
                }
                Err(RequestFailure::Refused(message)) => {
                    return Err(WriteError::Refused(message));
                }
                Err(RequestFailure::Permanent(message)) => {
                    return Err(WriteError::Permanent(message));
                }
            };

            let by_target: HashMap<&Target, &Entry> =
                pending.iter().map(|e| (&e.target, e)).collect();
            let mut retry = Vec::new();
            let mut answered = 0usize;
            for r in rejected {
                answered += 1;
                let entry = r.target.as_ref().and_then(|t| by_target.get(t).copied());
                match entry {
                    Some(entry) => {
                        if RETRIABLE_UNPROCESSED.contains(&r.code.as_str()) {
                            retry.push((entry.clone(), r.code, r.message));
                        } else {
                            record_unprocessed(report, &entry.finding_id, &r.code, &r.message);
                        }
                    }
                    // An entry we cannot match to a request entry cannot be resent; it is
                    // still reported so nothing disappears silently.
                    None => record_unprocessed(report, &r.fallback_id, &r.code, &r.message),
                }
            }
            report.processed += pending.len().saturating_sub(answered);

            if retry.is_empty() {
                return Ok(());
            }
            match delays.next() {
                Some(delay) => {
                    tracing::debug!(
                        findings = retry.len(),
                        delay_ms = delay.as_millis() as u64,
                        "security hub asked to retry some findings"
                    );
                    tokio::time::sleep(delay).await;
                    pending = retry.into_iter().map(|(entry, _, _)| entry).collect();
                }
                None => {
                    for (entry, code, message) in retry {
                        record_unprocessed(report, &entry.finding_id, &code, &message);
                    }
                    return Ok(());
                }
            }
        }
    }

    /// One request, retried while it fails transiently (on top of the SDK's own attempts, which
    /// do not treat a bare HTTP 429 as throttling).
    async fn request_with_retries(
        &self,
        changes: &Changes,
        pending: &[Entry],
    ) -> Result<Vec<Rejected>, RequestFailure> {
        let attempt = || async {
            self.limit.acquire().await;
            self.request(changes, pending).await
        };
        attempt
            .retry(self.backoff())
            .when(|failure: &RequestFailure| matches!(failure, RequestFailure::Transient { .. }))
            .adjust(wait_as_asked)
            .notify(|failure: &RequestFailure, delay: Duration| {
                tracing::warn!(
                    error = %failure,
                    delay_ms = delay.as_millis() as u64,
                    "security hub write-back failed; retrying"
                );
            })
            .await
    }

    async fn request(
        &self,
        changes: &Changes,
        pending: &[Entry],
    ) -> Result<Vec<Rejected>, RequestFailure> {
        match changes.addressing {
            Addressing::Asff => self.batch_update_findings(changes, pending).await,
            Addressing::OcsfMetadataUid | Addressing::OcsfIdentifiers => {
                self.batch_update_findings_v2(changes, pending).await
            }
        }
    }

    async fn batch_update_findings(
        &self,
        changes: &Changes,
        pending: &[Entry],
    ) -> Result<Vec<Rejected>, RequestFailure> {
        let identifiers = pending
            .iter()
            .filter_map(|e| match &e.target {
                Target::Asff { id, product_arn } => Some(
                    AwsSecurityFindingIdentifier::builder()
                        .id(id)
                        .product_arn(product_arn)
                        .build(),
                ),
                _ => None,
            })
            .collect();
        let mut request = self
            .client
            .batch_update_findings()
            .set_finding_identifiers(Some(identifiers));
        if let Some(status) = changes.status {
            request = request.workflow(
                HubWorkflowUpdate::builder()
                    .status(HubWorkflowStatus::from(status.as_str()))
                    .build(),
            );
        }
        if let Some(severity) = changes.severity {
            request = request.severity(
                SeverityUpdate::builder()
                    .label(SeverityLabel::from(severity.as_str()))
                    .build(),
            );
        }
        if !changes.note.is_empty() {
            request = request.note(
                NoteUpdate::builder()
                    .text(&changes.note)
                    .updated_by(UPDATED_BY)
                    .build(),
            );
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify("BatchUpdateFindings", e))?;
        Ok(output
            .unprocessed_findings()
            .iter()
            .map(|u| {
                let identifier = u.finding_identifier();
                let target = identifier.and_then(|i| {
                    Some(Target::Asff {
                        id: i.id()?.to_owned(),
                        product_arn: i.product_arn()?.to_owned(),
                    })
                });
                Rejected {
                    target,
                    fallback_id: identifier
                        .and_then(|i| i.id())
                        .unwrap_or("(no identifier)")
                        .to_owned(),
                    code: u.error_code().unwrap_or("Unknown").to_owned(),
                    message: u.error_message().unwrap_or_default().to_owned(),
                }
            })
            .collect())
    }

    async fn batch_update_findings_v2(
        &self,
        changes: &Changes,
        pending: &[Entry],
    ) -> Result<Vec<Rejected>, RequestFailure> {
        let mut request = self.client.batch_update_findings_v2();
        // One request never mixes the two ways of addressing a finding: the API takes either.
        match changes.addressing {
            Addressing::OcsfMetadataUid => {
                let uids = pending
                    .iter()
                    .filter_map(|e| match &e.target {
                        Target::OcsfMetadataUid(uid) => Some(uid.clone()),
                        _ => None,
                    })
                    .collect();
                request = request.set_metadata_uids(Some(uids));
            }
            _ => {
                let identifiers = pending
                    .iter()
                    .filter_map(|e| match &e.target {
                        Target::OcsfIdentifiers {
                            cloud_account_uid,
                            finding_info_uid,
                            metadata_product_uid,
                        } => Some(
                            OcsfFindingIdentifier::builder()
                                .cloud_account_uid(cloud_account_uid)
                                .finding_info_uid(finding_info_uid)
                                .metadata_product_uid(metadata_product_uid)
                                .build(),
                        ),
                        _ => None,
                    })
                    .collect();
                request = request.set_finding_identifiers(Some(identifiers));
            }
        }
        if let Some(status) = changes.status {
            request = request.status_id(status.ocsf_status_id());
        }
        if let Some(severity) = changes.severity {
            request = request.severity_id(severity.ocsf_id());
        }
        if !changes.note.is_empty() {
            request = request.comment(&changes.note);
        }
        let output = request
            .send()
            .await
            .map_err(|e| classify("BatchUpdateFindingsV2", e))?;
        Ok(output
            .unprocessed_findings()
            .iter()
            .map(|u| {
                let identifier = u.finding_identifier().and_then(|i| {
                    Some(Target::OcsfIdentifiers {
                        cloud_account_uid: i.cloud_account_uid()?.to_owned(),
                        finding_info_uid: i.finding_info_uid()?.to_owned(),
                        metadata_product_uid: i.metadata_product_uid()?.to_owned(),
                    })
                });
                let target = u
                    .metadata_uid()
                    .map(|uid| Target::OcsfMetadataUid(uid.to_owned()))
                    .or(identifier);
                let fallback_id = u
                    .metadata_uid()
                    .or_else(|| u.finding_identifier().and_then(|i| i.finding_info_uid()))
                    .unwrap_or("(no identifier)")
                    .to_owned();
                Rejected {
                    target,
                    fallback_id,
                    code: u
                        .error_code()
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_else(|| "Unknown".to_owned()),
                    message: u.error_message().unwrap_or_default().to_owned(),
                }
            })
            .collect())
    }
}

impl FindingWriter for SecurityHubWriter {
    fn write(
        &self,
        updates: Vec<WorkflowUpdate>,
    ) -> BoxFuture<'_, Result<WriteReport, WriteError>> {
        Box::pin(self.write_all(updates))
    }
}

fn record_unprocessed(report: &mut WriteReport, finding_id: &str, code: &str, message: &str) {
    tracing::warn!(
        finding_id,
        code,
        message,
        "security hub did not update the finding"
    );
    report.unprocessed.push(Unprocessed {
        finding_id: finding_id.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
    });
}

/// backon without its `std` feature seeds jitter with a constant, which would make every replica
/// retry in lockstep; a seed from the clock and process id spreads them.
fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asff(n: usize, note: &str) -> WorkflowUpdate {
        WorkflowUpdate::new(
            WriteBackId::Asff {
                id: format!("arn:finding/{n}"),
                product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
            },
            format!("f-{n}"),
            Some(WorkflowStatus::Notified),
            None,
            note,
        )
    }

    fn ocsf(n: usize, metadata_uid: Option<&str>) -> WorkflowUpdate {
        WorkflowUpdate::new(
            WriteBackId::Ocsf {
                metadata_uid: metadata_uid.map(str::to_owned),
                cloud_account_uid: "111122223333".into(),
                finding_info_uid: format!("uid-{n}"),
                metadata_product_uid: "aws/securityhub".into(),
            },
            format!("o-{n}"),
            Some(WorkflowStatus::Resolved),
            None,
            "closed",
        )
    }

    #[test]
    fn same_changes_share_requests_of_at_most_one_hundred() {
        let updates = (0..250).map(|n| asff(n, "Ticket PAY-1")).collect();
        let plan = plan(updates);
        let sizes: Vec<usize> = plan.batches.iter().map(|b| b.entries.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert_eq!(plan.batches[0].entries[0].finding_id, "f-0");
        assert_eq!(plan.batches[2].entries[49].finding_id, "f-249");
    }

    #[test]
    fn different_notes_and_addressing_never_share_a_request() {
        let updates = vec![
            asff(1, "Ticket PAY-1"),
            asff(2, "Ticket PAY-2"),
            asff(3, "Ticket PAY-1"),
            ocsf(4, Some("meta-4")),
            ocsf(5, None),
            ocsf(6, Some("")),
        ];
        let plan = plan(updates);
        let shape: Vec<(Addressing, Vec<&str>)> = plan
            .batches
            .iter()
            .map(|b| {
                (
                    b.changes.addressing,
                    b.entries.iter().map(|e| e.finding_id.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (Addressing::Asff, vec!["f-1", "f-3"]),
                (Addressing::Asff, vec!["f-2"]),
                (Addressing::OcsfMetadataUid, vec!["o-4"]),
                // An empty metadata uid cannot address anything: fall back to identifiers.
                (Addressing::OcsfIdentifiers, vec!["o-5", "o-6"]),
            ]
        );
    }

    #[test]
    fn the_last_update_of_a_finding_wins_and_empty_updates_are_not_sent() {
        let mut empty = asff(9, "");
        empty.status = None;
        let mut later = asff(1, "Ticket PAY-1 done");
        later.status = Some(WorkflowStatus::Resolved);
        let plan = plan(vec![asff(1, "Ticket PAY-1"), empty, later]);
        assert_eq!(plan.batches.len(), 1);
        assert_eq!(
            plan.batches[0].changes.status,
            Some(WorkflowStatus::Resolved)
        );
        assert_eq!(plan.batches[0].changes.note, "Ticket PAY-1 done");
        assert_eq!(plan.nothing_to_write, 2);
    }

    #[test]
    fn notes_built_without_the_constructor_are_still_cut() {
        let mut update = asff(1, "short");
        update.note = "é".repeat(5000);
        let plan = plan(vec![update]);
        let note = &plan.batches[0].changes.note;
        assert_eq!(note.chars().count(), NOTE_LIMIT);
        assert!(note.ends_with(crate::mapping::template::TRUNCATION_MARK));
    }

    #[test]
    fn a_throttled_answer_is_retried_no_sooner_than_its_retry_after() {
        use aws_sdk_securityhub::config::http::HttpResponse;
        use aws_sdk_securityhub::error::{ErrorMetadata, SdkError};
        use aws_sdk_securityhub::operation::batch_update_findings::BatchUpdateFindingsError;

        let throttled = |retry_after: Option<&'static str>| {
            let mut raw = HttpResponse::new(429.try_into().expect("status"), "".into());
            if let Some(value) = retry_after {
                raw.headers_mut().insert("retry-after", value);
            }
            let error = BatchUpdateFindingsError::generic(
                ErrorMetadata::builder()
                    .code("TooManyRequestsException")
                    .message("Rate exceeded")
                    .build(),
            );
            classify("BatchUpdateFindings", SdkError::service_error(error, raw))
        };
        let asked = throttled(Some("2"));
        assert!(
            matches!(asked, RequestFailure::Transient { wait: Some(w), .. } if w == Duration::from_secs(2)),
            "{asked:?}"
        );
        let ms = Duration::from_millis;
        assert_eq!(wait_as_asked(&asked, Some(ms(200))), Some(ms(2000)));
        assert_eq!(wait_as_asked(&asked, Some(ms(4000))), Some(ms(4000)));
        assert_eq!(wait_as_asked(&asked, None), None, "the budget still ends");

        let unasked = throttled(None);
        assert!(matches!(
            unasked,
            RequestFailure::Transient { wait: None, .. }
        ));
        assert_eq!(wait_as_asked(&unasked, Some(ms(200))), Some(ms(200)));
    }

    // Paused tokio time: the limiter's clock and sleeps are virtual, so what is measured is the
    // waiting the limiter asks for, not how busy the machine is.
    #[tokio::test(start_paused = true)]
    async fn rate_limit_lets_a_burst_through_then_paces_requests() {
        let limit = request_rate_limit(100.0, 5);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limit.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst does not wait");
        for _ in 0..5 {
            limit.acquire().await;
        }
        // Five more tokens at 100/s take 50 ms (to the limiter's rounding).
        let paced = start.elapsed();
        assert!(
            paced >= Duration::from_millis(49) && paced <= Duration::from_millis(51),
            "paced part took {paced:?}"
        );
    }

    #[tokio::test]
    async fn a_nonsense_rate_falls_back_to_the_default_instead_of_hanging() {
        assert_eq!(sanitized_rate(f64::NAN), 10.0);
        assert_eq!(sanitized_rate(0.0), 10.0);
        let limit = request_rate_limit(f64::NAN, 0);
        tokio::time::timeout(Duration::from_secs(1), limit.acquire())
            .await
            .unwrap_or_else(|_| panic!("first request must not wait"));
    }
}
