//! Amazon Detective enrichment: when a finding involves an IAM user or role, ask Detective to
//! investigate that principal around the finding's time and add what it found to the ticket as a
//! comment.
//!
//! Enrichment is strictly best effort. It runs in the background after the ticket exists
//! ([`spawn_enrichment`]), so a slow, failing or unauthorised Detective never delays or blocks
//! ticket creation; every outcome is logged and counted in `findings_bridge_detective_total`
//! ([`crate::runtime::telemetry::names::DETECTIVE_ENRICHMENTS`]).
//!
//! Detective's investigation API is asynchronous: `StartInvestigation` returns an id at once, the
//! analysis runs for minutes, `GetInvestigation` reports RUNNING / SUCCESSFUL / FAILED, and
//! `ListIndicators` pages through the indicators of compromise once it has finished. Polling is
//! bounded by [`DetectiveConfig::max_wait`] and every request by
//! [`DetectiveConfig::request_timeout`], so an enrichment task always ends.
//!
//! `config` holds the settings, `subject` picks the principal and time window of a finding,
//! `client` makes the API calls, `comment` turns the result into the ticket comment.

mod client;
mod comment;
mod config;
mod subject;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;

use crate::finding::Finding;
use crate::runtime::telemetry;
use crate::ticket::BoxFuture;

pub use client::Investigator;
pub use comment::{IndicatorSummary, InvestigationSummary, console_url};
pub use config::{DetectiveConfig, DetectiveConfigError, GRAPH_ARN_ENV, GraphArn, IndicatorKind};
pub use subject::{InvestigationScope, investigable_entities, investigation_scope};

/// `ListIndicators` accepts at most this many indicators a page.
pub const MAX_PAGE_SIZE: usize = 100;

/// Detective keeps up to a year of behavior data; a scope reaching further back only asks for
/// data that no longer exists (and risks a validation error), so scopes are clamped to it.
pub const RETENTION: TimeDelta = TimeDelta::days(365);

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
        telemetry::detective_enrichment(outcome);
    })
}
