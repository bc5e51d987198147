//! Stage 4 of a scenario: from what was observed to a verdict. Findings get source lines, the
//! memory samples a leak verdict, and everything is matched against the scenario's expectations.

use std::path::{Path, PathBuf};

use modharness_images::debug_symbols;
use modharness_images::kernel::Kernel;
use modharness_memory::{self as memory, Series, Verdict};
use modharness_report as report;
use modharness_scenario::{self as scenario, FoundFinding, Scenario};
use modharness_triage::{Finding, Symbolizer};

use super::watch::{Observed, Storm};

/// A finding the harness makes itself (`hang`, `vm_crash`, `leak`), not the kernel.
pub(crate) fn own_finding(
    kind: &str,
    title: String,
    module: Option<String>,
) -> report::FindingEntry {
    report::FindingEntry {
        kind: kind.into(),
        title,
        module,
        ..Default::default()
    }
}

/// Source lines for frames in the modules this run built (they carry debug info), and in the
/// kernel when its debug vmlinux was fetched (`images fetch --debug-symbols`).
pub(crate) fn symbolize(
    kernel: &Kernel,
    cache_root: &Path,
    files: &[(String, PathBuf)],
    findings: &mut [Finding],
) {
    let mut symbolizer = Symbolizer::new();
    if let Some(vmlinux) = debug_symbols::cached_debug_vmlinux(kernel, cache_root) {
        symbolizer.set_vmlinux(&vmlinux);
    }
    for (guest, host) in files {
        if let Some(name) = guest
            .strip_prefix("/modharness/modules/")
            .and_then(|f| f.strip_suffix(".ko"))
        {
            symbolizer.add_module(name, host);
        }
    }
    for finding in findings {
        symbolizer.symbolize(finding);
        symbolizer.name_located(finding);
    }
}

/// Totals over a scenario's storms, for the report.
fn storm_totals(storms: &[Storm]) -> Option<report::IrqResult> {
    if storms.is_empty() {
        return None;
    }
    let mut devices: Vec<&str> = storms.iter().map(|s| s.device.as_str()).collect();
    devices.dedup();
    let delivered: u64 = storms.iter().map(|s| s.delivered).sum();
    let seconds: f64 = storms.iter().map(|s| s.seconds).sum();
    Some(report::IrqResult {
        device: devices.join("+"),
        delivered,
        per_second: if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
        raised: storms.iter().map(|s| s.raised).sum(),
    })
}

/// The memory verdict, and a `leak` finding when it is one: blamed on the module the growth
/// names, else on the scenario's only module.
fn judge_memory(scenario: &Scenario, seen: &mut Observed) -> Option<report::MemoryResult> {
    if seen.memory.len() < 2 {
        return None;
    }
    let modules: Vec<String> = scenario.module_names().into_iter().collect();
    let analysis = memory::analyze(
        &seen.memory,
        &memory::Options {
            max_leak_bytes_per_cycle: scenario
                .expect
                .memory
                .as_ref()
                .map(|m| m.max_leak_bytes_per_cycle),
            modules: modules.clone(),
        },
    );
    if analysis.verdict == Verdict::Leak {
        let only = (modules.len() == 1).then(|| modules[0].clone());
        seen.own.push(own_finding(
            "leak",
            analysis.title.clone(),
            analysis.module.clone().or(only),
        ));
    }
    let series = Series::from_samples(&seen.memory, memory::DEFAULT_SERIES_TOP);
    Some(report::MemoryResult::from_analysis(&analysis, series))
}

/// The mass probe's report, and a `leak` finding for each module that kept memory above the
/// scenario's bar in every round (two rounds at least: a first load fills caches for good).
fn judge_probe(scenario: &Scenario, seen: &mut Observed) -> Option<report::MassProbeResult> {
    if !seen.probe.started() {
        return None;
    }
    let probe = seen.probe.result();
    if let Some(bar) = scenario
        .expect
        .memory
        .as_ref()
        .map(|m| m.max_leak_bytes_per_cycle)
    {
        for module in &probe.modules {
            let rounds = &module.unreturned_bytes;
            if rounds.len() >= 2 && rounds.iter().all(|b| *b > bar as i64) {
                let mean = rounds.iter().sum::<i64>() / rounds.len() as i64;
                seen.own.push(own_finding(
                    "leak",
                    format!(
                        "memory not returned by {}: {} per load over {} rounds",
                        module.name,
                        memory::human_bytes(mean),
                        rounds.len()
                    ),
                    Some(module.name.clone()),
                ));
            }
        }
    }
    Some(probe)
}

/// Fill `result` from what was seen: findings (each marked expected or not), memory, steps,
/// storms, failures and the status.
pub(crate) fn judge(scenario: &Scenario, mut seen: Observed, result: &mut report::ScenarioResult) {
    result.memory = judge_memory(scenario, &mut seen);
    result.mass_probe = judge_probe(scenario, &mut seen);
    let mut entries: Vec<report::FindingEntry> = seen
        .findings
        .iter()
        .map(|f| report::FindingEntry {
            kind: f.kind.as_str().into(),
            title: f.title.clone(),
            module: f.module.clone(),
            expected: false,
            time_s: f.time_s,
            panicked: f.panicked,
            corrupted: f.corrupted,
            frames: f.frames.iter().map(ToString::to_string).collect(),
        })
        .collect();
    entries.append(&mut seen.own);
    let found: Vec<FoundFinding<'_>> = entries
        .iter()
        .map(|f| FoundFinding {
            kind: &f.kind,
            module: f.module.as_deref(),
            title: &f.title,
        })
        .collect();
    let judgement = scenario::judge(&scenario.expect, &found);
    let mut failures = Vec::new();
    for (entry, expected) in entries.iter().zip(&judgement.expected) {
        if !expected {
            failures.push(format!(
                "unexpected {}: {}{}",
                entry.kind,
                entry.title,
                entry
                    .module
                    .as_ref()
                    .map_or(String::new(), |m| format!(" (module {m})"))
            ));
        }
    }
    for &missing in &judgement.missing {
        let want = &scenario.expect.findings[missing];
        failures.push(format!(
            "expected {}{} did not appear",
            want.kinds.join(" or "),
            want.module
                .as_ref()
                .map_or(String::new(), |m| format!(" from module {m}"))
        ));
    }
    // When a crash is expected, steps after it failing is the crash's doing.
    if scenario.expect.findings.is_empty() {
        failures.extend(seen.step_failures.iter().take(5).cloned());
    }
    for (entry, expected) in entries.iter_mut().zip(judgement.expected) {
        entry.expected = expected;
    }
    if seen.unloads_ok > 0 && seen.load_unload_ms > 0.0 {
        seen.steps.load_unload_per_s =
            Some(seen.unloads_ok as f64 / (seen.load_unload_ms / 1000.0));
    }
    result.findings = entries;
    result.steps = seen.steps;
    result.irq = storm_totals(&seen.storms);
    result.status = if seen.interrupted {
        result.error = Some("interrupted".into());
        report::Status::Error
    } else if failures.is_empty() {
        report::Status::Passed
    } else {
        report::Status::Failed
    };
    result.failures = failures;
}
