//! Amazon Detective enrichment: when a finding involves an IAM user or role, ask Detective to
//! investigate that principal around the finding's time and add what it found to the ticket as a
//! comment.
//!
//! Enrichment is strictly best effort. It runs in the background after the ticket exists
//! ([`spawn_enrichment`]), so a slow, failing or unauthorised Detective never delays or blocks
//! ticket creation; every outcome is logged and counted in `findings_bridge_detective_total`.
//!
//! Detective's investigation API is asynchronous: `StartInvestigation` returns an id at once, the
//! analysis runs for minutes, `GetInvestigation` reports RUNNING / SUCCESSFUL / FAILED, and
//! `ListIndicators` pages through the indicators of compromise once it has finished. Polling is
//! bounded by [`DetectiveConfig::max_wait`] and every request by
//! [`DetectiveConfig::request_timeout`], so an enrichment task always ends.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_detective::Client;
use aws_sdk_detective::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_detective::operation::get_investigation::GetInvestigationOutput;
use aws_sdk_detective::primitives::DateTime as SmithyDateTime;
use aws_sdk_detective::types::{Indicator, IndicatorDetail, IndicatorType, Status};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::finding::Finding;
use crate::ticket::BoxFuture;

/// Environment variable naming the behavior graph; every Detective call is made against it.
pub const GRAPH_ARN_ENV: &str = "DETECTIVE_GRAPH_ARN";

/// `ListIndicators` accepts at most this many indicators a page.
pub const MAX_PAGE_SIZE: usize = 100;

/// Detective keeps up to a year of behavior data; a scope reaching further back only asks for
/// data that no longer exists (and risks a validation error), so scopes are clamped to it.
pub const RETENTION: TimeDelta = TimeDelta::days(365);

/// Pages read per indicator type even if Detective keeps handing out `NextToken`s, so a
/// misbehaving endpoint cannot keep an enrichment task alive forever.
const MAX_PAGES_PER_TYPE: usize = 10;

/// Longest value quoted from Detective in a comment bullet (user agents can be kilobytes).
const MAX_VALUE_CHARS: usize = 200;

/// Metric counting enrichment outcomes, labelled `outcome`.
pub const METRIC: &str = "findings_bridge_detective_total";

/// Why the Detective settings could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectiveConfigError {
    #[error(
        "{GRAPH_ARN_ENV}: `{0}` is not a Detective behavior graph ARN \
         (arn:aws:detective:REGION:ACCOUNT:graph:32 hex characters)"
    )]
    GraphArn(String),
}

/// A behavior graph ARN, checked against the pattern of Detective's API model
/// (`^arn:aws[-\w]{0,10}?:detective:[-\w]{2,20}?:\d{12}?:graph:[abcdef\d]{32}?$`), so a typo fails
/// at start-up rather than as a validation error on every finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphArn {
    arn: String,
    partition: String,
    region: String,
}

impl GraphArn {
    pub fn parse(arn: &str) -> Result<GraphArn, DetectiveConfigError> {
        let bad = || DetectiveConfigError::GraphArn(arn.to_owned());
        let parts: Vec<&str> = arn.split(':').collect();
        let [prefix, partition, service, region, account, kind, id] = parts[..] else {
            return Err(bad());
        };
        let word = |s: &str| {
            s.chars()
                .all(|c| c == '-' || c == '_' || c.is_alphanumeric())
        };
        let ok = prefix == "arn"
            && partition.starts_with("aws")
            && partition.len() <= 13
            && word(partition)
            && service == "detective"
            && (2..=20).contains(&region.len())
            && word(region)
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && kind == "graph"
            && id.len() == 32
            && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return Err(bad());
        }
        Ok(GraphArn {
            arn: arn.to_owned(),
            partition: partition.to_owned(),
            region: region.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }

    /// A behavior graph is regional: Detective must be called in the graph's region, whatever
    /// region the bridge itself runs in.
    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn partition(&self) -> &str {
        &self.partition
    }
}

/// The indicator types the bridge asks Detective for, in the order they appear in comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IndicatorKind {
    TtpObserved,
    ImpossibleTravel,
    FlaggedIpAddress,
    NewGeolocation,
    NewUserAgent,
    NewAso,
    RelatedFindingGroup,
    RelatedFinding,
}

impl IndicatorKind {
    /// What an analyst triaging a compromised principal looks at first: techniques, travel and
    /// threat-intel hits, new locations and clients, then the finding groups tying it together.
    /// New ASOs are left out by default: they mostly repeat new geolocations.
    pub const DEFAULT: [IndicatorKind; 7] = [
        IndicatorKind::TtpObserved,
        IndicatorKind::ImpossibleTravel,
        IndicatorKind::FlaggedIpAddress,
        IndicatorKind::NewGeolocation,
        IndicatorKind::NewUserAgent,
        IndicatorKind::RelatedFindingGroup,
        IndicatorKind::RelatedFinding,
    ];

    pub const ALL: [IndicatorKind; 8] = [
        IndicatorKind::TtpObserved,
        IndicatorKind::ImpossibleTravel,
        IndicatorKind::FlaggedIpAddress,
        IndicatorKind::NewGeolocation,
        IndicatorKind::NewUserAgent,
        IndicatorKind::NewAso,
        IndicatorKind::RelatedFindingGroup,
        IndicatorKind::RelatedFinding,
    ];

    /// Detective's `IndicatorType` value.
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::TtpObserved => "TTP_OBSERVED",
            IndicatorKind::ImpossibleTravel => "IMPOSSIBLE_TRAVEL",
            IndicatorKind::FlaggedIpAddress => "FLAGGED_IP_ADDRESS",
            IndicatorKind::NewGeolocation => "NEW_GEOLOCATION",
            IndicatorKind::NewUserAgent => "NEW_USER_AGENT",
            IndicatorKind::NewAso => "NEW_ASO",
            IndicatorKind::RelatedFindingGroup => "RELATED_FINDING_GROUP",
            IndicatorKind::RelatedFinding => "RELATED_FINDING",
        }
    }

    /// How the kind reads in a ticket comment.
    pub fn label(self) -> &'static str {
        match self {
            IndicatorKind::TtpObserved => "TTP observed",
            IndicatorKind::ImpossibleTravel => "Impossible travel",
            IndicatorKind::FlaggedIpAddress => "Flagged IP address",
            IndicatorKind::NewGeolocation => "New geolocation",
            IndicatorKind::NewUserAgent => "New user agent",
            IndicatorKind::NewAso => "New ASO",
            IndicatorKind::RelatedFindingGroup => "Related finding group",
            IndicatorKind::RelatedFinding => "Related finding",
        }
    }

    fn api(self) -> IndicatorType {
        IndicatorType::from(self.as_str())
    }

    fn from_api(t: &IndicatorType) -> Option<IndicatorKind> {
        IndicatorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == t.as_str())
    }
}

/// Settings of the enrichment. Only the graph ARN is required; the rest has defaults that suit
/// Detective's usual investigation time of a few minutes.
#[derive(Debug, Clone)]
pub struct DetectiveConfig {
    pub graph_arn: GraphArn,
    /// Pause between two `GetInvestigation` calls.
    pub poll_interval: Duration,
    /// How long an investigation may stay RUNNING before the enrichment gives up on it.
    pub max_wait: Duration,
    /// Added before the finding's first and after its last observation, so the investigation sees
    /// the activity leading up to and following what the finding reports.
    pub scope_padding: Duration,
    /// Bound on every single Detective request (the SDK itself sets none by default).
    pub request_timeout: Duration,
    pub indicator_types: Vec<IndicatorKind>,
    /// Indicators read per type; Detective pages them at most [`MAX_PAGE_SIZE`] at a time.
    pub max_indicators_per_type: usize,
    /// Indicator bullets in a comment before the rest is summarised as "and N more".
    pub max_comment_indicators: usize,
}

impl DetectiveConfig {
    pub fn new(graph_arn: GraphArn) -> DetectiveConfig {
        DetectiveConfig {
            graph_arn,
            poll_interval: Duration::from_secs(5),
            max_wait: Duration::from_secs(120),
            scope_padding: Duration::from_secs(24 * 3600),
            request_timeout: Duration::from_secs(20),
            indicator_types: IndicatorKind::DEFAULT.to_vec(),
            max_indicators_per_type: MAX_PAGE_SIZE,
            max_comment_indicators: 20,
        }
    }

    /// `Ok(None)` when `DETECTIVE_GRAPH_ARN` is unset or empty: enrichment is then off.
    pub fn from_env() -> Result<Option<DetectiveConfig>, DetectiveConfigError> {
        DetectiveConfig::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<DetectiveConfig>, DetectiveConfigError> {
        match lookup(GRAPH_ARN_ENV) {
            Some(arn) if !arn.trim().is_empty() => {
                Ok(Some(DetectiveConfig::new(GraphArn::parse(arn.trim())?)))
            }
            _ => Ok(None),
        }
    }
}

/// Why an enrichment produced no comment. `kind()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrichError {
    #[error(
        "Detective investigation {investigation_id} of {entity_arn} still running after {}s",
        waited.as_secs()
    )]
    StillRunning {
        entity_arn: String,
        investigation_id: String,
        waited: Duration,
    },
    #[error("Detective {operation} got no answer within {}s", after.as_secs())]
    RequestTimeout {
        operation: &'static str,
        after: Duration,
    },
    #[error("Detective {operation}: access denied: {message}")]
    AccessDenied {
        operation: &'static str,
        message: String,
    },
    #[error("Detective investigation {investigation_id} of {entity_arn} failed")]
    Failed {
        entity_arn: String,
        investigation_id: String,
    },
    #[error("Detective {operation}: {message}")]
    Api {
        operation: &'static str,
        message: String,
    },
}

impl EnrichError {
    /// `timeout` | `access_denied` | `failed` | `api`: stable values for metrics and alerts.
    pub fn kind(&self) -> &'static str {
        match self {
            EnrichError::StillRunning { .. } | EnrichError::RequestTimeout { .. } => "timeout",
            EnrichError::AccessDenied { .. } => "access_denied",
            EnrichError::Failed { .. } => "failed",
            EnrichError::Api { .. } => "api",
        }
    }
}

/// One indicator of compromise, ready for a comment: `text` is light Markdown in which every
/// value that came from Detective sits in a code span, so it cannot turn into links or markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndicatorSummary {
    pub kind: IndicatorKind,
    pub text: String,
}

/// What a finished investigation found, for the ticket comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvestigationSummary {
    pub entity_arn: String,
    pub investigation_id: String,
    /// INFORMATIONAL .. CRITICAL as Detective rates the investigation; `None` if it gave none.
    pub severity: Option<String>,
    /// SUCCESSFUL for every summary (RUNNING and FAILED end as errors), kept for the comment.
    pub status: String,
    /// ACTIVE / ARCHIVED.
    pub state: Option<String>,
    /// RFC 3339, UTC.
    pub scope_start: String,
    pub scope_end: String,
    pub indicators: Vec<IndicatorSummary>,
    /// Detective's console, on the investigation.
    pub console_url: String,
    /// Bullets shown before "and N more".
    pub max_bullets: usize,
}

impl InvestigationSummary {
    /// The ticket comment, in the light Markdown the ticket clients convert.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let severity = self.severity.as_deref().unwrap_or("not rated");
        let _ = writeln!(md, "### Amazon Detective investigation: {severity}");
        md.push('\n');
        let _ = writeln!(
            md,
            "Entity {} · scope {} to {}",
            code(&self.entity_arn),
            code(&self.scope_start),
            code(&self.scope_end)
        );
        let state = self.state.as_deref().unwrap_or("state unknown");
        let _ = writeln!(
            md,
            "Investigation {} ({}, {state}) · {} indicator{}",
            code(&self.investigation_id),
            self.status,
            self.indicators.len(),
            if self.indicators.len() == 1 { "" } else { "s" }
        );
        md.push('\n');
        if self.indicators.is_empty() {
            md.push_str("Detective reported no indicators of compromise in this scope.\n");
        } else {
            for indicator in self.indicators.iter().take(self.max_bullets) {
                let _ = writeln!(md, "- **{}:** {}", indicator.kind.label(), indicator.text);
            }
            let rest = self.indicators.len().saturating_sub(self.max_bullets);
            if rest > 0 {
                let _ = writeln!(md, "- and {rest} more");
            }
        }
        md.push('\n');
        let _ = writeln!(
            md,
            "[Open the investigation in the Detective console]({})",
            self.console_url
        );
        md
    }
}

/// Runs Detective investigations for findings.
pub struct Investigator {
    client: Client,
    cfg: DetectiveConfig,
}

impl Investigator {
    pub fn new(client: Client, cfg: DetectiveConfig) -> Investigator {
        Investigator { client, cfg }
    }

    /// A client from the shared AWS configuration (credentials chain, `AWS_ENDPOINT_URL` and
    /// `AWS_ENDPOINT_URL_DETECTIVE` overrides), pinned to the behavior graph's region.
    pub fn from_conf(sdk: &aws_config::SdkConfig, cfg: DetectiveConfig) -> Investigator {
        let conf = aws_sdk_detective::config::Builder::from(sdk)
            .region(aws_sdk_detective::config::Region::new(
                cfg.graph_arn.region().to_owned(),
            ))
            .build();
        Investigator::new(Client::from_conf(conf), cfg)
    }

    pub fn config(&self) -> &DetectiveConfig {
        &self.cfg
    }

    /// Investigates the first IAM principal of the finding. `Ok(None)` when the finding names no
    /// IAM user or role, or when all its activity lies outside what Detective still retains.
    ///
    /// One principal only: the result becomes one ticket comment, and the first principal is the
    /// one the finding is about (the resource ASFF and OCSF list first).
    pub async fn investigate(
        &self,
        finding: &Finding,
    ) -> Result<Option<InvestigationSummary>, EnrichError> {
        let Some(entity_arn) = investigable_entities(finding).into_iter().next() else {
            return Ok(None);
        };
        let Some(scope) = investigation_scope(finding, self.cfg.scope_padding, Utc::now()) else {
            tracing::debug!(
                finding_id = %finding.id,
                "finding activity is older than Detective's retention; not investigating"
            );
            return Ok(None);
        };
        let investigation_id = self.start(&entity_arn, &scope).await?;
        let detail = self.wait_for(&entity_arn, &investigation_id).await?;
        let indicators = self.indicators(&investigation_id).await?;
        Ok(Some(InvestigationSummary {
            console_url: console_url(&self.cfg.graph_arn, &investigation_id),
            entity_arn,
            severity: detail.severity().map(|s| s.as_str().to_owned()),
            status: detail
                .status()
                .map_or("SUCCESSFUL", |s| s.as_str())
                .to_owned(),
            state: detail.state().map(|s| s.as_str().to_owned()),
            scope_start: rfc3339(scope.start),
            scope_end: rfc3339(scope.end),
            indicators,
            investigation_id,
            max_bullets: self.cfg.max_comment_indicators,
        }))
    }

    async fn start(
        &self,
        entity_arn: &str,
        scope: &InvestigationScope,
    ) -> Result<String, EnrichError> {
        const OP: &str = "StartInvestigation";
        let request = self
            .client
            .start_investigation()
            .graph_arn(self.cfg.graph_arn.as_str())
            .entity_arn(entity_arn)
            .scope_start_time(SmithyDateTime::from_secs(scope.start.timestamp()))
            .scope_end_time(SmithyDateTime::from_secs(scope.end.timestamp()))
            .send();
        let out = self.bounded(OP, request).await?;
        match out.investigation_id() {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(EnrichError::Api {
                operation: OP,
                message: "the response carries no InvestigationId".to_owned(),
            }),
        }
    }

    /// Polls until the investigation leaves RUNNING, for at most `max_wait`. The status is read
    /// once more when the wait is up, so an investigation finishing during the last interval
    /// still counts.
    async fn wait_for(
        &self,
        entity_arn: &str,
        investigation_id: &str,
    ) -> Result<GetInvestigationOutput, EnrichError> {
        const OP: &str = "GetInvestigation";
        let started = Instant::now();
        let deadline = started + self.cfg.max_wait;
        loop {
            let request = self
                .client
                .get_investigation()
                .graph_arn(self.cfg.graph_arn.as_str())
                .investigation_id(investigation_id)
                .send();
            let out = self.bounded(OP, request).await?;
            match out.status() {
                Some(Status::Successful) => return Ok(out),
                Some(Status::Failed) => {
                    return Err(EnrichError::Failed {
                        entity_arn: entity_arn.to_owned(),
                        investigation_id: investigation_id.to_owned(),
                    });
                }
                // RUNNING, a status this SDK does not know yet, or none: keep waiting.
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(EnrichError::StillRunning {
                    entity_arn: entity_arn.to_owned(),
                    investigation_id: investigation_id.to_owned(),
                    waited: now - started,
                });
            }
            tokio::time::sleep_until(deadline.min(now + self.cfg.poll_interval)).await;
        }
    }

    /// Reads the wanted indicator types one after the other, each paged by `NextToken`, and
    /// drops exact repeats. The page size stays the same across the pages of one type because
    /// Detective wants every argument but the token unchanged when paging; the bound is applied
    /// to what comes back instead.
    async fn indicators(
        &self,
        investigation_id: &str,
    ) -> Result<Vec<IndicatorSummary>, EnrichError> {
        const OP: &str = "ListIndicators";
        let mut summaries = Vec::new();
        let mut seen = HashSet::new();
        let page_size = self.cfg.max_indicators_per_type.clamp(1, MAX_PAGE_SIZE);
        let page_size = i32::try_from(page_size).unwrap_or(100);
        for &kind in &self.cfg.indicator_types {
            let mut read = 0usize;
            let mut next_token: Option<String> = None;
            for _ in 0..MAX_PAGES_PER_TYPE {
                let remaining = self.cfg.max_indicators_per_type.saturating_sub(read);
                if remaining == 0 {
                    break;
                }
                let request = self
                    .client
                    .list_indicators()
                    .graph_arn(self.cfg.graph_arn.as_str())
                    .investigation_id(investigation_id)
                    .indicator_type(kind.api())
                    .max_results(page_size)
                    .set_next_token(next_token.clone())
                    .send();
                let out = self.bounded(OP, request).await?;
                for indicator in out.indicators().iter().take(remaining) {
                    read += 1;
                    if let Some(summary) = summarize(indicator)
                        && seen.insert((summary.kind, summary.text.clone()))
                    {
                        summaries.push(summary);
                    }
                }
                match out.next_token() {
                    Some(token) if !token.is_empty() && Some(token) != next_token.as_deref() => {
                        next_token = Some(token.to_owned());
                    }
                    _ => break,
                }
            }
        }
        Ok(summaries)
    }

    /// One Detective request, bounded in time and with its error classified.
    async fn bounded<T, E>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<T, EnrichError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match tokio::time::timeout(self.cfg.request_timeout, request).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(err)) => Err(classify(operation, err, self.cfg.request_timeout)),
            Err(_) => Err(EnrichError::RequestTimeout {
                operation,
                after: self.cfg.request_timeout,
            }),
        }
    }
}

fn classify<E>(operation: &'static str, err: SdkError<E>, timeout: Duration) -> EnrichError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let SdkError::TimeoutError(_) = err {
        return EnrichError::RequestTimeout {
            operation,
            after: timeout,
        };
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = err.code().unwrap_or_default().to_owned();
    // 403 without AccessDeniedException is a signature or credentials refusal: equally a
    // permissions problem for the operator to fix.
    if code == "AccessDeniedException" || status == Some(403) {
        let message = err.message().unwrap_or("no message").to_owned();
        return EnrichError::AccessDenied { operation, message };
    }
    let message = match status {
        // A response arrived: its status, code and message say it all (the SDK's own rendering
        // of an unmodelled error dumps the whole response).
        Some(status) => [
            Some(format!("HTTP {status}")),
            (!code.is_empty()).then_some(code),
            err.message().map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": "),
        // Nothing came back (connection refused, DNS, TLS): the error chain is the only clue.
        None => DisplayErrorContext(&err).to_string(),
    };
    EnrichError::Api { operation, message }
}

/// Starts the enrichment in the background and returns at once. On success `post` receives the
/// comment (the lifecycle posts it on the ticket); on failure `post` is not called. Either way
/// the outcome is logged and counted, never returned: enrichment must not affect ticket work.
pub fn spawn_enrichment<F>(
    investigator: Arc<Investigator>,
    finding: Finding,
    post: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnOnce(String) -> BoxFuture<'static, Result<(), String>> + Send + 'static,
{
    tokio::spawn(async move {
        let outcome = match investigator.investigate(&finding).await {
            Ok(None) => "not_applicable",
            Ok(Some(summary)) => match post(summary.to_markdown()).await {
                Ok(()) => {
                    tracing::info!(
                        finding_id = %finding.id,
                        investigation_id = %summary.investigation_id,
                        severity = summary.severity.as_deref().unwrap_or("none"),
                        indicators = summary.indicators.len(),
                        "Detective investigation added to the ticket"
                    );
                    "commented"
                }
                Err(error) => {
                    tracing::warn!(
                        finding_id = %finding.id,
                        investigation_id = %summary.investigation_id,
                        %error,
                        "could not add the Detective investigation to the ticket"
                    );
                    "comment_failed"
                }
            },
            Err(error) => {
                tracing::warn!(
                    finding_id = %finding.id,
                    kind = error.kind(),
                    %error,
                    "Detective enrichment gave up"
                );
                error.kind()
            }
        };
        metrics::counter!(METRIC, "outcome" => outcome).increment(1);
    })
}

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
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
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

/// Link to the investigation in Detective's console of the graph's region.
///
/// The console documents `#investigations` (the list) and profile links; the investigation
/// itself opens under `#investigations/{id}`.
pub fn console_url(graph: &GraphArn, investigation_id: &str) -> String {
    let region = graph.region();
    let host = match graph.partition() {
        "aws-cn" => "console.amazonaws.cn".to_owned(),
        "aws-us-gov" => "console.amazonaws-us-gov.com".to_owned(),
        _ => format!("{region}.console.aws.amazon.com"),
    };
    let id: String = url::form_urlencoded::byte_serialize(investigation_id.as_bytes()).collect();
    format!("https://{host}/detective/home?region={region}#investigations/{id}")
}

/// The comment line for one indicator, or `None` for types the bridge does not know.
fn summarize(indicator: &Indicator) -> Option<IndicatorSummary> {
    let kind = IndicatorKind::from_api(indicator.indicator_type()?)?;
    let detail = indicator.indicator_detail();
    let text = detail
        .and_then(|d| describe(kind, d))
        .unwrap_or_else(|| "no details".to_owned());
    Some(IndicatorSummary { kind, text })
}

fn describe(kind: IndicatorKind, d: &IndicatorDetail) -> Option<String> {
    let new_for_account = |yes: bool| {
        if yes {
            " (new for the whole account)"
        } else {
            ""
        }
    };
    Some(match kind {
        IndicatorKind::TtpObserved => {
            let t = d.ttps_observed_detail()?;
            let mut s = match (t.tactic(), t.technique()) {
                (Some(tactic), Some(technique)) => {
                    format!("{} / {}", code(tactic), code(technique))
                }
                (Some(one), None) | (None, Some(one)) => code(one),
                (None, None) => "unnamed technique".to_owned(),
            };
            if let Some(procedure) = t.procedure() {
                let _ = write!(s, " ({})", code(procedure));
            }
            if let Some(api) = t.api_name() {
                let _ = write!(
                    s,
                    " via {}: {} succeeded, {} failed",
                    code(api),
                    t.api_success_count(),
                    t.api_failure_count()
                );
            }
            if let Some(ip) = t.ip_address() {
                let _ = write!(s, " from {}", code(ip));
            }
            s
        }
        IndicatorKind::ImpossibleTravel => {
            let t = d.impossible_travel_detail()?;
            let end = |ip: Option<&str>, place: Option<&str>| match (ip, place) {
                (Some(ip), Some(place)) => format!("{} ({})", code(ip), code(place)),
                (Some(one), None) | (None, Some(one)) => code(one),
                (None, None) => "unknown".to_owned(),
            };
            let mut s = format!(
                "{} to {}",
                end(t.starting_ip_address(), t.starting_location()),
                end(t.ending_ip_address(), t.ending_location())
            );
            if let Some(hours) = t.hourly_time_delta() {
                let _ = write!(s, " within {hours} h");
            }
            s
        }
        IndicatorKind::FlaggedIpAddress => {
            let f = d.flagged_ip_address_detail()?;
            let mut s = code(f.ip_address().unwrap_or("unknown address"));
            if let Some(reason) = f.reason() {
                let _ = write!(s, " ({})", code(reason.as_str()));
            }
            s
        }
        IndicatorKind::NewGeolocation => {
            let g = d.new_geolocation_detail()?;
            let mut s = code(g.location().unwrap_or("unknown location"));
            if let Some(ip) = g.ip_address() {
                let _ = write!(s, " from {}", code(ip));
            }
            s.push_str(new_for_account(g.is_new_for_entire_account()));
            s
        }
        IndicatorKind::NewUserAgent => {
            let u = d.new_user_agent_detail()?;
            let mut s = code(u.user_agent().unwrap_or("unknown user agent"));
            s.push_str(new_for_account(u.is_new_for_entire_account()));
            s
        }
        IndicatorKind::NewAso => {
            let a = d.new_aso_detail()?;
            let mut s = code(a.aso().unwrap_or("unknown ASO"));
            s.push_str(new_for_account(a.is_new_for_entire_account()));
            s
        }
        IndicatorKind::RelatedFindingGroup => code(
            d.related_finding_group_detail()?
                .id()
                .unwrap_or("unknown group"),
        ),
        IndicatorKind::RelatedFinding => {
            let r = d.related_finding_detail()?;
            let mut s = code(r.arn().unwrap_or("unknown finding"));
            if let Some(kind) = r.r#type() {
                let _ = write!(s, " ({})", code(kind));
            }
            if let Some(ip) = r.ip_address() {
                let _ = write!(s, " from {}", code(ip));
            }
            s
        }
    })
}

/// A value from outside as an inline code span: backticks and line breaks cannot occur inside
/// one, so they are replaced, and very long values are cut.
fn code(value: &str) -> String {
    let mut clean: String = value
        .chars()
        .map(|c| match c {
            '`' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .take(MAX_VALUE_CHARS)
        .collect();
    if value.chars().count() > MAX_VALUE_CHARS {
        clean.push('…');
    }
    let clean = clean.trim();
    if clean.is_empty() {
        "`-`".to_owned()
    } else {
        format!("`{clean}`")
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str =
        "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef";

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
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
    fn graph_arns_are_checked_against_the_api_pattern() {
        let g = GraphArn::parse(GRAPH).unwrap();
        assert_eq!(g.region(), "us-east-1");
        assert_eq!(g.partition(), "aws");
        for bad in [
            "",
            "arn:aws:detective:us-east-1:111122223333:graph:0123",
            "arn:aws:detective:us-east-1:1111:graph:0123456789abcdef0123456789abcdef",
            "arn:aws:guardduty:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef",
            "arn:aws:detective:us-east-1:111122223333:graph:0123456789ABCDEF0123456789abcdef",
            "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef:x",
        ] {
            assert!(GraphArn::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_lookup_is_off_without_a_graph_and_rejects_a_bad_one() {
        assert!(DetectiveConfig::from_lookup(|_| None).unwrap().is_none());
        assert!(
            DetectiveConfig::from_lookup(|_| Some("  ".into()))
                .unwrap()
                .is_none()
        );
        let cfg =
            DetectiveConfig::from_lookup(|name| (name == GRAPH_ARN_ENV).then(|| GRAPH.into()))
                .unwrap()
                .unwrap();
        assert_eq!(cfg.graph_arn.as_str(), GRAPH);
        assert_eq!(cfg.poll_interval, Duration::from_secs(5));
        let err =
            DetectiveConfig::from_lookup(|_| Some("arn:aws:iam::1:role/x".into())).unwrap_err();
        assert!(err.to_string().contains(GRAPH_ARN_ENV), "{err}");
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

    #[test]
    fn values_from_detective_cannot_break_out_of_code_spans() {
        assert_eq!(
            code("curl`[x](https://evil)`\n"),
            "`curl'[x](https://evil)'`"
        );
        assert_eq!(code("  "), "`-`");
        let long = "a".repeat(500);
        assert_eq!(code(&long).chars().count(), MAX_VALUE_CHARS + 3);
    }

    #[test]
    fn console_links_follow_the_partition() {
        let aws = GraphArn::parse(GRAPH).unwrap();
        assert_eq!(
            console_url(&aws, "001"),
            "https://us-east-1.console.aws.amazon.com/detective/home?region=us-east-1#investigations/001"
        );
        let cn = GraphArn::parse(
            "arn:aws-cn:detective:cn-north-1:111122223333:graph:0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        assert!(
            console_url(&cn, "1")
                .starts_with("https://console.amazonaws.cn/detective/home?region=cn-north-1#")
        );
    }
}
