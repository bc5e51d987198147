//! The samples of a scenario as columns for report.json and its plots.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Label, Sample, TRACKED_FIGURES};

/// How many slab caches, vmalloc callers and modules a [`Series`] keeps by default.
pub const DEFAULT_SERIES_TOP: usize = 8;

/// Every sample of a scenario, one column per figure, index `i` of every column belonging to
/// sample `i`. A figure a sample lacks is 0 there (the agent leaves out empty caches).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// The cycle of each sample.
    pub cycles: Vec<u32>,
    /// When each sample was taken.
    pub labels: Vec<Label>,
    /// The judged total of each sample ([`Sample::tracked_bytes`], 0 when unknown).
    pub tracked: Vec<u64>,
    /// The [`TRACKED_FIGURES`] the kernel reported.
    pub meminfo: BTreeMap<String, Vec<u64>>,
    /// The slab caches that changed most (cache names are guest text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slab: BTreeMap<String, Vec<u64>>,
    /// The vmalloc callers that changed most (caller keys are guest text).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vmalloc: BTreeMap<String, Vec<u64>>,
    /// The module sizes that changed most (absent = 0: not loaded).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, Vec<u64>>,
}

impl Series {
    /// Columns of `samples` in the order given, keeping of each map only the `top` names whose
    /// values changed, ranked by how far their last value is from their first (then by their
    /// range), so that a report stays small.
    pub fn from_samples(samples: &[Sample], top: usize) -> Series {
        let meminfo = TRACKED_FIGURES
            .iter()
            .filter(|field| samples.iter().any(|s| s.meminfo.contains_key(**field)))
            .map(|field| (field.to_string(), column(samples, |s| &s.meminfo, field)))
            .collect();
        Series {
            cycles: samples.iter().map(|s| s.cycle).collect(),
            labels: samples.iter().map(|s| s.label).collect(),
            tracked: samples
                .iter()
                .map(|s| s.tracked_bytes().unwrap_or(0))
                .collect(),
            meminfo,
            slab: changed(samples, |s| &s.slab, top),
            vmalloc: changed(samples, |s| &s.vmalloc, top),
            modules: changed(samples, |s| &s.modules, top),
        }
    }

    /// The columns of `map` ranked as [`Series::from_samples`] kept them, the most changed first.
    pub fn ranked(map: &BTreeMap<String, Vec<u64>>) -> Vec<(&str, &[u64])> {
        let mut ranked: Vec<(&str, &[u64])> = map
            .iter()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
            .collect();
        ranked.sort_by(|a, b| change(b.1).cmp(&change(a.1)).then(a.0.cmp(b.0)));
        ranked
    }
}

type MapOf = fn(&Sample) -> &BTreeMap<String, u64>;

fn column(samples: &[Sample], map: MapOf, name: &str) -> Vec<u64> {
    samples
        .iter()
        .map(|s| map(s).get(name).copied().unwrap_or(0))
        .collect()
}

fn changed(samples: &[Sample], map: MapOf, top: usize) -> BTreeMap<String, Vec<u64>> {
    let names: BTreeSet<&String> = samples.iter().flat_map(|s| map(s).keys()).collect();
    let mut columns: BTreeMap<String, Vec<u64>> = names
        .into_iter()
        .map(|name| (name.clone(), column(samples, map, name)))
        .filter(|(_, values)| values.windows(2).any(|pair| pair[0] != pair[1]))
        .collect();
    let keep: BTreeSet<String> = Series::ranked(&columns)
        .into_iter()
        .take(top)
        .map(|(name, _)| name.to_string())
        .collect();
    columns.retain(|name, _| keep.contains(name));
    columns
}

/// How much a column changed: `|last − first|`, then its range.
fn change(values: &[u64]) -> (u64, u64) {
    let first = values.first().copied().unwrap_or(0);
    let last = values.last().copied().unwrap_or(0);
    let (min, max) = values
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (last.abs_diff(first), max.saturating_sub(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cycle: u32, slab: &[(&str, u64)]) -> Sample {
        Sample {
            cycle,
            label: if cycle == 0 {
                Label::Start
            } else {
                Label::Cycle
            },
            meminfo: BTreeMap::from([("SUnreclaim".to_string(), 1000 + cycle as u64)]),
            slab: slab.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Sample::default()
        }
    }

    #[test]
    fn only_names_that_changed_are_kept_the_most_changed_first() {
        let samples: Vec<Sample> = (0..4)
            .map(|c| {
                let c64 = c as u64;
                sample(
                    c,
                    &[
                        ("still", 4096),
                        ("big", 4096 * c64),
                        ("small", 100 + c64),
                        ("wobbly", 4096 * (c64 % 2)),
                    ],
                )
            })
            .collect();
        let series = Series::from_samples(&samples, 2);
        assert_eq!(series.cycles, [0, 1, 2, 3]);
        assert_eq!(series.labels[0], Label::Start);
        assert_eq!(series.tracked, [1000, 1001, 1002, 1003]);
        assert_eq!(series.meminfo.keys().collect::<Vec<_>>(), ["SUnreclaim"]);
        assert_eq!(
            Series::ranked(&series.slab)
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>(),
            ["big", "wobbly"]
        );
    }

    #[test]
    fn a_cache_missing_from_a_sample_is_zero_there_and_empty_maps_are_left_out_of_json() {
        let samples = [sample(0, &[]), sample(1, &[("new", 64)])];
        let series = Series::from_samples(&samples, DEFAULT_SERIES_TOP);
        assert_eq!(series.slab["new"], [0, 64]);
        let json = serde_json::to_value(&series).unwrap();
        assert!(json.get("vmalloc").is_none() && json.get("slab").is_some());
        let back: Series = serde_json::from_value(json).unwrap();
        assert_eq!(back, series);
    }
}
