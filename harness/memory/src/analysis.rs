//! The verdict on a load/unload loop's samples, and where the growth went.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::stats::{self, Fit};
use crate::{human_bytes, Label, Sample};

/// The floor never goes below this: a module leaking less than 1 KiB per load cannot be told
/// from the kernel's own drift (a correct module measured +0.2 KiB/cycle of SUnreclaim over 40
/// cycles) within a run of a few hundred cycles.
pub const MIN_FLOOR_BYTES: u64 = 1024;

/// How far the kernel's caches may settle during the steady part of a correct run: four 4 KiB
/// slab pages, above the 12 KiB that correct modules (timers, work, IRQs) grew over 10 TCG
/// cycles. Spread over the steady span it is a slope a correct module can show.
pub const SETTLING_BYTES: u64 = 16 * 1024;

/// One slab page: a cache or caller must grow more than this over a run to be named.
const PAGE_BYTES: u64 = 4096;

/// A growing cache or caller is named only above this many bytes per cycle.
const MIN_SOURCE_FLOOR_BYTES: u64 = 256;

/// Fewer steady samples than this give no verdict.
const MIN_STEADY_SAMPLES: usize = 5;

/// `cycles_needed` is not searched beyond this.
const MAX_CYCLES_NEEDED: u32 = 100_000;

/// At most this many growing caches and callers are listed.
const MAX_GROWTH_ENTRIES: usize = 10;

/// What the verdict may depend on besides the samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// The scenario's `expect.memory.max_leak_bytes_per_cycle`: the bar instead of the floor.
    pub max_leak_bytes_per_cycle: Option<u64>,
    /// The modules the scenario loads, to name the one a growing cache or caller belongs to.
    pub modules: Vec<String>,
}

/// `leak`, `clean` or `inconclusive`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The whole confidence interval of the growth lies above the bar.
    Leak,
    /// The whole confidence interval lies below the bar.
    Clean,
    /// The interval straddles the bar, or there were too few cycles.
    Inconclusive,
}

impl Verdict {
    /// The word report.json uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leak => "leak",
            Verdict::Clean => "clean",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// Where a [`Growth`] was measured.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A slab cache of `/proc/slabinfo`.
    Slab,
    /// A caller of `/proc/vmallocinfo`.
    Vmalloc,
}

/// A slab cache or vmalloc caller that grew by more than its own noise floor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Growth {
    /// Where it was measured.
    pub source: Source,
    /// The cache name or caller key (guest text: escape it before showing it).
    pub name: String,
    /// Its Theil–Sen slope over the steady samples.
    pub bytes_per_cycle: i64,
    /// The module its name or `[module]` tag names, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// The verdict on a loop's samples.
///
/// The judged total ([`Sample::tracked_bytes`]) of the cycle samples after a warm-up is fitted
/// with a Theil–Sen slope and Sen's 95% interval (distribution-free, robust to outliers and to
/// the page-sized steps of slab growth). The floor is estimated from the same run: the larger of
/// [`MIN_FLOOR_BYTES`] and `(SETTLING_BYTES + 2 × scatter) / span`, the slope that a bounded
/// settling of the kernel's caches plus one noisy sample at each end could fake over the steady
/// span. The bar is the scenario's `max_leak_bytes_per_cycle` when it gives one, else the floor.
/// Since the interval narrows as `span^1.5` and the floor as `span`, a longer run always decides.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// What the samples say.
    pub verdict: Verdict,
    /// The growth per cycle (negative when memory came back).
    pub bytes_per_cycle: i64,
    /// The 95% confidence interval of `bytes_per_cycle`, `(lo, hi)`.
    pub ci: (i64, i64),
    /// The noise floor of this run, bytes per cycle.
    pub floor: u64,
    /// The bar the interval was judged against: the scenario's bound, else `floor`.
    pub bar: u64,
    /// Cycles sampled.
    pub cycles: u32,
    /// Cycles left out of the fit at the start.
    pub warm_up: u32,
    /// For an inconclusive verdict: the cycles a run of the same behaviour would need to decide
    /// (`None` when decided, or when no run length would).
    pub cycles_needed: Option<u32>,
    /// The caches and callers that grew, largest first.
    pub growth: Vec<Growth>,
    /// One line for the finding, e.g.
    /// `memory leak of 3.0 KiB per cycle over 100 cycles (kmalloc-64 +3.0 KiB/cycle)`.
    pub title: String,
    /// The module the growth names, when it names one.
    pub module: Option<String>,
}

/// Judge the [`Label::Cycle`] samples (the others are context for the report); a cycle sampled
/// twice counts once, with its last sample.
pub fn analyze(samples: &[Sample], options: &Options) -> Analysis {
    let mut by_cycle: BTreeMap<u32, &Sample> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.label == Label::Cycle) {
        if sample.tracked_bytes().is_some() {
            by_cycle.insert(sample.cycle, sample);
        }
    }
    let first = by_cycle.keys().next().copied().unwrap_or(0);
    let cycles = by_cycle.keys().next_back().copied().unwrap_or(0) - first;
    let skipped = warm_up(cycles);
    let steady: Vec<&Sample> = by_cycle
        .range(first + skipped..)
        .map(|(_, sample)| *sample)
        .collect();
    let points: Vec<(f64, f64)> = steady
        .iter()
        .map(|s| (s.cycle as f64, s.tracked_bytes().unwrap_or(0) as f64))
        .collect();
    let span = (cycles - skipped) as f64;
    let fit = (steady.len() >= MIN_STEADY_SAMPLES)
        .then(|| stats::fit(&points))
        .flatten();
    let Some(fit) = fit else {
        let needed = (cycles + 1..MAX_CYCLES_NEEDED)
            .find(|&c| (c - warm_up(c)) as usize + 1 >= MIN_STEADY_SAMPLES);
        return Analysis {
            verdict: Verdict::Inconclusive,
            bytes_per_cycle: 0,
            ci: (0, 0),
            floor: MIN_FLOOR_BYTES,
            bar: options.max_leak_bytes_per_cycle.unwrap_or(MIN_FLOOR_BYTES),
            cycles,
            warm_up: skipped,
            cycles_needed: needed,
            growth: Vec::new(),
            title: format!("memory growth unknown after {cycles} cycles: too few samples"),
            module: None,
        };
    };
    let floor = floor(span, fit.scatter);
    let bar = options.max_leak_bytes_per_cycle.map_or(floor, |b| b as f64);
    let verdict = decide(fit.lo, fit.hi, bar);
    let cycles_needed = (verdict == Verdict::Inconclusive)
        .then(|| cycles_needed(&fit, cycles, span, options.max_leak_bytes_per_cycle))
        .flatten();
    let growth = growth(&steady, span, &options.modules);
    let module = growth.iter().find_map(|g| g.module.clone());
    let mut analysis = Analysis {
        verdict,
        bytes_per_cycle: fit.slope.round() as i64,
        ci: (fit.lo.floor() as i64, fit.hi.ceil() as i64),
        floor: floor.ceil() as u64,
        bar: bar.ceil() as u64,
        cycles,
        warm_up: skipped,
        cycles_needed,
        growth,
        title: String::new(),
        module,
    };
    analysis.title = title(&analysis);
    analysis
}

/// Cycles left out at the start: caches fill and RCU-deferred frees catch up during the first
/// few cycles of a correct module.
fn warm_up(cycles: u32) -> u32 {
    warm_up_of(cycles).min(cycles)
}

fn warm_up_of(cycles: u32) -> u32 {
    (cycles / 5).clamp(2, 20)
}

/// The noise floor of a steady span whose points scatter by `scatter` (see [`Analysis`]).
fn floor(span: f64, scatter: f64) -> f64 {
    ((SETTLING_BYTES as f64 + 2.0 * scatter) / span.max(1.0)).max(MIN_FLOOR_BYTES as f64)
}

fn decide(lo: f64, hi: f64, bar: f64) -> Verdict {
    if lo > bar {
        Verdict::Leak
    } else if hi < bar {
        Verdict::Clean
    } else {
        Verdict::Inconclusive
    }
}

/// The shortest run that would decide if memory kept behaving as it did: the interval's halves
/// shrink as `span^1.5` (the standard error of a slope), the floor as `span`.
fn cycles_needed(fit: &Fit, cycles: u32, span: f64, bar: Option<u64>) -> Option<u32> {
    let decides = |c: u32| {
        let new_span = (c - warm_up(c)) as f64;
        let shrink = (span / new_span).powf(1.5);
        let lo = fit.slope - (fit.slope - fit.lo) * shrink;
        let hi = fit.slope + (fit.hi - fit.slope) * shrink;
        let bar = bar.map_or_else(|| floor(new_span, fit.scatter), |b| b as f64);
        decide(lo, hi, bar) != Verdict::Inconclusive
    };
    let mut upper = cycles.max(4);
    while !decides(upper) {
        upper = upper.checked_mul(2).filter(|&c| c <= MAX_CYCLES_NEEDED)?;
    }
    let mut lower = cycles;
    while upper - lower > 1 {
        let mid = lower + (upper - lower) / 2;
        if decides(mid) {
            upper = mid;
        } else {
            lower = mid;
        }
    }
    Some(upper)
}

/// The slab caches and vmalloc callers whose own slope's interval lies above their own floor,
/// largest first. A name whose values move by less than a page over the run is skipped unfitted.
fn growth(steady: &[&Sample], span: f64, modules: &[String]) -> Vec<Growth> {
    let mut found = Vec::new();
    for source in [Source::Slab, Source::Vmalloc] {
        let map: fn(&Sample) -> &BTreeMap<String, u64> = match source {
            Source::Slab => |s| &s.slab,
            Source::Vmalloc => |s| &s.vmalloc,
        };
        let names: BTreeSet<&String> = steady.iter().flat_map(|s| map(s).keys()).collect();
        for name in names {
            let values: Vec<u64> = steady
                .iter()
                .map(|s| map(s).get(name).copied().unwrap_or(0))
                .collect();
            let (min, max) = values
                .iter()
                .fold((u64::MAX, 0), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            if max.saturating_sub(min) < PAGE_BYTES {
                continue;
            }
            let points: Vec<(f64, f64)> = steady
                .iter()
                .zip(&values)
                .map(|(s, &v)| (s.cycle as f64, v as f64))
                .collect();
            let Some(fit) = stats::fit(&points) else {
                continue;
            };
            let own_floor = ((PAGE_BYTES as f64 + 2.0 * fit.scatter) / span.max(1.0))
                .max(MIN_SOURCE_FLOOR_BYTES as f64);
            if fit.lo > own_floor {
                found.push(Growth {
                    source,
                    name: name.clone(),
                    bytes_per_cycle: fit.slope.round() as i64,
                    module: module_named(source, name, modules),
                });
            }
        }
    }
    found.sort_by(|a, b| {
        b.bytes_per_cycle
            .cmp(&a.bytes_per_cycle)
            .then_with(|| a.name.cmp(&b.name))
    });
    found.truncate(MAX_GROWTH_ENTRIES);
    found
}

/// The module a cache or caller names: a vmalloc caller's ` [module]` tag, else the longest
/// scenario module that the name is or starts with (followed by `_`), e.g. `mh_leaky_init` or
/// a module's own `mh_leaky_cache`.
fn module_named(source: Source, name: &str, modules: &[String]) -> Option<String> {
    if source == Source::Vmalloc {
        if let Some((_, tag)) = name.rsplit_once(" [") {
            return tag.strip_suffix(']').map(str::to_string);
        }
    }
    modules
        .iter()
        .map(|m| m.replace('-', "_"))
        .filter(|m| {
            name.strip_prefix(m.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
        })
        .max_by_key(String::len)
}

fn title(analysis: &Analysis) -> String {
    let rate = human_bytes(analysis.bytes_per_cycle);
    let cycles = analysis.cycles;
    match analysis.verdict {
        Verdict::Leak => {
            let named: Vec<String> = analysis
                .growth
                .iter()
                .take(3)
                .map(|g| format!("{} +{}/cycle", g.name, human_bytes(g.bytes_per_cycle)))
                .collect();
            let sources = if named.is_empty() {
                String::new()
            } else {
                format!(" ({})", named.join(", "))
            };
            format!("memory leak of {rate} per cycle over {cycles} cycles{sources}")
        }
        Verdict::Clean => format!(
            "no memory growth above {} per cycle over {cycles} cycles (measured {rate})",
            human_bytes(analysis.bar as i64)
        ),
        Verdict::Inconclusive => {
            let needed = analysis.cycles_needed.map_or(String::new(), |c| {
                format!(": about {c} cycles would decide")
            });
            format!(
                "memory growth of {rate} per cycle over {cycles} cycles is inconclusive \
                 against {} per cycle{needed}",
                human_bytes(analysis.bar as i64)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_caller_names_its_module_and_a_prefix_names_the_longest_module() {
        let modules = vec!["mh".to_string(), "mh-leaky".to_string()];
        let named = |source, name| module_named(source, name, &modules);
        assert_eq!(
            named(Source::Vmalloc, "foo_init [other]").as_deref(),
            Some("other")
        );
        assert_eq!(
            named(Source::Vmalloc, "mh_leaky_init").as_deref(),
            Some("mh_leaky")
        );
        assert_eq!(named(Source::Slab, "mh_cache").as_deref(), Some("mh"));
        assert_eq!(named(Source::Slab, "mhx_cache"), None);
        assert_eq!(named(Source::Slab, "kmalloc-64"), None);
    }

    #[test]
    fn warm_up_is_a_fifth_of_the_run_within_bounds() {
        assert_eq!([1, 10, 20, 100, 1000].map(warm_up), [1, 2, 4, 20, 20]);
    }

    #[test]
    fn the_floor_falls_with_the_span_down_to_its_minimum() {
        assert_eq!(floor(8.0, 0.0), 2048.0);
        assert_eq!(floor(8.0, 4096.0), 3072.0);
        assert_eq!(floor(80.0, 0.0), MIN_FLOOR_BYTES as f64);
    }
}
