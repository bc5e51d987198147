//! Merging several reports (matrix shards, runs on several machines) into one.

use chrono::{DateTime, FixedOffset, TimeDelta};

use crate::{Host, Report, Run, Status, SCHEMA_VERSION};

/// See [`Report::merge`] for the rules.
pub(crate) fn merge(reports: Vec<Report>) -> Report {
    let started_at = earliest_start(&reports).unwrap_or_default();
    let duration_s = wall_clock_span(&reports).unwrap_or_else(|| {
        reports
            .iter()
            .map(|report| report.duration_s)
            .fold(0.0, f64::max)
    });
    let host = Host {
        qemu: distinct_joined(reports.iter().map(|report| report.host.qemu.as_str())),
        accel: distinct_joined(reports.iter().map(|report| report.host.accel.as_str())),
    };
    let mut runs: Vec<Run> = Vec::new();
    for run in reports.into_iter().flat_map(|report| report.runs) {
        match runs
            .iter_mut()
            .find(|merged| merged.kernel.spec == run.kernel.spec)
        {
            Some(merged) => {
                if merged.kernel.release.is_empty() {
                    merged.kernel.release = run.kernel.release;
                }
                merged.scenarios.extend(run.scenarios);
            }
            None => runs.push(run),
        }
    }
    let mut merged = Report {
        schema: SCHEMA_VERSION,
        started_at,
        duration_s,
        host,
        runs,
        bugs: Vec::new(),
        comparison: None,
    };
    canonical_order(&mut merged.runs);
    merged.collect_bugs();
    merged
}

/// Kernels by spec, scenarios by name, each scenario once: what makes a merge independent of the
/// order of its inputs, and merging a report again with itself a no-op. Of two results for one
/// scenario (a shard run twice), a verdict beats an infrastructure error; then the later log.
fn canonical_order(runs: &mut [Run]) {
    runs.sort_by(|a, b| a.kernel.spec.cmp(&b.kernel.spec));
    for run in runs {
        run.scenarios.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then((b.status == Status::Error).cmp(&(a.status == Status::Error)))
                .then(b.console_log.cmp(&a.console_log))
        });
        run.scenarios
            .dedup_by(|later, kept| later.name == kept.name);
    }
}

/// The `started_at` text of the earliest report: compared as instants when every one parses,
/// as text otherwise (RFC 3339 UTC strings of one format sort chronologically).
fn earliest_start(reports: &[Report]) -> Option<String> {
    match parsed_starts(reports) {
        Some(starts) => starts
            .iter()
            .zip(reports)
            .min_by_key(|(start, _)| **start)
            .map(|(_, report)| report.started_at.clone()),
        None => reports.iter().map(|report| report.started_at.clone()).min(),
    }
}

/// Seconds from the earliest start to the latest end, when every start parses.
fn wall_clock_span(reports: &[Report]) -> Option<f64> {
    let starts = parsed_starts(reports)?;
    let first_start = *starts.iter().min()?;
    starts
        .iter()
        .zip(reports)
        .map(|(start, report)| {
            let duration = TimeDelta::from_std(
                std::time::Duration::try_from_secs_f64(report.duration_s).ok()?,
            )
            .ok()?;
            let end = start.checked_add_signed(duration)?;
            Some((end - first_start).as_seconds_f64())
        })
        .collect::<Option<Vec<f64>>>()?
        .into_iter()
        .reduce(f64::max)
}

fn parsed_starts(reports: &[Report]) -> Option<Vec<DateTime<FixedOffset>>> {
    reports
        .iter()
        .map(|report| DateTime::parse_from_rfc3339(&report.started_at).ok())
        .collect()
}

/// The one value all agree on, or the distinct non-empty values joined with `", "`.
fn distinct_joined<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for value in values.filter(|value| !value.is_empty()) {
        if !distinct.contains(&value) {
            distinct.push(value);
        }
    }
    distinct.sort_unstable();
    distinct.join(", ")
}
