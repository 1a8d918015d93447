//! Structured logs and Prometheus metrics.
//!
//! Logs go to stdout: one JSON object per line when stdout is not a terminal (ECS → CloudWatch
//! Logs, where each line becomes one searchable event), readable text on a terminal. Span fields
//! are flattened into every line, so a `finding_id` set on the span that processes a message
//! appears on every line logged while processing it.
//!
//! Metrics: every series the bridge exports is named, with its HELP text, in [`names`] and recorded
//! through the typed helpers re-exported here, so a call site cannot misspell a name or invent a
//! label value. Operators alert on these names; renaming one is a breaking change. Label values
//! come from small fixed sets (the enums here, or `&'static str` labels of the finding model's
//! enums) or from configuration (team = mapping file's `team`, system = connection name), never
//! from finding text, so the number of series stays bounded.
//!
//! Every layer uses this module, so it imports none of them. `logging` sets up the logs,
//! `metrics` holds the recorder and the helpers, `labels` the fixed label values.

mod labels;
mod logging;
mod metrics;
pub mod names;

pub use self::labels::{ApiOutcome, DedupKind, ErrorKind, WebhookOutcome, WritebackResult};
pub use self::logging::{
    DEFAULT_LOG_FILTER, LOG_FORMAT_ENV, LogFormat, UnknownLogFormat, env_filter, init_logging,
    subscriber,
};
pub use self::metrics::*;
