//! A stateful stand-in for Jira (Cloud v3 and Data Center v2), the ServiceNow Table API and
//! Security Hub's write-back operations, for findings-bridge tests and demos.
//!
//! It remembers tickets, workflows and finding status, so tests assert what a user of those systems
//! would see, and it injects the failures the bridge has to survive (latency, 500s, 429 bursts,
//! rate limits, search lag, expired tokens, ambiguous creates: committed, then answered 502,
//! with a reset connection, or after the client's timeout; credentials refused for a while, and
//! Jira projects or ServiceNow tables that are gone — see [`Faults`]). It is a
//! dev-dependency only: never part of the production binary.
//!
//! One base URL serves everything (the paths never collide):
//!
//! | Service | Paths |
//! |---|---|
//! | Jira Cloud / DC | `/rest/api/{3,2}/issue[/{key}[/transitions\|/comment\|/properties/{property}\|/changelog]]` (`GET …/comment` pages with `orderBy=-created`; issue properties are set with the create's `properties`; `GET …/changelog` pages status changes by `startAt`, and `GET …/issue/{key}?expand=changelog` carries them too), `POST\|GET /rest/api/3/search/jql`, `/rest/api/2/search` (`/rest/api/3/search` is 410 Gone), `GET /rest/api/{3,2}/myself`, `GET /rest/api/{3,2}/project/{key}` |
//! | ServiceNow | `POST /oauth_token.do`, `/api/now/table/{table}[/{sys_id}]` (`sysparm_display_value=true` reads journal fields back as text) |
//! | Security Hub | `PATCH /findings/batchupdate`, `PATCH /findingsv2/batchupdatev2` |
//! | Operator | `GET /_sim/{tickets[?view=summary],writebacks,findings,stats,faults}`, `POST /_sim/faults`, `POST /_sim/jira/{key}/transition`, `POST /_sim/servicenow/{table}/{sys_id}/state`, `POST /_sim/findings/errors` |
//! | Set-up (read by `preflight`, see [`Setup`]) | `GET /rest/api/{3,2}/issue/createmeta/{project}/issuetypes[/{id}]`, `GET /rest/api/{3,2}/mypermissions`, `GET /rest/api/{3,2}/priority`; ServiceNow `sys_db_object`, `sys_dictionary`, `sys_user_group` through the Table API; `GET\|POST /_sim/setup` |
//!
//! Deliberate strictness (the real services are laxer, and a lax peer hides bridge bugs): JQL
//! outside the supported subset, unreadable ServiceNow query terms and `^OR`/`^NQ` answer 400;
//! Cloud `search/jql` without `fields` returns bare ids, like Jira Cloud. JQL dates are local
//! times of the Jira user's time zone ([`SimConfig::jira_time_zone`], UTC unless set), which
//! `/myself` reports, as in Jira.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use findings_bridge_sim::{SimConfig, Simulator};
//! let sim = Simulator::start(SimConfig::default(), "127.0.0.1:0").await?;
//! // point JIRA_URL, SERVICENOW_URL and AWS_ENDPOINT_URL_SECURITYHUB at sim.base_url ...
//! assert!(sim.state.jira_issues().is_empty());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod adf;
mod auth;
pub mod config;
mod conn;
mod faults;
mod jira;
mod jira_meta;
pub mod jql;
mod ops;
mod reply;
mod securityhub;
mod server;
mod servicenow;
pub mod setup;
pub mod snquery;
pub mod state;

// Risk acceptance note (issue 15): the Jira changelog.
mod jira_changelog;

pub use config::{AmbiguousMode, Faults, RefuseCredentials, SimConfig, System};
pub use server::{SimHandle, Simulator};
pub use setup::Setup;
pub use state::{
    FaultStats, FindingErrorKind, FindingState, JiraComment, JiraIssue, JournalEntry,
    ServiceNowRecord, SharedState, SimError, Stats, StatusChange, Writeback, WritebackApi,
};
