//! The Grafana dashboard (`deploy/grafana/findings-bridge.json`) against the series the bridge
//! really exports: it parses, has what Grafana needs to import it (title, uid, schema version,
//! panels, a Prometheus data source variable and the `job` / `instance` variables), its panel ids
//! are unique and its panels lie on the 24-column grid without overlapping, and every PromQL
//! expression names only sample names that `/metrics` shows. The names come from
//! `telemetry::names::exported()`, so renaming a series (or reading a histogram without its
//! `_bucket` / `_sum` / `_count`) fails here instead of leaving a panel empty. CloudWatch panels
//! (queue and table metrics Prometheus does not have) may read only the AWS metrics listed here.
//!
//! The check is a function over the parsed JSON; the tests feed it the shipped dashboard and
//! broken copies of it.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use findings_bridge::runtime::telemetry::{self, names};
use serde_json::Value;

const GRID_COLUMNS: u64 = 24;
/// A dimension of a CloudWatch metric and the values a panel may give it.
type Dimension = (&'static str, &'static [&'static str]);

/// The CloudWatch metrics a panel may read (namespace, name, dimensions), with the variable
/// naming the resource: the stack's queues and table.
const CLOUDWATCH_METRICS: &[(&str, &str, &[Dimension])] = &[
    (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        &[("QueueName", &["$queue", "$dlq"])],
    ),
    (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        &[("QueueName", &["$queue", "$dlq"])],
    ),
    (
        "AWS/SQS",
        "ApproximateNumberOfMessagesNotVisible",
        &[("QueueName", &["$queue", "$dlq"])],
    ),
    (
        "AWS/DynamoDB",
        "SuccessfulRequestLatency",
        &[
            ("TableName", &["$table"]),
            (
                "Operation",
                &["GetItem", "PutItem", "UpdateItem", "DeleteItem"],
            ),
        ],
    ),
];
/// PromQL words that are not metric names when they stand outside braces and before no `(`.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
];
/// Aggregation operators, which may put their `by (...)` / `without (...)` before the `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords whose parenthesised list holds label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn shipped() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/findings-bridge.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every sample name `/metrics` can show: counters and gauges under their own name, histograms
/// only with their suffixes.
fn exported_samples() -> HashSet<String> {
    names::exported()
        .flat_map(|(name, exposition)| exposition.sample_names(name))
        .collect()
}

/// The metric names a PromQL expression selects. Grafana's `$variables` are skipped; so are
/// label names (inside braces and in `by (...)`-like lists), function names (followed by `(`),
/// keywords, numbers, durations and string literals.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = BTreeSet::new();
    let mut braces = 0usize;
    let mut brackets = 0usize;
    // Depth of parentheses at which a label list (after `by`, `on`, ...) is open.
    let mut label_list: Option<usize> = None;
    let mut parens = 0usize;
    let mut after_label_keyword = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                // A string literal; a backslash escapes the next character, except in `raw`.
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("{expr:?}: unterminated string")),
                        Some('\\') if c != '`' => i += 2,
                        Some(&d) if d == c => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                continue;
            }
            '{' => braces += 1,
            '}' => braces = braces.checked_sub(1).ok_or("unbalanced }")?,
            '[' => brackets += 1,
            ']' => brackets = brackets.checked_sub(1).ok_or("unbalanced ]")?,
            '(' => {
                parens += 1;
                if after_label_keyword {
                    label_list = Some(parens);
                }
            }
            ')' => {
                if label_list == Some(parens) {
                    label_list = None;
                }
                parens = parens.checked_sub(1).ok_or("unbalanced )")?;
            }
            '$' => {
                // A Grafana variable: $name, ${name} or $__name.
                i += 1;
                if chars.get(i) == Some(&'{') {
                    let close = chars[i..]
                        .iter()
                        .position(|&d| d == '}')
                        .ok_or("unterminated ${")?;
                    i += close + 1;
                } else {
                    while chars
                        .get(i)
                        .is_some_and(|d| d.is_alphanumeric() || *d == '_')
                    {
                        i += 1;
                    }
                }
                continue;
            }
            _ => {}
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // A number or a duration (5m, 1e3, 0.95): letters glued to it are its unit.
            while chars
                .get(i)
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.')
            {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '_' || *d == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let rest: String = chars[i..].iter().collect();
            let rest = rest.trim_start();
            let next = rest.chars().next();
            let lower = word.to_ascii_lowercase();
            let grouped_aggregation = AGGREGATIONS.contains(&lower.as_str())
                && ["by", "without"].iter().any(|k| {
                    rest.strip_prefix(k)
                        .is_some_and(|after| after.trim_start().starts_with('('))
                });
            after_label_keyword = LABEL_LISTS.contains(&lower.as_str());
            let is_label = braces > 0 || label_list.is_some();
            if !(is_label
                || brackets > 0
                || next == Some('(')
                || grouped_aggregation
                || KEYWORDS.contains(&lower.as_str()))
            {
                found.insert(word);
            }
            continue;
        }
        if !c.is_whitespace() {
            after_label_keyword = false;
        }
        i += 1;
    }
    if braces + brackets + parens != 0 {
        return Err(format!("{expr:?}: unbalanced brackets"));
    }
    Ok(found)
}

/// The metric names a template variable's query selects: `label_values(selector, label)` reads
/// only its selector as PromQL (its second argument is a label name).
fn variable_metric_names(query: &str) -> Result<BTreeSet<String>, String> {
    let query = query.trim();
    match query
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        Some(args) => {
            let (selector, _label) = args
                .rsplit_once(',')
                .ok_or_else(|| format!("{query:?}: label_values(selector, label)"))?;
            metric_names(selector)
        }
        None => metric_names(query),
    }
}

fn datasource_type(value: Option<&Value>) -> Option<&str> {
    value?.get("type")?.as_str()
}

/// Everything wrong with a dashboard; empty when nothing is.
fn check(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for field in ["title", "uid"] {
        if dashboard[field]
            .as_str()
            .is_none_or(|s| s.trim().is_empty())
        {
            problems.push(format!("no {field}"));
        }
    }
    if dashboard["schemaVersion"].as_u64().is_none() {
        problems.push("no schemaVersion".to_owned());
    }
    if !dashboard["time"]["from"].is_string() || !dashboard["time"]["to"].is_string() {
        problems.push("no time range".to_owned());
    }
    let samples = exported_samples();

    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    match variable("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => problems.push(
            "templating: no `datasource` variable of type datasource over prometheus".to_owned(),
        ),
    }
    for name in ["job", "instance"] {
        match variable(name) {
            Some(v) if v["type"] == "query" => {
                let query = v["query"]["query"]
                    .as_str()
                    .or(v["query"].as_str())
                    .unwrap_or("");
                let found = variable_metric_names(query);
                name_problems(&mut problems, &samples, &format!("variable {name}"), found);
            }
            _ => problems.push(format!("templating: no `{name}` query variable")),
        }
    }

    let mut panels: Vec<&Value> = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        panels.push(panel);
        // A collapsed row keeps its panels inside it.
        panels.extend(panel["panels"].as_array().into_iter().flatten());
    }
    if panels.is_empty() {
        problems.push("no panels".to_owned());
    }
    let mut ids = HashSet::new();
    let mut boxes: Vec<(u64, [u64; 4])> = Vec::new();
    for panel in panels {
        let id = panel["id"].as_u64();
        let title = panel["title"].as_str().unwrap_or("");
        let what = format!(
            "panel {} ({title})",
            id.map_or("?".to_owned(), |i| i.to_string())
        );
        match id {
            None => problems.push(format!("{what}: no numeric id")),
            Some(id) if !ids.insert(id) => problems.push(format!("{what}: id used twice")),
            Some(_) => {}
        }
        let pos = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| pos[k].as_u64());
        match (x, y, w, h) {
            (Some(x), Some(y), Some(w), Some(h)) if w >= 1 && h >= 1 && x + w <= GRID_COLUMNS => {
                let rect = [x, y, w, h];
                for (other, o) in &boxes {
                    if x < o[0] + o[2] && o[0] < x + w && y < o[1] + o[3] && o[1] < y + h {
                        problems.push(format!("{what}: overlaps panel {other}"));
                    }
                }
                boxes.push((id.unwrap_or(0), rect));
            }
            _ => problems.push(format!(
                "{what}: gridPos {pos} is off the {GRID_COLUMNS}-column grid"
            )),
        }
        if panel["type"] == "row" {
            continue;
        }
        if title.trim().is_empty() {
            problems.push(format!("{what}: no title"));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{what}: no queries"));
        }
        for target in &targets {
            let source = datasource_type(target.get("datasource"))
                .or(datasource_type(panel.get("datasource")));
            match source {
                Some("prometheus") => {
                    let expr = target["expr"].as_str().unwrap_or("");
                    let where_ = format!("{what} {expr:?}");
                    if !expr.contains("$job") || !expr.contains("$instance") {
                        problems.push(format!("{where_}: does not filter on $job and $instance"));
                    }
                    name_problems(&mut problems, &samples, &where_, metric_names(expr));
                }
                Some("cloudwatch") => {
                    if let Err(e) = check_cloudwatch(target) {
                        problems.push(format!("{what}: {e}"));
                    }
                }
                other => problems.push(format!("{what}: a query on data source {other:?}")),
            }
        }
    }
    problems
}

/// What is wrong with the metric names one query selects.
fn name_problems(
    problems: &mut Vec<String>,
    samples: &HashSet<String>,
    what: &str,
    names: Result<BTreeSet<String>, String>,
) {
    match names {
        Err(e) => problems.push(format!("{what}: {e}")),
        Ok(names) => {
            if names.is_empty() {
                problems.push(format!("{what}: selects no metric"));
            }
            for name in names.iter().filter(|n| !samples.contains(*n)) {
                problems.push(format!(
                    "{what}: `{name}` is not a sample the bridge exports (src/runtime/telemetry/names.rs)"
                ));
            }
        }
    }
}

fn check_cloudwatch(target: &Value) -> Result<(), String> {
    let namespace = target["namespace"].as_str().unwrap_or("");
    let metric = target["metricName"].as_str().unwrap_or("");
    let (_, _, dimensions) = CLOUDWATCH_METRICS
        .iter()
        .find(|(ns, name, _)| *ns == namespace && *name == metric)
        .ok_or_else(|| {
            format!("CloudWatch {namespace} {metric} is not one the stack's resources publish")
        })?;
    let given = target["dimensions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if given.len() != dimensions.len() {
        return Err(format!(
            "{metric}: dimensions {given:?}, want {dimensions:?}"
        ));
    }
    for (name, allowed) in *dimensions {
        let value = given.get(*name).and_then(Value::as_str).unwrap_or("");
        if !allowed.contains(&value) {
            return Err(format!(
                "{metric}: {name}={value:?}, want one of {allowed:?}"
            ));
        }
    }
    Ok(())
}

/// The shipped dashboard with one panel query edited.
fn with_expr(edit: impl Fn(&str) -> String) -> Value {
    let mut dashboard = shipped();
    for panel in dashboard["panels"].as_array_mut().unwrap() {
        for target in panel["targets"].as_array_mut().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let edited = edit(expr);
                if edited != expr {
                    target["expr"] = Value::String(edited);
                    return dashboard;
                }
            }
        }
    }
    panic!("the edit changed no query");
}

#[test]
fn the_shipped_dashboard_reads_only_exported_series() {
    let dashboard = shipped();
    assert_eq!(check(&dashboard), Vec::<String>::new());
    // It reads the series on-call needs, histograms through their suffixes.
    let text = dashboard.to_string();
    for needed in [
        names::TICKETS_CREATED,
        names::ERRORS,
        names::DLQ_MOVED,
        names::CONNECTION_UP,
        names::SYNC_STATUS_WRITTEN,
        "findings_bridge_rate_limit_wait_seconds_bucket",
        "findings_bridge_api_request_duration_seconds_count",
    ] {
        assert!(text.contains(needed), "{needed}");
    }
}

#[test]
fn a_renamed_series_fails_the_check() {
    let broken = with_expr(|expr| {
        expr.replace(
            names::TICKETS_CREATED,
            "findings_bridge_tickets_opened_total",
        )
    });
    let problems = check(&broken);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`findings_bridge_tickets_opened_total` is not a sample")),
        "{problems:?}"
    );
}

#[test]
fn a_histogram_without_its_suffix_fails_the_check() {
    let broken = with_expr(|expr| {
        expr.replace(
            "findings_bridge_rate_limit_wait_seconds_bucket",
            "findings_bridge_rate_limit_wait_seconds",
        )
    });
    let problems = check(&broken);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`findings_bridge_rate_limit_wait_seconds` is not a sample")),
        "{problems:?}"
    );
}

#[test]
fn a_query_without_the_job_and_instance_filter_fails_the_check() {
    let broken = with_expr(|expr| expr.replace(", instance=~\"$instance\"", ""));
    assert!(
        check(&broken)
            .iter()
            .any(|p| p.contains("does not filter on $job and $instance")),
        "{:?}",
        check(&broken)
    );
}

#[test]
fn duplicate_ids_bad_grid_positions_and_missing_fields_fail_the_check() {
    let mut broken = shipped();
    let first_id = broken["panels"][1]["id"].clone();
    broken["panels"][2]["id"] = first_id;
    broken["panels"][3]["gridPos"]["x"] = Value::from(20);
    broken["panels"][3]["gridPos"]["w"] = Value::from(8);
    broken.as_object_mut().unwrap().remove("uid");
    let problems = check(&broken);
    for expected in ["id used twice", "off the 24-column grid", "no uid"] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
    let mut overlapping = shipped();
    overlapping["panels"][2]["gridPos"] = overlapping["panels"][1]["gridPos"].clone();
    assert!(
        check(&overlapping)
            .iter()
            .any(|p| p.contains("overlaps panel"))
    );
}

#[test]
fn a_missing_datasource_variable_or_an_unknown_cloudwatch_metric_fails_the_check() {
    let mut broken = shipped();
    broken["templating"]["list"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != "datasource");
    assert!(
        check(&broken)
            .iter()
            .any(|p| p.contains("no `datasource` variable"))
    );

    let mut broken = shipped();
    let cloudwatch = broken["panels"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|p| p["targets"].as_array_mut().into_iter().flatten())
        .find(|t| t["namespace"] == "AWS/SQS")
        .unwrap();
    cloudwatch["metricName"] = Value::from("ApproximateAgeOfNewestMessage");
    assert!(
        check(&broken)
            .iter()
            .any(|p| p.contains("ApproximateAgeOfNewestMessage is not one")),
        "{:?}",
        check(&broken)
    );
}

#[test]
fn promql_names_are_told_from_labels_functions_and_variables() {
    let names = |expr: &str| metric_names(expr).unwrap().into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.95, sum by (le, system) (rate(a_bucket{job="$job", kind!="x"}[$__rate_interval])))"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names(
            r#"60 * sum(rate(a_total{q="b_total"}[5m])) / on (instance) group_left (version) b offset 1h"#
        ),
        ["a_total", "b"]
    );
    assert_eq!(
        names("count by (version) (c) and d unless e"),
        ["c", "d", "e"]
    );
    // An escaped quote does not end a string: `y_total` is part of it, not a metric.
    assert_eq!(
        names(r#"label_replace(g{b='z'}, "dst", "x\"y_total", "src", "(.*)") + h"#),
        ["g", "h"]
    );
    assert_eq!(
        variable_metric_names(r#"label_values(f{job="$job"}, instance)"#)
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        ["f"]
    );
    assert!(metric_names("sum(rate(a[5m])").is_err());
}

#[test]
fn every_histogram_is_exposed_with_its_three_suffixes() {
    // Ties Exposition::sample_names to what the exporter really renders.
    let handle = telemetry::install_metrics();
    telemetry::rate_limit_wait("grafana-check", 0.5);
    let page = handle.render();
    for sample in names::Exposition::Histogram.sample_names(names::RATE_LIMIT_WAIT) {
        assert!(
            page.lines()
                .any(|l| l.starts_with(&format!("{sample}{{")) && l.contains("grafana-check")),
            "{sample} not on the page:\n{page}"
        );
    }
    assert!(
        names::exported()
            .any(|(n, e)| n == names::RATE_LIMIT_WAIT && e == names::Exposition::Histogram)
    );
}
