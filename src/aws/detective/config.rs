//! The enrichment's settings: the behavior graph (`DETECTIVE_GRAPH_ARN`, checked at start-up),
//! the indicator types to ask for, and the bounds that keep every enrichment task short.

use std::time::Duration;

use aws_sdk_detective::types::IndicatorType;

use super::MAX_PAGE_SIZE;

/// Environment variable naming the behavior graph; every Detective call is made against it.
pub const GRAPH_ARN_ENV: &str = "DETECTIVE_GRAPH_ARN";

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

    pub(super) fn api(self) -> IndicatorType {
        IndicatorType::from(self.as_str())
    }

    pub(super) fn from_api(t: &IndicatorType) -> Option<IndicatorKind> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str =
        "arn:aws:detective:us-east-1:111122223333:graph:0123456789abcdef0123456789abcdef";

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
}
