//! The Detective API calls of one enrichment: start an investigation, poll it until it finishes,
//! page through its indicators; every request bounded in time and its error classified.

use std::collections::HashSet;

use aws_sdk_detective::Client;
use aws_sdk_detective::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_detective::operation::get_investigation::GetInvestigationOutput;
use aws_sdk_detective::primitives::DateTime as SmithyDateTime;
use aws_sdk_detective::types::Status;
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

use super::comment::{IndicatorSummary, InvestigationSummary, console_url, summarize};
use super::config::DetectiveConfig;
use super::subject::{InvestigationScope, investigable_entities, investigation_scope};
use super::{EnrichError, MAX_PAGE_SIZE};
use crate::finding::Finding;

/// Pages read per indicator type even if Detective keeps handing out `NextToken`s, so a
/// misbehaving endpoint cannot keep an enrichment task alive forever.
const MAX_PAGES_PER_TYPE: usize = 10;

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
            .interceptor(crate::aws::metered::CountRequests)
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

/// A Detective failure as [`crate::aws::errors`] reads it. A refused credential or permission
/// (also a bare 403: a signature refusal) is the operator's to fix, and said so.
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
    let failure = crate::aws::errors::classify(operation, &err);
    match failure.fault {
        crate::aws::errors::Fault::Refused => EnrichError::AccessDenied {
            operation,
            message: failure
                .service_message
                .unwrap_or_else(|| "no message".to_owned()),
        },
        _ => EnrichError::Api {
            operation,
            message: failure.detail,
        },
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
