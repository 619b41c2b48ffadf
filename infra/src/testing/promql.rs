//! The metric names a PromQL expression reads, and the expressions of the
//! `ops/` alert rules and dashboard, so a test can check every one against
//! what the processes export.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// PromQL words that are not metric names.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

/// Every metric name `expr` reads: what is left once strings, label
/// matchers and grouping lists, ranges, numbers, functions and aggregations
/// (a word before `(`) and keywords are taken out.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        if c == '"' || c == '\'' || c == '`' {
            at = skip_string(&chars, at);
        } else if c == '{' {
            at = skip_to(&chars, at, '}');
        } else if c == '[' {
            at = skip_to(&chars, at, ']');
        } else if c.is_ascii_digit() || (c == '.' && next_is_digit(&chars, at)) {
            at = skip_number(&chars, at);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = at;
            while at < chars.len() && is_name_char(chars[at]) {
                at += 1;
            }
            let word: String = chars[start..at].iter().collect();
            // `sum (...)`, and `sum by (x) (...)`: an aggregation.
            let call = next_non_space(&chars, at) == Some('(')
                || matches!(next_word(&chars, at).as_str(), "by" | "without");
            let keyword = KEYWORDS.contains(&word.to_ascii_lowercase().as_str());
            if grouping(&word) && call {
                at = skip_to(&chars, at, ')');
            } else if !call && !keyword {
                names.insert(word);
            }
        } else {
            at += 1;
        }
    }
    names
}

fn grouping(word: &str) -> bool {
    matches!(
        word,
        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
    )
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn next_is_digit(chars: &[char], at: usize) -> bool {
    chars.get(at + 1).is_some_and(char::is_ascii_digit)
}

fn next_non_space(chars: &[char], at: usize) -> Option<char> {
    chars[at..].iter().copied().find(|c| !c.is_whitespace())
}

fn next_word(chars: &[char], at: usize) -> String {
    chars[at..]
        .iter()
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| is_name_char(**c))
        .collect()
}

/// Past the closing quote (a backslash escapes the next character).
fn skip_string(chars: &[char], at: usize) -> usize {
    let quote = chars[at];
    let mut at = at + 1;
    while at < chars.len() && chars[at] != quote {
        at += if chars[at] == '\\' { 2 } else { 1 };
    }
    at + 1
}

/// Past the next `close`, skipping strings on the way.
fn skip_to(chars: &[char], at: usize, close: char) -> usize {
    let mut at = at + 1;
    while at < chars.len() && chars[at] != close {
        at = match chars[at] {
            '"' | '\'' | '`' => skip_string(chars, at),
            _ => at + 1,
        };
    }
    at + 1
}

/// A number, a duration (`5m`, `1h30m`) or a scientific literal.
fn skip_number(chars: &[char], at: usize) -> usize {
    let mut at = at;
    while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '.') {
        at += 1;
    }
    at
}

/// The repository's `ops/` folder.
pub fn ops_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops")
}

/// Every `expr:` of the alert rules (one line each, as the file keeps them).
pub fn alert_expressions() -> Vec<String> {
    let rules = std::fs::read_to_string(ops_dir().join("prometheus/alerts.yml"))
        .expect("read ops/prometheus/alerts.yml");
    rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("expr:"))
        .map(|expr| {
            let expr = expr.trim();
            assert!(
                !expr.is_empty() && !expr.starts_with(['|', '>']),
                "keep each alert expression on its line: {expr}"
            );
            expr.to_owned()
        })
        .collect()
}

/// Every `expr` of the Grafana dashboards' targets.
pub fn dashboard_expressions() -> Vec<String> {
    let dir = ops_dir().join("grafana/dashboards");
    let mut exprs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read ops/grafana/dashboards") {
        let path = entry.expect("a dashboard file").path();
        let text = std::fs::read_to_string(&path).expect("read a dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        collect_exprs(&dashboard, &mut exprs);
    }
    exprs
}

fn collect_exprs(value: &serde_json::Value, exprs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => exprs.push(expr.clone()),
                    _ => collect_exprs(value, exprs),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, exprs)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr).into_iter().collect()
    }

    #[test]
    fn only_metric_names_are_left() {
        assert_eq!(
            names(
                r#"histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{status=~"5..", x="a}b"}[5m])))"#
            ),
            ["http_request_duration_seconds_bucket"]
        );
        assert_eq!(
            names("max(relay_checkpoint_position) > on() max(projection_checkpoint_position) and on() sum(increase(projector_events_applied_total[10m])) == 0"),
            ["projection_checkpoint_position", "projector_events_applied_total", "relay_checkpoint_position"]
        );
        assert_eq!(names("up{job=~\"identity-.*\"} == 0"), ["up"]);
        assert_eq!(
            names("a_total / ignoring(x) group_left b_total offset 5m > 1e3"),
            ["a_total", "b_total"]
        );
    }

    #[test]
    fn a_misspelt_metric_is_still_a_name() {
        assert_eq!(names("rate(relay_lag[5m])"), ["relay_lag"]);
    }
}
