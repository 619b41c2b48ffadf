//! The one table: each figure beside its limit of the same run, the ratio,
//! the target and whether it was met; printed, and written as JSON.

use std::path::Path;

use anyhow::Context;
use bench::catalogue::{Spec, Target};
use serde::Serialize;

/// One measured row.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub key: &'static str,
    pub figure: &'static str,
    pub unit: &'static str,
    pub value: f64,
    /// What the limit is, and its value in the same unit.
    pub limit: Option<Limit>,
    pub ratio: Option<f64>,
    pub target: String,
    pub met: Option<bool>,
    /// How it was measured (sizes, clients, percentiles).
    pub note: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Limit {
    pub what: &'static str,
    pub value: f64,
}

impl Figure {
    /// A figure without a limit: the target applies to the value.
    pub fn value(spec: Spec, value: f64, note: impl Into<String>) -> Self {
        debug_assert!(spec.limit.is_none(), "{} has a limit", spec.key);
        Self::build(spec, value, None, note.into())
    }

    /// A figure beside its limit: the target applies to value / limit.
    pub fn against(spec: Spec, value: f64, limit: f64, note: impl Into<String>) -> Self {
        let what = spec.limit.unwrap_or("limit");
        Self::build(spec, value, Some(Limit { what, value: limit }), note.into())
    }

    fn build(spec: Spec, value: f64, limit: Option<Limit>, note: String) -> Self {
        let ratio = limit.as_ref().map(|limit| value / limit.value);
        let compared = if spec.target_on_value {
            value
        } else {
            ratio.unwrap_or(value)
        };
        let met = if compared.is_finite() {
            spec.target.met(compared)
        } else {
            (spec.target != Target::Report).then_some(false)
        };
        Self {
            key: spec.key,
            figure: spec.label,
            unit: spec.unit,
            value,
            limit,
            ratio,
            target: spec.target.describe(),
            met,
            note,
        }
    }
}

/// The run's table and what it ran on, as written to the JSON file.
#[derive(Serialize)]
pub struct Table {
    pub run: String,
    pub quick: bool,
    pub cores: usize,
    pub cpu: Option<String>,
    pub figures: Vec<Figure>,
}

fn number(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        format!("{value}")
    } else if magnitude >= 1000.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Table {
    pub fn print(&self) {
        let rows: Vec<[String; 6]> = self.figures.iter().map(cells).collect();
        let header = [
            "figure",
            "value",
            "limit (same run)",
            "ratio",
            "target",
            "met",
        ];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let line = |cells: &[String; 6]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        println!();
        line(&header.map(String::from));
        println!(
            "|{}|",
            widths
                .iter()
                .map(|width| "-".repeat(width + 2))
                .collect::<Vec<_>>()
                .join("|")
        );
        rows.iter().for_each(line);
        println!();
        for figure in &self.figures {
            println!("{}: {}", figure.key, figure.note);
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
    }
}

fn cells(figure: &Figure) -> [String; 6] {
    [
        figure.figure.to_string(),
        format!("{} {}", number(figure.value), figure.unit),
        figure.limit.as_ref().map_or_else(String::new, |limit| {
            format!("{} {} ({})", number(limit.value), figure.unit, limit.what)
        }),
        figure.ratio.map_or_else(String::new, number),
        figure.target.clone(),
        match figure.met {
            Some(true) => "yes".into(),
            Some(false) => "NO".into(),
            None => String::new(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench::catalogue::{CHEAP_COMMANDS, EXPORT_RSS, ME_RATE};

    #[test]
    fn the_target_applies_to_the_ratio_when_there_is_a_limit() {
        let figure = Figure::against(CHEAP_COMMANDS, 300.0, 1000.0, "");
        assert_eq!(figure.ratio, Some(0.3));
        assert_eq!(figure.met, Some(false));
        assert_eq!(
            Figure::against(CHEAP_COMMANDS, 500.0, 1000.0, "").met,
            Some(true)
        );
    }

    #[test]
    fn a_value_is_compared_alone_or_only_reported() {
        assert_eq!(Figure::value(EXPORT_RSS, 12.0, "").met, Some(true));
        assert_eq!(Figure::value(EXPORT_RSS, f64::NAN, "").met, Some(false));
        assert_eq!(Figure::value(ME_RATE, 12.0, "").met, None);
    }
}
