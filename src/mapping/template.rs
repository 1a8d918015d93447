//! Field templates: minijinja with strict undefined and a fuel limit, compiled when the mapping
//! files load so a broken template fails `check` and start-up, never a finding at 3 a.m.
//!
//! Each template renders one field value. Finding text is passed in as *data*: a title that
//! contains `{{ 7*7 }}` is printed as those characters, never evaluated, because templates are only
//! ever compiled from mapping files.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// Instructions one template render may execute. Ample for any field template a person writes
/// (a few hundred), small enough that a `{% for %}` over a huge list cannot stall the worker.
pub const FUEL: u64 = 50_000;

/// Marker appended where a rendered value was cut to fit a target's limit.
pub const TRUNCATION_MARK: &str = "… [truncated]";

/// A field template: either plain text (no template syntax, rendered for free) or a compiled
/// minijinja template registered in the shared [`TemplateEngine`] under `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    Literal(String),
    Compiled {
        /// Unique name, also used in error messages: `file:line (field)`.
        name: Arc<str>,
        source: Arc<str>,
    },
}

impl Template {
    /// The template text as written in the mapping file.
    pub fn source(&self) -> &str {
        match self {
            Template::Literal(s) => s,
            Template::Compiled { source, .. } => source,
        }
    }
}

/// A template failed to compile or to render. `location` is `file:line` of the template in its
/// mapping file (when known) plus the field it fills.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {message}")]
pub struct TemplateError {
    pub location: String,
    pub message: String,
    /// The render stopped at the fuel limit ([`FUEL`]), rather than failing on the data.
    out_of_fuel: bool,
}

impl TemplateError {
    /// Whether the template ran out of fuel: it might manage with less data (a shorter list).
    pub fn is_out_of_fuel(&self) -> bool {
        self.out_of_fuel
    }
}

/// Clock used by `now()`. Injectable so `render` output and snapshot tests are reproducible.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Owns every compiled template of one mapping set.
pub struct TemplateEngine {
    env: Environment<'static>,
    clock: Clock,
}

impl std::fmt::Debug for TemplateEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemplateEngine").finish_non_exhaustive()
    }
}

impl Default for TemplateEngine {
    fn default() -> Self {
        Self::new(Arc::new(Utc::now))
    }
}

impl TemplateEngine {
    pub fn new(clock: Clock) -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        // Output goes into JSON built by code and into plain ticket text: never HTML-escape.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        register_helpers(&mut env, clock.clone());
        TemplateEngine { env, clock }
    }

    /// The instant `now()` returns in templates. Routing reads it too (criteria `DateRange`
    /// filters), so one injected clock makes `render` output and tests reproducible end to end.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Compiles `source` for the field at `location` (`payments.toml:23 (rules.jira.summary)`).
    /// Text without template syntax becomes a [`Template::Literal`].
    pub fn compile(&mut self, location: &str, source: &str) -> Result<Template, TemplateError> {
        if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
            return Ok(Template::Literal(source.to_owned()));
        }
        let name: Arc<str> = Arc::from(location);
        self.env
            .add_template_owned(name.to_string(), source.to_owned())
            .map_err(|e| template_error(location, &e))?;
        Ok(Template::Compiled {
            name,
            source: Arc::from(source),
        })
    }

    /// Renders one template against a context built by [`TemplateEngine::context`].
    pub fn render(&self, template: &Template, ctx: &Value) -> Result<String, TemplateError> {
        match template {
            Template::Literal(s) => Ok(s.clone()),
            Template::Compiled { name, .. } => {
                let tmpl = self
                    .env
                    .get_template(name)
                    .map_err(|e| template_error(name, &e))?;
                tmpl.render(ctx)
                    .map(trimmed)
                    .map_err(|e| template_error(name, &e))
            }
        }
    }

    /// The variables `template` may read, found without rendering it: `finding.severity`,
    /// `team`, `now` (functions count), attribute lookups spelled out as far as they are plain
    /// names. Empty for a literal; `None` when the template is not in this engine.
    pub fn variables(&self, template: &Template) -> Option<std::collections::BTreeSet<String>> {
        match template {
            Template::Literal(_) => Some(std::collections::BTreeSet::new()),
            Template::Compiled { name, .. } => {
                let tmpl = self.env.get_template(name).ok()?;
                Some(tmpl.undeclared_variables(true).into_iter().collect())
            }
        }
    }
}

/// The rendered text without surrounding whitespace, reusing its buffer when nothing is cut.
fn trimmed(s: String) -> String {
    let t = s.trim();
    if t.len() == s.len() { s } else { t.to_owned() }
}

/// Turns a minijinja error into `location: message`, naming the line inside the template when
/// it is not the first.
fn template_error(location: &str, err: &Error) -> TemplateError {
    let mut message = match err.kind() {
        ErrorKind::OutOfFuel => {
            "template ran out of fuel (too much work for one field; simplify loops)".to_owned()
        }
        ErrorKind::UndefinedError => {
            "undefined value (check the variable name; use `is defined` or `| default(...)` for optional fields)"
                .to_owned()
        }
        kind => kind.to_string(),
    };
    if let Some(detail) = err.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    if let Some(line) = err.line().filter(|l| *l > 1) {
        message.push_str(&format!(" (template line {line})"));
    }
    TemplateError {
        location: location.to_owned(),
        message,
        out_of_fuel: err.kind() == ErrorKind::OutOfFuel,
    }
}

fn register_helpers(env: &mut Environment<'static>, clock: Clock) {
    env.add_filter("truncate", truncate_filter);
    env.add_filter("severity_score", severity_score_filter);
    env.add_filter("add_days", add_days_filter);
    env.add_filter("date", date_filter);
    env.add_filter("console_link", console_link_filter);
    env.add_function("now", move || -> Value {
        Value::from(clock().to_rfc3339_opts(SecondsFormat::Secs, true))
    });
}

/// `{{ text | truncate(80) }}`: cut to at most `length` characters (default 255), ending in `…`.
fn truncate_filter(value: String, length: Option<usize>) -> String {
    let length = length.unwrap_or(255);
    if value.chars().count() <= length {
        return value;
    }
    let keep = length.saturating_sub(1);
    let mut out: String = value.chars().take(keep).collect();
    out.push('…');
    out
}

/// `{{ finding.severity | severity_score }}`: label → number, CRITICAL 5 … INFORMATIONAL 1
/// (useful for ServiceNow urgency arithmetic and Jira number fields).
fn severity_score_filter(label: String) -> Result<i64, Error> {
    match crate::finding::Severity::from_label(&label) {
        Some(s) => Ok(i64::from(s.ocsf_id())),
        None => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("severity_score: {label:?} is not a severity label"),
        )),
    }
}

fn parse_instant(value: &str) -> Result<DateTime<Utc>, Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("{value:?} is not an RFC 3339 timestamp or a YYYY-MM-DD date"),
    ))
}

/// `{{ now() | add_days(7) }}`: shift a timestamp by whole days (negative allowed).
fn add_days_filter(value: String, days: i64) -> Result<String, Error> {
    let t = parse_instant(&value)?;
    let shifted = Duration::try_days(days)
        .and_then(|d| t.checked_add_signed(d))
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "add_days: out of range"))?;
    Ok(shifted.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// `{{ now() | add_days(7) | date }}` → `2026-12-05` (Jira `duedate`); takes a strftime format.
fn date_filter(value: String, format: Option<String>) -> Result<String, Error> {
    use std::fmt::Write;
    let t = parse_instant(&value)?;
    let format = format.as_deref().unwrap_or("%Y-%m-%d");
    let mut out = String::new();
    write!(out, "{}", t.format(format))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "date: invalid format string"))?;
    Ok(out)
}

/// `{{ finding.console_url | console_link("Open in Security Hub") }}` → a Markdown link, which the
/// Jira renderers turn into an ADF link or wiki link.
fn console_link_filter(url: String, text: Option<String>) -> String {
    let text = text.unwrap_or_else(|| "Open in the Security Hub console".to_owned());
    format!("[{text}]({url})")
}

/// Cuts `value` to at most `limit` characters, ending with [`TRUNCATION_MARK`] when cut.
/// Counts `char`s, which is what Jira and ServiceNow limits count (never splits a code point).
pub fn cut_to_limit(value: &str, limit: usize) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(limit) {
        None => std::borrow::Cow::Borrowed(value),
        Some(_) => {
            let mark_len = TRUNCATION_MARK.chars().count();
            let keep = limit.saturating_sub(mark_len);
            let end = value
                .char_indices()
                .nth(keep)
                .map_or(value.len(), |(i, _)| i);
            let mut out = String::with_capacity(end + TRUNCATION_MARK.len());
            out.push_str(&value[..end]);
            out.push_str(TRUNCATION_MARK);
            std::borrow::Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn engine() -> TemplateEngine {
        let fixed = DateTime::parse_from_rfc3339("2026-11-28T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        TemplateEngine::new(Arc::new(move || fixed))
    }

    #[test]
    fn literal_text_is_not_compiled() {
        let mut e = engine();
        let t = e.compile("a.toml:1 (x)", "plain text").unwrap();
        assert_eq!(t, Template::Literal("plain text".into()));
    }

    #[test]
    fn finding_text_with_template_syntax_stays_literal() {
        let mut e = engine();
        let t = e
            .compile("a.toml:1 (summary)", "[{{ sev }}] {{ title }}")
            .unwrap();
        let ctx = context! { sev => "HIGH", title => "{{ 7*7 }} {% if x %}" };
        assert_eq!(e.render(&t, &ctx).unwrap(), "[HIGH] {{ 7*7 }} {% if x %}");
    }

    #[test]
    fn undefined_is_an_error_naming_the_location() {
        let mut e = engine();
        let t = e
            .compile("team.toml:12 (rules.jira.summary)", "{{ finding.nope }}")
            .unwrap();
        let ctx = context! { finding => context!{ title => "t" } };
        let err = e.render(&t, &ctx).unwrap_err();
        assert_eq!(err.location, "team.toml:12 (rules.jira.summary)");
        assert!(err.message.contains("undefined"), "{err}");
    }

    #[test]
    fn dict_lookup_with_default_falls_back() {
        let mut e = engine();
        let t = e
            .compile(
                "a.toml:3 (priority)",
                "{{ {'CRITICAL': 'Highest', 'HIGH': 'High'}[sev] | default('Medium') }}",
            )
            .unwrap();
        let high = context! { sev => "HIGH" };
        let low = context! { sev => "LOW" };
        assert_eq!(e.render(&t, &high).unwrap(), "High");
        assert_eq!(e.render(&t, &low).unwrap(), "Medium");
    }

    #[test]
    fn syntax_error_fails_at_compile() {
        let mut e = engine();
        let err = e.compile("a.toml:9 (summary)", "{{ unclosed").unwrap_err();
        assert_eq!(err.location, "a.toml:9 (summary)");
        assert!(err.message.contains("syntax error"), "{err}");
    }

    #[test]
    fn runaway_loop_runs_out_of_fuel() {
        let mut e = engine();
        let t = e
            .compile(
                "a.toml:1 (x)",
                "{% for i in range(100000) %}{{ i }}{% endfor %}",
            )
            .unwrap();
        let err = e.render(&t, &Value::from(())).unwrap_err();
        assert!(err.message.contains("fuel"), "{err}");
        assert!(err.is_out_of_fuel());
        let undefined = e.compile("a.toml:2 (x)", "{{ nope }}").unwrap();
        assert!(
            !e.render(&undefined, &Value::from(()))
                .unwrap_err()
                .is_out_of_fuel()
        );
    }

    #[test]
    fn helpers() {
        let mut e = engine();
        let ctx = context! { t => "abcdefghij", s => "CRITICAL", u => "https://x/y" };
        let cases = [
            ("{{ t | truncate(5) }}", "abcd…"),
            ("{{ t | truncate(50) }}", "abcdefghij"),
            ("{{ s | severity_score }}", "5"),
            ("{{ now() }}", "2026-11-28T10:00:00Z"),
            ("{{ now() | add_days(7) | date }}", "2026-12-05"),
            (
                "{{ '2026-01-31' | add_days(-1) | date('%d/%m/%Y') }}",
                "30/01/2026",
            ),
            ("{{ u | console_link('open') }}", "[open](https://x/y)"),
        ];
        for (i, (src, want)) in cases.into_iter().enumerate() {
            let t = e.compile(&format!("h:{i}"), src).unwrap();
            assert_eq!(e.render(&t, &ctx).unwrap(), want, "{src}");
        }
    }

    #[test]
    fn variables_name_what_a_template_reads() {
        let mut e = engine();
        let set = |items: &[&str]| -> std::collections::BTreeSet<String> {
            items.iter().map(|s| (*s).to_owned()).collect()
        };
        let priority = e
            .compile(
                "a.toml:3 (priority)",
                "{{ {'CRITICAL': 'Highest'}[finding.severity] | default('Medium') }}",
            )
            .unwrap();
        assert_eq!(e.variables(&priority), Some(set(&["finding.severity"])));
        let project = e
            .compile(
                "a.toml:4 (project)",
                "{% if finding.account_id == '1' %}A{% else %}{{ team | upper }}{% endif %}",
            )
            .unwrap();
        assert_eq!(
            e.variables(&project),
            Some(set(&["finding.account_id", "team"]))
        );
        let dated = e.compile("a.toml:5 (due)", "{{ now() | date }}").unwrap();
        assert_eq!(e.variables(&dated), Some(set(&["now"])));
        let literal = e.compile("a.toml:6 (x)", "PAY").unwrap();
        assert_eq!(e.variables(&literal), Some(set(&[])));
        let foreign = Template::Compiled {
            name: "elsewhere".into(),
            source: "{{ x }}".into(),
        };
        assert_eq!(e.variables(&foreign), None);
    }

    #[test]
    fn cut_to_limit_marks_truncation_and_respects_char_boundaries() {
        assert_eq!(cut_to_limit("short", 10), "short");
        let long = "é".repeat(300);
        let cut = cut_to_limit(&long, 255);
        assert_eq!(cut.chars().count(), 255);
        assert!(cut.ends_with(TRUNCATION_MARK));
        let exact = "x".repeat(255);
        assert_eq!(cut_to_limit(&exact, 255), exact.as_str());
    }
}
