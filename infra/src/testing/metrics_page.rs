//! A `/metrics` page (Prometheus text format 0.0.4) read into families, and
//! the conventions every family must keep (see `infra::metrics`).

use std::collections::{BTreeMap, BTreeSet};

use crate::metrics::{UNITLESS_GAUGE_SUFFIXES, UNIT_SUFFIXES};

/// One sample line: `name{labels} value`.
#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A metric family: its `# HELP`, `# TYPE` and samples.
#[derive(Clone, Debug, Default)]
pub struct Family {
    pub help: Option<String>,
    pub kind: Option<String>,
    pub samples: Vec<Sample>,
}

/// The families of a page, by name.
#[derive(Debug, Default)]
pub struct MetricsPage {
    pub families: BTreeMap<String, Family>,
}

impl MetricsPage {
    pub fn parse(text: &str) -> Self {
        let mut page = Self::default();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            page.read_line(line);
        }
        page
    }

    fn read_line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            self.family(name).help = Some(help.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line names a kind");
            self.family(name).kind = Some(kind.to_owned());
        } else if !line.starts_with('#') {
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &self.families);
            self.family(&family).samples.push(sample);
        }
    }

    fn family(&mut self, name: &str) -> &mut Family {
        self.families.entry(name.to_owned()).or_default()
    }

    /// Every value label `label` takes among the samples of `family`.
    pub fn label_values(&self, family: &str, label: &str) -> BTreeSet<String> {
        self.families
            .get(family)
            .map(|family| {
                family
                    .samples
                    .iter()
                    .filter_map(|sample| sample.labels.get(label).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Panics unless every family has HELP text, a TYPE, and a name ending
    /// in a unit (or, for a gauge, a documented unitless suffix).
    pub fn assert_conventions(&self) {
        for (name, family) in &self.families {
            let help = family.help.as_deref().unwrap_or_default();
            assert!(!help.trim().is_empty(), "{name} has no HELP text");
            let kind = family.kind.as_deref();
            assert!(kind.is_some(), "{name} has no TYPE");
            let unitless = kind == Some("gauge") && ends_with_any(name, UNITLESS_GAUGE_SUFFIXES);
            assert!(
                ends_with_any(name, UNIT_SUFFIXES) || unitless,
                "{name} ({kind:?}) has no unit suffix"
            );
        }
    }

    /// Panics unless every name in `names` is on the page, every counter
    /// sample on the page is zero and so is every count of a histogram
    /// named in `names`.
    pub fn assert_present_at_zero(&self, names: &[&str]) {
        for name in names {
            assert!(
                self.families.contains_key(*name),
                "{name} is missing from /metrics: {:?}",
                self.families.keys().collect::<Vec<_>>()
            );
        }
        for (name, family) in &self.families {
            let listed = names.contains(&name.as_str());
            let counts = family.samples.iter().filter(|sample| {
                family.kind.as_deref() == Some("counter")
                    || (listed && sample.name.ends_with("_count"))
            });
            for sample in counts {
                assert_eq!(sample.value, 0.0, "{name} is not zero at start: {sample:?}");
            }
        }
    }
}

fn ends_with_any(name: &str, suffixes: &[&str]) -> bool {
    suffixes.iter().any(|suffix| name.ends_with(suffix))
}

/// The family a sample belongs to: its name, or a histogram's or summary's
/// name without `_bucket`, `_sum`, `_count`.
fn family_of(sample: &str, families: &BTreeMap<String, Family>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if families.contains_key(base) {
                return base.to_owned();
            }
        }
    }
    sample.to_owned()
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
    let value = value.parse().expect("a sample value is a number");
    let Some((name, labels)) = series.split_once('{') else {
        return Sample {
            name: series.to_owned(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let labels = labels.strip_suffix('}').expect("labels end with }");
    Sample {
        name: name.to_owned(),
        labels: parse_labels(labels),
        value,
    }
}

/// `a="x",b="y \"q\""`: values are quoted, with `\\`, `\"` and `\n` escaped.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => value.push(match chars.next().map(|(_, c)| c) {
                    Some('n') => '\n',
                    Some(other) => other,
                    None => break,
                }),
                '"' => {
                    end = at + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_owned(), value);
        rest = &after[end..];
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP a_total things
# TYPE a_total counter
a_total{queue="q",x="say \"hi\", ok"} 0
# HELP h_seconds latency
# TYPE h_seconds histogram
h_seconds_bucket{le="0.1"} 0
h_seconds_sum 0
h_seconds_count 0
# HELP p_position where
# TYPE p_position gauge
p_position 12
"#;

    #[test]
    fn reads_families_labels_and_values() {
        let page = MetricsPage::parse(PAGE);
        assert_eq!(page.families.len(), 3);
        assert_eq!(page.families["h_seconds"].samples.len(), 3);
        let labels = &page.families["a_total"].samples[0].labels;
        assert_eq!(labels["x"], "say \"hi\", ok");
        assert_eq!(labels["queue"], "q");
        page.assert_conventions();
        page.assert_present_at_zero(&["a_total", "h_seconds"]);
    }

    #[test]
    #[should_panic(expected = "no unit suffix")]
    fn a_name_without_a_unit_is_refused() {
        MetricsPage::parse("# HELP things x\n# TYPE things counter\nthings 1\n")
            .assert_conventions();
    }

    #[test]
    #[should_panic(expected = "no HELP")]
    fn a_family_without_help_is_refused() {
        MetricsPage::parse("# TYPE a_total counter\na_total 1\n").assert_conventions();
    }

    #[test]
    #[should_panic(expected = "not zero at start")]
    fn a_counter_above_zero_is_not_at_zero() {
        MetricsPage::parse(PAGE.replace("} 0\n# HELP h", "} 3\n# HELP h").as_str())
            .assert_present_at_zero(&[]);
    }
}
