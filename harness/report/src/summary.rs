//! The terminal summary table.

use std::fmt::Write;

use crate::text::{replace_undisplayable, truncate_chars};
use crate::{Bug, Report, ScenarioResult, Status};

/// The table never gets wider than this.
pub(crate) const SUMMARY_WIDTH: usize = 100;
/// Widest the kernel and scenario columns get before their text is cut.
const NAME_COLUMN_MAX: usize = 24;
/// Narrowest the failure column gets, however wide the name columns are.
const FAILURE_COLUMN_MIN: usize = 20;
const STATUS_WIDTH: usize = 6;
const TIME_WIDTH: usize = 8;
const FINDINGS_WIDTH: usize = 8;
const GAP: &str = "  ";
/// Bugs listed by name; the rest are only counted.
const BUGS_LISTED: usize = 10;

/// One row per (kernel, scenario), then the totals line.
pub(crate) fn render(report: &Report) -> String {
    let rows: Vec<(&str, &ScenarioResult)> = report
        .runs
        .iter()
        .flat_map(|run| {
            run.scenarios
                .iter()
                .map(move |scenario| (run.kernel.spec.as_str(), scenario))
        })
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        let column_width = |header: &str, texts: &mut dyn Iterator<Item = &str>| {
            texts
                .map(|text| text.chars().count())
                .chain([header.len()])
                .max()
                .unwrap_or(0)
                .min(NAME_COLUMN_MAX)
        };
        let kernel_width = column_width("KERNEL", &mut rows.iter().map(|(kernel, _)| *kernel));
        let scenario_width = column_width(
            "SCENARIO",
            &mut rows.iter().map(|(_, scenario)| scenario.name.as_str()),
        );
        let fixed = kernel_width + scenario_width + STATUS_WIDTH + TIME_WIDTH + FINDINGS_WIDTH;
        let failure_width = SUMMARY_WIDTH
            .saturating_sub(fixed + 5 * GAP.len())
            .max(FAILURE_COLUMN_MIN);

        push_line(
            &mut out,
            [
                format!("{:kernel_width$}", "KERNEL"),
                format!("{:scenario_width$}", "SCENARIO"),
                format!("{:STATUS_WIDTH$}", "STATUS"),
                format!("{:>TIME_WIDTH$}", "TIME"),
                format!("{:>FINDINGS_WIDTH$}", "FINDINGS"),
                "FIRST FAILURE".to_owned(),
            ],
        );
        for (kernel, scenario) in rows {
            push_line(
                &mut out,
                [
                    cell(kernel, kernel_width),
                    cell(&scenario.name, scenario_width),
                    format!("{:STATUS_WIDTH$}", scenario.status.label()),
                    format!("{:>TIME_WIDTH$}", duration(scenario.duration_s)),
                    format!("{:>FINDINGS_WIDTH$}", scenario.findings.len()),
                    first_failure(scenario)
                        .map(|text| cell(text, failure_width))
                        .unwrap_or_default(),
                ],
            );
        }
    }
    bugs_section(&mut out, &report.bugs);
    let _ = writeln!(out, "{}", report.totals());
    out
}

/// `N distinct bugs (M unexpected):` and a line per bug, unexpected ones first.
fn bugs_section(out: &mut String, bugs: &[Bug]) {
    if bugs.is_empty() {
        return;
    }
    let unexpected = bugs.iter().filter(|bug| !bug.expected).count();
    let _ = writeln!(
        out,
        "{} distinct bug{} ({unexpected} unexpected):",
        bugs.len(),
        if bugs.len() == 1 { "" } else { "s" },
    );
    let mut ordered: Vec<&Bug> = bugs.iter().collect();
    ordered.sort_by_key(|bug| bug.expected);
    for bug in ordered.iter().take(BUGS_LISTED) {
        let mut text = format!(
            "{} {}",
            if bug.expected {
                "expected  "
            } else {
                "UNEXPECTED"
            },
            bug.title
        );
        if let Some(module) = &bug.module {
            let _ = write!(text, " (module {module})");
        }
        let mut kernels: Vec<&str> = bug.occurrences.iter().map(|o| o.kernel.as_str()).collect();
        kernels.sort_unstable();
        kernels.dedup();
        let _ = write!(
            text,
            ": {} scenario run{} on {} kernel{}",
            bug.occurrences.len(),
            if bug.occurrences.len() == 1 { "" } else { "s" },
            kernels.len(),
            if kernels.len() == 1 { "" } else { "s" },
        );
        out.push_str("  ");
        out.push_str(cell(&text, SUMMARY_WIDTH - 2).trim_end());
        out.push('\n');
    }
    if bugs.len() > BUGS_LISTED {
        let _ = writeln!(out, "  … and {} more", bugs.len() - BUGS_LISTED);
    }
}

fn push_line(out: &mut String, cells: [String; 6]) {
    out.push_str(cells.join(GAP).trim_end());
    out.push('\n');
}

/// `text` made safe for a terminal, on one line, cut and padded to exactly `width` columns.
fn cell(text: &str, width: usize) -> String {
    let one_line = replace_undisplayable(text, '?').replace(['\n', '\t'], " ");
    format!("{:width$}", truncate_chars(&one_line, width))
}

/// What to show in the failure column: the first failure sentence, or the error.
fn first_failure(scenario: &ScenarioResult) -> Option<&str> {
    match scenario.status {
        Status::Passed => None,
        Status::Failed => scenario.failures.first().map(String::as_str),
        Status::Error => scenario
            .error
            .as_deref()
            .or(scenario.failures.first().map(String::as_str)),
    }
}

fn duration(seconds: f64) -> String {
    if seconds.is_finite() && seconds >= 0.0 {
        format!("{seconds:.1}s")
    } else {
        "-".to_owned()
    }
}
