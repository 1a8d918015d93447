//! Template compilation hook-up: every template-valued key (`summary`, `labels[…]`, `fields.*`)
//! goes through the engine here, and a compile error is reported at the file line the template
//! line it names falls on.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use toml::Spanned;

use super::{FileCtx, Loader};
use crate::mapping::spec::FieldTemplate;
use crate::mapping::template::Template;

pub(super) type Text = Spanned<String>;
pub(super) type FieldsRaw = BTreeMap<String, Spanned<toml::Value>>;

impl Loader {
    pub(super) fn fields(
        &mut self,
        ctx: &FileCtx<'_>,
        at: &str,
        raw: Option<FieldsRaw>,
        reserved: &[&str],
    ) -> BTreeMap<String, FieldTemplate> {
        let mut out = BTreeMap::new();
        for (key, value) in raw.unwrap_or_default() {
            let path = format!("{at}.fields.{key}");
            if reserved.contains(&key.as_str()) {
                self.error_at(
                    ctx,
                    value.span(),
                    format!(
                        "{path}: `{key}` is set by the bridge or by its own key; remove it from \
                         `fields`"
                    ),
                );
                continue;
            }
            let lines = ctx.value_lines(value.span());
            if let Some(t) = self.field_template(ctx, &path, &lines, value.get_ref()) {
                out.insert(key, t);
            }
        }
        out
    }

    fn field_template(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        lines: &RangeInclusive<usize>,
        value: &toml::Value,
    ) -> Option<FieldTemplate> {
        Some(match value {
            toml::Value::String(s) => FieldTemplate::Text(self.compile_at(ctx, path, lines, s)?),
            toml::Value::Integer(i) => FieldTemplate::Integer(*i),
            toml::Value::Float(f) => FieldTemplate::Float(*f),
            toml::Value::Boolean(b) => FieldTemplate::Bool(*b),
            toml::Value::Datetime(d) => FieldTemplate::Text(Template::Literal(d.to_string())),
            toml::Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.field_template(ctx, &format!("{path}[{i}]"), lines, item) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                FieldTemplate::Array(out)
            }
            toml::Value::Table(table) => {
                let mut out = BTreeMap::new();
                let mut ok = true;
                for (k, v) in table {
                    match self.field_template(ctx, &format!("{path}.{k}"), lines, v) {
                        Some(t) => {
                            out.insert(k.clone(), t);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                FieldTemplate::Table(out)
            }
        })
    }

    /// Like [`Loader::template`], but a broken template still counts as "set", so a syntax error
    /// in `summary` is not followed by a confusing "needs `summary`". The placeholder never
    /// reaches a rule: the recorded error makes the whole load fail.
    pub(super) fn template_or_placeholder(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        text: &Text,
    ) -> Template {
        self.template(ctx, path, text)
            .unwrap_or_else(|| Template::Literal(String::new()))
    }

    pub(super) fn template(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        text: &Text,
    ) -> Option<Template> {
        let lines = ctx.value_lines(text.span());
        self.compile_at(ctx, path, &lines, text.get_ref())
    }

    /// Compiles one template; a syntax error is reported at the line of the TOML value plus the
    /// line inside the template where minijinja found it. `lines` are the file lines the value's
    /// content spans: when the template has as many lines as that (no `\n` escapes, no line-ending
    /// backslashes), template line N is file line `start + N - 1`; otherwise the error points at
    /// the value's first line rather than at a line that may not exist.
    fn compile_at(
        &mut self,
        ctx: &FileCtx<'_>,
        path: &str,
        lines: &RangeInclusive<usize>,
        source: &str,
    ) -> Option<Template> {
        let line = *lines.start();
        let location = format!("{}:{line} ({path})", ctx.name);
        match self.engine.compile(&location, source) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = template_line(&e.message).unwrap_or(1);
                let line_for_line = source.matches('\n').count() == lines.end() - lines.start();
                let at = if line_for_line {
                    (line + inner.saturating_sub(1)).min(*lines.end())
                } else {
                    line
                };
                self.error(ctx, at, format!("{path}: template error: {}", e.message));
                None
            }
        }
    }
}

/// Reads the `(template line N)` the template engine appends to a compile error.
fn template_line(message: &str) -> Option<usize> {
    let rest = message.split("(template line ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_template_line_suffix() {
        assert_eq!(template_line("syntax error: x (template line 3)"), Some(3));
        assert_eq!(template_line("syntax error: x"), None);
    }
}
