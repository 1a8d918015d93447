//! Structured logs on stdout: one flat JSON object per line when stdout is not a terminal (ECS →
//! CloudWatch Logs), readable text on a terminal; `RUST_LOG` filters, `BRIDGE_LOG_FORMAT` chooses.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

/// Filter used when `RUST_LOG` is unset or invalid. The AWS SDK and HTTP stacks log connection
/// chatter at `info`; at the volume of one SQS poll every 20 s per replica that drowns the
/// bridge's own lines, so they are held to `warn` unless `RUST_LOG` asks for more.
pub const DEFAULT_LOG_FILTER: &str = "info,findings_bridge=info,aws_config=warn,\
aws_smithy_runtime=warn,aws_smithy_runtime_api=warn,aws_sdk_sqs=warn,aws_sdk_dynamodb=warn,\
hyper=warn,hyper_util=warn,h2=warn,rustls=warn,reqwest=warn";

/// Environment variable that selects the log format (`json`, `pretty`, `auto`).
pub const LOG_FORMAT_ENV: &str = "BRIDGE_LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal (containers), pretty text when it is (a developer).
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text, coloured when stdout is a terminal.
    Pretty,
}

/// `BRIDGE_LOG_FORMAT` held a value the bridge does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected json, pretty or auto")]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(LogFormat::Auto),
            "json" => Ok(LogFormat::Json),
            "pretty" | "text" => Ok(LogFormat::Pretty),
            _ => Err(UnknownLogFormat(s.to_owned())),
        }
    }
}

impl LogFormat {
    /// Decides `Auto` by looking at stdout, where [`init_logging`] writes.
    pub fn resolve(self) -> LogFormat {
        match self {
            LogFormat::Auto if std::io::stdout().is_terminal() => LogFormat::Pretty,
            LogFormat::Auto => LogFormat::Json,
            other => other,
        }
    }
}

/// The filter from `RUST_LOG` (`directives`), or [`DEFAULT_LOG_FILTER`] when it is unset. An
/// invalid `RUST_LOG` also falls back to the default, and the second value says why so the caller
/// can log it once logging is up.
pub fn env_filter(directives: Option<&str>) -> (EnvFilter, Option<String>) {
    match directives {
        Some(directives) if !directives.trim().is_empty() => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(err) => (
                EnvFilter::new(DEFAULT_LOG_FILTER),
                Some(format!(
                    "RUST_LOG={directives:?} is invalid ({err}); using the default filter"
                )),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_LOG_FILTER), None),
    }
}

/// Installs the process-wide subscriber writing to stdout, filtered by `directives` (`RUST_LOG`),
/// coloured only on a terminal and unless `no_color` (`NO_COLOR`). Calling it again (tests, or a
/// CLI path that initialises twice) keeps the first subscriber and does nothing else.
pub fn init_logging(format: LogFormat, directives: Option<&str>, no_color: bool) {
    let format = format.resolve();
    let ansi = format == LogFormat::Pretty && std::io::stdout().is_terminal() && !no_color;
    let (filter, filter_problem) = env_filter(directives);
    let subscriber = build_subscriber(format, filter, std::io::stdout, ansi);
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(problem) = filter_problem
    {
        tracing::warn!("{problem}");
    }
}

/// A subscriber in the bridge's format writing to `writer`, never coloured. For tests and for
/// embedding with `tracing::subscriber::with_default`; `Auto` resolves against stdout.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    build_subscriber(format.resolve(), filter, writer, false)
}

fn build_subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer)
                    .with_ansi(ansi)
                    .with_target(true),
            ),
        ),
        LogFormat::Json | LogFormat::Auto => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .with_writer(writer),
            ),
        ),
    }
}

/// One flat JSON object per event: span fields from the outermost span inwards, then the event's
/// own fields, then `timestamp`, `level`, `target` (which always win, so a field called `level`
/// cannot forge one). tracing-subscriber's own JSON format nests span fields under `span` and
/// `spans`, which CloudWatch Logs Insights cannot filter on as easily as a top-level key.
struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields)
                {
                    line.extend(map);
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".to_owned(), Value::from(name));
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        line.insert(
            "timestamp".to_owned(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        line.insert("level".to_owned(), Value::from(meta.level().as_str()));
        line.insert("target".to_owned(), Value::from(meta.target()));
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// Keeps numbers and booleans typed in the JSON line, so Logs Insights can compare them.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = serde_json::Number::from_f64(value)
            .map(Value::Number)
            .unwrap_or_else(|| Value::from(value.to_string()));
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.put(field, Value::from(text));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}
