//! Every environment variable of the bridge, read in one place: [`Config::from_env`] takes one
//! snapshot of the process environment when a command starts, and each section below turns its
//! variables into typed settings that the rest of the code receives. Nothing else reads the
//! environment, so a variable cannot mean two things in two places (as `JIRA_API_VERSION` once
//! did: the client inferred Data Center from a PAT while the bodies defaulted to Cloud).
//!
//! Flags are parsed by [`cli`] (clap, which also reads the `BRIDGE_*` variables that stand in
//! for a flag); a section takes the flag's value where both exist.

pub mod cli;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::aws::AwsTimeouts;
use crate::aws::detective::DetectiveConfig;
use crate::aws::secrets::SecretRef;
use crate::pipeline::lifecycle::MarkerSearch;
use crate::render::{JiraFlavor, RenderOptions};
use crate::runtime::telemetry::LogFormat;
use crate::sync::SyncConfig;
use crate::sync::webhooks::WebhookSecrets;
use crate::ticket::jira::{JiraApiVersion, JiraConfig};
use crate::ticket::servicenow::ServiceNowConfig;

/// Whether creates search for the marker first (see [`MarkerSearch`]).
pub const MARKER_SEARCH_ENV: &str = "BRIDGE_MARKER_SEARCH";

/// Stands in for a credential that Secrets Manager will give, so that every other setting is
/// checked before anything is read from AWS.
const FROM_SECRETS_MANAGER: &str = "(read from Secrets Manager)";

/// A snapshot of the environment, and the typed settings of each part of the bridge.
#[derive(Clone, Default)]
pub struct Config {
    vars: HashMap<String, String>,
}

/// Values may be secrets: never print them.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Config").field("set", &names).finish()
    }
}

/// The ticket connections as configured: each one's settings, and which credentials come from
/// Secrets Manager (their values in `jira` / `servicenow` are stand-ins until read).
#[derive(Debug, Clone)]
pub struct TicketSettings {
    pub jira: Option<JiraConfig>,
    pub servicenow: Option<ServiceNowConfig>,
    /// By the credential's variable (`JIRA_API_TOKEN`, …): the secret that holds it.
    pub secrets: BTreeMap<&'static str, SecretRef>,
    /// How often those are re-read (`BRIDGE_SECRETS_REFRESH`); `None`: only on refusal.
    pub secrets_refresh: Option<Duration>,
}

impl Config {
    /// Reads the process environment, once per command.
    pub fn from_env() -> Config {
        Config::from_pairs(std::env::vars())
    }

    /// A configuration from explicit variables (tests: the process environment is shared).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Config {
        Config {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name` as set (possibly empty); sections decide what empty means.
    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name)
    }

    /// Timeouts of every AWS call (`BRIDGE_AWS_TIMEOUT`, `BRIDGE_AWS_ATTEMPT_TIMEOUT`).
    pub fn aws(&self) -> anyhow::Result<AwsTimeouts> {
        AwsTimeouts::from_lookup(self.lookup())
    }

    /// The Jira and ServiceNow connections (`JIRA_*`, `SERVICENOW_*`, `*_SECRET_ARN`,
    /// `BRIDGE_SECRETS_REFRESH`), every setting checked; no credential is read from AWS here.
    pub fn tickets(&self) -> anyhow::Result<TicketSettings> {
        let secrets =
            crate::aws::secrets::secret_arns(self.lookup()).context("credential settings")?;
        let secrets_refresh = crate::aws::secrets::refresh_interval(self.lookup())?;
        let unread = |name: &str| {
            if secrets.contains_key(name) {
                Some(FROM_SECRETS_MANAGER.to_owned())
            } else {
                self.get(name)
            }
        };
        let jira = JiraConfig::from_lookup(unread).context("Jira configuration")?;
        let servicenow =
            ServiceNowConfig::from_lookup(unread).context("ServiceNow configuration")?;
        Ok(TicketSettings {
            jira,
            servicenow,
            secrets,
            secrets_refresh,
        })
    }

    /// The Jira bodies to render: `flag` (`render --jira-api-version`) if given; else the API the
    /// configured Jira connection speaks (`JIRA_API_VERSION`, or inferred from the credentials:
    /// a PAT alone is Data Center), so the bodies always match the client; else
    /// `JIRA_API_VERSION` alone (offline `render` needs no connection); else Cloud.
    pub fn render(&self, flag: Option<&str>) -> anyhow::Result<RenderOptions> {
        let version = match flag {
            Some(flag) => parse_api_version("--jira-api-version", flag)?,
            None => match self.tickets().ok().and_then(|t| t.jira) {
                Some(jira) => Some(jira.api_version),
                None => match self.get("JIRA_API_VERSION") {
                    Some(v) => parse_api_version("JIRA_API_VERSION", &v)?,
                    None => None,
                },
            },
        };
        Ok(RenderOptions {
            jira: match version {
                Some(JiraApiVersion::V2) => JiraFlavor::DataCenter,
                Some(JiraApiVersion::V3) | None => JiraFlavor::Cloud,
            },
        })
    }

    /// The status sync's settings (`BRIDGE_SYNC_INTERVAL`); `interval` wins when given (the
    /// `run` flag of the same name).
    pub fn sync(&self, interval: Option<Duration>) -> anyhow::Result<SyncConfig> {
        let mut config =
            SyncConfig::from_lookup(self.lookup()).context("status sync configuration")?;
        if let Some(interval) = interval {
            config.interval = interval;
        }
        Ok(config)
    }

    /// `BRIDGE_MARKER_SEARCH`: `auto` (the default: search before a create only where the store
    /// cannot vouch for the finding) or `always`.
    pub fn marker_search(&self) -> anyhow::Result<MarkerSearch> {
        match self.get(MARKER_SEARCH_ENV).as_deref().map(str::trim) {
            None | Some("") | Some("auto") => Ok(MarkerSearch::WhenUnvouched),
            Some("always") => Ok(MarkerSearch::Always),
            Some(other) => bail!("{MARKER_SEARCH_ENV}={other:?}: use auto or always"),
        }
    }

    /// Amazon Detective enrichment (`DETECTIVE_GRAPH_ARN`); `None` when off.
    pub fn detective(&self) -> anyhow::Result<Option<DetectiveConfig>> {
        DetectiveConfig::from_lookup(self.lookup()).context("Detective configuration")
    }

    /// The secrets that authenticate status webhooks (`JIRA_WEBHOOK_SECRET`, …).
    pub fn webhooks(&self) -> WebhookSecrets {
        WebhookSecrets::from_lookup(self.lookup())
    }

    /// `BRIDGE_LOG_FORMAT`, when no flag gives it.
    pub fn log_format(&self) -> anyhow::Result<LogFormat> {
        match self.get(crate::runtime::telemetry::LOG_FORMAT_ENV) {
            Some(value) => Ok(value.parse()?),
            None => Ok(LogFormat::Auto),
        }
    }

    /// How long the lifecycle's Security Hub write-backs wait to share a call
    /// (`BRIDGE_WRITEBACK_WINDOW`, milliseconds, default 200, at most 1000; zero: no batching).
    pub fn writeback_window(&self) -> anyhow::Result<Duration> {
        crate::aws::securityhub::batching::window_from_lookup(self.lookup())
    }

    /// This host's name (`HOSTNAME`, else `/etc/hostname`), for claim owners.
    pub fn hostname(&self) -> String {
        self.get("HOSTNAME")
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "localhost".to_owned())
    }
}

fn parse_api_version(name: &str, value: &str) -> anyhow::Result<Option<JiraApiVersion>> {
    Ok(match value.trim() {
        "" => None,
        "3" => Some(JiraApiVersion::V3),
        "2" => Some(JiraApiVersion::V2),
        other => bail!("{name}={other:?}: use 3 (Cloud) or 2 (Data Center)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(pairs: &[(&str, &str)], flag: Option<&str>) -> JiraFlavor {
        Config::from_pairs(pairs.iter().copied())
            .render(flag)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .jira
    }

    #[test]
    fn the_bodies_follow_the_api_the_jira_client_speaks() {
        let url = ("JIRA_URL", "https://jira.example.com");
        // The README's Data Center set-up: a PAT alone.
        assert_eq!(
            render(&[url, ("JIRA_PAT", "pat")], None),
            JiraFlavor::DataCenter
        );
        assert_eq!(
            render(
                &[url, ("JIRA_EMAIL", "a@b.c"), ("JIRA_API_TOKEN", "t")],
                None
            ),
            JiraFlavor::Cloud
        );
        // Explicit wins over inference, and the flag over everything.
        assert_eq!(
            render(&[url, ("JIRA_PAT", "p"), ("JIRA_API_VERSION", "3")], None),
            JiraFlavor::Cloud
        );
        assert_eq!(
            render(&[url, ("JIRA_PAT", "p")], Some("3")),
            JiraFlavor::Cloud
        );
        // Offline: no connection, the variable alone.
        assert_eq!(
            render(&[("JIRA_API_VERSION", "2")], None),
            JiraFlavor::DataCenter
        );
        assert_eq!(render(&[], None), JiraFlavor::Cloud);
        // A PAT whose token comes from Secrets Manager is still a PAT.
        assert_eq!(
            render(
                &[
                    url,
                    (
                        "JIRA_PAT_SECRET_ARN",
                        "arn:aws:secretsmanager:us-east-1:123456789012:secret:jira-pat-AbCdEf"
                    )
                ],
                None
            ),
            JiraFlavor::DataCenter
        );
    }

    #[test]
    fn a_bad_api_version_is_refused_with_its_name() {
        let err = Config::from_pairs([("JIRA_API_VERSION", "4")])
            .render(None)
            .unwrap_err();
        assert!(format!("{err:#}").contains("JIRA_API_VERSION"), "{err:#}");
        let err = Config::default().render(Some("1")).unwrap_err();
        assert!(format!("{err:#}").contains("--jira-api-version"), "{err:#}");
    }

    #[test]
    fn debug_names_variables_but_never_prints_values() {
        let config = Config::from_pairs([("JIRA_API_TOKEN", "s3cr3t-token")]);
        let shown = format!("{config:?}");
        assert!(shown.contains("JIRA_API_TOKEN"), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn marker_search_is_auto_unless_told_always() {
        let policy = |v: &str| Config::from_pairs([(MARKER_SEARCH_ENV, v)]).marker_search();
        assert_eq!(
            Config::default().marker_search().unwrap(),
            MarkerSearch::WhenUnvouched
        );
        assert_eq!(policy("auto").unwrap(), MarkerSearch::WhenUnvouched);
        assert_eq!(policy("always").unwrap(), MarkerSearch::Always);
        let err = policy("never").unwrap_err().to_string();
        assert!(err.contains(MARKER_SEARCH_ENV), "{err}");
    }

    #[test]
    fn writeback_window_defaults_to_200_ms_and_refuses_what_it_cannot_use() {
        use crate::aws::securityhub::batching::WRITEBACK_WINDOW_ENV;
        let window = |v: &str| Config::from_pairs([(WRITEBACK_WINDOW_ENV, v)]).writeback_window();
        assert_eq!(
            Config::default().writeback_window().unwrap(),
            Duration::from_millis(200)
        );
        assert_eq!(window("0").unwrap(), Duration::ZERO);
        assert_eq!(window("1000").unwrap(), Duration::from_secs(1));
        for bad in ["1001", "fast", "-5"] {
            let err = format!("{:#}", window(bad).unwrap_err());
            assert!(err.contains(WRITEBACK_WINDOW_ENV), "{bad}: {err}");
        }
    }
}
