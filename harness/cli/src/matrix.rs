//! `modharness matrix`: the cells of a matrix file, cut to this job's shard.
//!
//! Each CI job of a nightly pipeline runs `matrix --shard I/N` on the same file (and the same
//! baseline): every job computes the same split, so the shards cover every cell once. The split
//! evens out expected cost: a cell's duration in the baseline report when it has one, else an
//! estimate from the scenario's steps and the kernel's kind.

use std::path::{Path, PathBuf};

use modharness_images::kernel::KernelSpec;
use modharness_report::Report;
use modharness_scenario::{self as scenario, KernelCells};

use crate::engine::{self, schedule};
use crate::error::{Failure, Result};

/// The matrix file `matrix` reads when none is named: `ci/matrix.yaml` of the project.
pub fn default_matrix(home: &Path) -> PathBuf {
    home.join("ci").join("matrix.yaml")
}

/// The default suite: every bundled scenario that is not `long`.
pub fn default_suite(home: &Path) -> Result<Vec<PathBuf>> {
    let dir = home.join("scenarios");
    let files: Vec<PathBuf> = scenario::bundled_scenarios(&dir)
        .iter()
        .map(|n| dir.join(format!("{n}.yaml")))
        .collect();
    if files.is_empty() {
        return Err(Failure::usage(format!("no scenarios in {}", dir.display())));
    }
    let scenarios = engine::load_scenarios(&files)?;
    Ok(files
        .into_iter()
        .zip(scenarios)
        .filter(|(_, (s, _))| !s.long)
        .map(|(file, _)| file)
        .collect())
}

/// Parses `--shard I/N` (1 ≤ I ≤ N).
pub fn parse_shard(text: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("`{text}`: expected I/N with 1 <= I <= N, e.g. 2/4");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || n == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// The cells of `matrix_file` this job runs: all of them, or shard `(I, N)`'s. Every input is
/// checked first (the file with `file:line:column`, every scenario, every kernel spec).
pub fn cells(
    matrix_file: &Path,
    home: &Path,
    shard: Option<(u32, u32)>,
    baseline: Option<&Report>,
) -> Result<Vec<KernelCells>> {
    let matrix = scenario::load_matrix(matrix_file)?;
    matrix.check_specs(|spec| {
        KernelSpec::parse(spec)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let suite = match matrix.scenarios {
        None if matrix.kernels.iter().any(|k| k.scenarios.is_none()) => default_suite(home)?,
        _ => Vec::new(),
    };
    let mut all = matrix.cells(&home.join("scenarios"), &suite)?;
    let Some((index, count)) = shard else {
        return Ok(all);
    };
    let mut costs = Vec::new();
    for kernel in &all {
        let scenarios = engine::load_scenarios(&kernel.scenarios)?;
        for (parsed, _) in &scenarios {
            let measured = baseline.and_then(|b| duration_in(b, &kernel.spec, &parsed.name));
            costs.push(measured.unwrap_or_else(|| {
                schedule::expected_seconds(parsed, assumed_slowdown(&kernel.spec))
            }));
        }
    }
    let shard_of = schedule::partition(&costs, count);
    let mut next = shard_of.into_iter();
    for kernel in &mut all {
        kernel.scenarios.retain(|_| next.next() == Some(index - 1));
    }
    all.retain(|k| !k.scenarios.is_empty());
    Ok(all)
}

/// How much slower than stock a kernel is assumed to run before it is fetched: a recipe kernel
/// carries the debug checks (KASAN and kmemleak: 8×, see `plan::slowdown`).
fn assumed_slowdown(spec: &str) -> u32 {
    match KernelSpec::parse(spec) {
        Ok(KernelSpec::Recipe { .. }) => 8,
        _ => 1,
    }
}

fn duration_in(report: &Report, kernel: &str, scenario: &str) -> Option<f64> {
    report
        .runs
        .iter()
        .filter(|r| r.kernel.spec == kernel)
        .flat_map(|r| &r.scenarios)
        .find(|s| s.name == scenario)
        .map(|s| s.duration_s)
        .filter(|d| d.is_finite() && *d > 0.0)
}

/// The exit code of a matrix run. With a baseline only what is new counts (1): a scenario that
/// fails and did not, or a new unexpected bug; a bug that was already there keeps the night
/// green, as the dashboard's "still" list shows it. Then an infrastructure error (3); else 0.
/// Without a baseline, any failed scenario is 1.
pub fn exit_code(report: &Report) -> u8 {
    let errors = report
        .runs
        .iter()
        .flat_map(|r| &r.scenarios)
        .any(|s| s.status == modharness_report::Status::Error);
    if report.has_new_failures() {
        1
    } else if errors {
        crate::error::EXIT_INFRA as u8
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_arguments_are_checked() {
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        for bad in ["0/2", "3/2", "1/0", "x", "1/", "1/2/3"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recipe_kernels_are_assumed_slow_before_they_are_fetched() {
        assert_eq!(assumed_slowdown("debug:latest"), 8);
        assert_eq!(assumed_slowdown("debian:latest"), 1);
    }
}
