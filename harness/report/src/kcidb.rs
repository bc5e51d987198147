//! `report.kcidb.json`: the run in KernelCI's common results format (KCIDB, schema 5.3), for
//! submission to a KCIDB database with `kcidb-submit`.
//!
//! A kernel becomes a checkout (what was tested: the spec) and a build (the release that spec
//! named), a scenario a test `modharness.SCENARIO` of that build, a distinct bug an issue, and
//! each scenario that showed it an incident. Identifiers are derived from the report's start,
//! the kernel spec and names, so writing the same report twice gives the same file.

use std::path::Path;

use serde_json::{json, Value};

use crate::junit::console_tail;
use crate::{Report, ScenarioResult, Status};

/// The KCIDB origin of everything modharness submits.
pub const ORIGIN: &str = "modharness";
/// KCIDB's limit on a log excerpt, in characters.
const MAX_EXCERPT_CHARS: usize = 16 * 1024;

/// The KCIDB document for `report`; console logs are resolved against `out_dir`.
pub(crate) fn render(report: &Report, out_dir: &Path) -> Value {
    let run_id = id_part(&report.started_at);
    let mut checkouts = Vec::new();
    let mut builds = Vec::new();
    let mut tests = Vec::new();
    for run in &report.runs {
        let checkout_id = format!("{ORIGIN}:{run_id}:{}", id_part(&run.kernel.spec));
        let build_id = format!("{checkout_id}:{}", id_part(&run.kernel.release));
        checkouts.push(json!({
            "id": checkout_id,
            "origin": ORIGIN,
            "tree_name": tree_name(&run.kernel.spec),
            "comment": run.kernel.spec,
            "start_time": report.started_at,
            "valid": true,
        }));
        builds.push(json!({
            "id": build_id,
            "checkout_id": checkout_id,
            "origin": ORIGIN,
            "architecture": "x86_64",
            "config_name": run.kernel.release,
            "comment": format!("{} ({})", run.kernel.release, run.kernel.spec),
            "start_time": report.started_at,
            "status": "PASS",
        }));
        for scenario in &run.scenarios {
            tests.push(test(
                scenario,
                &build_id,
                run.accel.as_deref(),
                report,
                out_dir,
            ));
        }
    }
    let mut issues = Vec::new();
    let mut incidents = Vec::new();
    for bug in &report.bugs {
        let issue_id = format!(
            "{ORIGIN}:{}",
            id_part(&format!(
                "{}|{}",
                bug.title,
                bug.module.as_deref().unwrap_or("")
            ))
        );
        issues.push(json!({
            "id": issue_id,
            "version": 1,
            "origin": ORIGIN,
            "report_subject": clean(&bug.title),
            "culprit": { "code": true, "tool": false, "harness": false },
            "comment": format!(
                "{}{}{}",
                bug.kind,
                bug.module.as_ref().map_or(String::new(), |m| format!(" in module {m}")),
                if bug.expected { " (expected by its scenarios)" } else { "" }
            ),
        }));
        for occurrence in &bug.occurrences {
            let test_id = format!(
                "{ORIGIN}:{run_id}:{}:{}:{}",
                id_part(&occurrence.kernel),
                id_part(&occurrence.release),
                id_part(&occurrence.scenario)
            );
            incidents.push(json!({
                "id": format!("{test_id}:{}", issue_id.trim_start_matches("modharness:")),
                "origin": ORIGIN,
                "issue_id": issue_id,
                "issue_version": 1,
                "test_id": test_id,
                "present": true,
            }));
        }
    }
    json!({
        "version": { "major": 5, "minor": 3 },
        "checkouts": checkouts,
        "builds": builds,
        "tests": tests,
        "issues": issues,
        "incidents": incidents,
    })
}

fn test(
    scenario: &ScenarioResult,
    build_id: &str,
    accel: Option<&str>,
    report: &Report,
    out_dir: &Path,
) -> Value {
    let status = match scenario.status {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Error => "ERROR",
    };
    let mut test = json!({
        "id": format!("{build_id}:{}", id_part(&scenario.name)),
        "build_id": build_id,
        "origin": ORIGIN,
        "path": format!("modharness.{}", path_part(&scenario.name)),
        "status": status,
        "duration": finite(scenario.duration_s),
        "start_time": report.started_at,
        "environment": {
            "comment": format!("QEMU {} ({})", report.host.qemu, accel.unwrap_or(&report.host.accel)),
        },
    });
    if scenario.status != Status::Passed {
        let first = scenario
            .findings
            .first()
            .map(|f| f.title.clone())
            .or_else(|| scenario.failures.first().cloned())
            .or_else(|| scenario.error.clone())
            .unwrap_or_default();
        let tail = console_tail(&out_dir.join(&scenario.console_log)).unwrap_or_default();
        test["comment"] = json!(clean(&first));
        test["log_excerpt"] = json!(excerpt(&tail));
    }
    test
}

/// The tree a spec tests: `debian`, `debug` (a recipe), `path`, `tree`.
fn tree_name(spec: &str) -> String {
    spec.split(':').next().unwrap_or("kernel").to_owned()
}

/// Text for an identifier: anything but NUL may follow the origin, but `:` separates our parts.
fn id_part(text: &str) -> String {
    text.chars()
        .map(|c| if c == ':' || c == '\0' { '_' } else { c })
        .collect()
}

/// A test path component: `[a-zA-Z0-9_-]+`.
fn path_part(name: &str) -> String {
    let part: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if part.is_empty() {
        "_".into()
    } else {
        part
    }
}

/// Guest text without NUL, which KCIDB strings may not hold.
fn clean(text: &str) -> String {
    text.replace('\0', "")
}

/// The end of a console log that fits KCIDB's excerpt limit.
fn excerpt(tail: &str) -> String {
    let text = clean(tail);
    let count = text.chars().count();
    text.chars()
        .skip(count.saturating_sub(MAX_EXCERPT_CHARS))
        .collect()
}

fn finite(value: f64) -> f64 {
    if value.is_finite() && value >= 0.0 {
        value
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_paths_keep_to_the_schemas_patterns() {
        assert_eq!(id_part("debian:latest"), "debian_latest");
        assert_eq!(path_part("timer-race"), "timer-race");
        assert_eq!(path_part("a.b c"), "a_b_c");
        assert_eq!(excerpt(&"x".repeat(20_000)).len(), MAX_EXCERPT_CHARS);
        assert_eq!(clean("a\0b"), "ab");
    }
}
