//! The matrix parts of the HTML page: what changed since the baseline, first, and the
//! kernel × scenario grid.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::html::{escape, is_safe_link};
use crate::{BugLabel, Report, Status};

/// New failures, new bugs, fixed bugs and the count of those still there; nothing without a
/// baseline.
pub(crate) fn comparison_section(page: &mut String, report: &Report) {
    let Some(comparison) = &report.comparison else {
        return;
    };
    let _ = write!(
        page,
        "<h2>Since the baseline of {}</h2>\n<ul>\n",
        escape(&comparison.baseline_started_at)
    );
    let mut any = false;
    for change in comparison.changes.iter().filter(|c| c.is_new_failure()) {
        any = true;
        let _ = writeln!(
            page,
            "<li><span class=\"failed\">NEW FAILURE</span> {} on {}</li>",
            escape(&change.scenario),
            escape(&change.kernel)
        );
    }
    for bug in report
        .bugs
        .iter()
        .filter(|b| b.baseline == Some(BugLabel::New))
    {
        any = true;
        let class = if bug.expected { "passed" } else { "failed" };
        let _ = writeln!(
            page,
            "<li><span class=\"{class}\">new bug</span> {} ({})</li>",
            escape(&bug.title),
            kernels_of(bug)
        );
    }
    for bug in &comparison.fixed {
        any = true;
        let _ = writeln!(
            page,
            "<li><span class=\"passed\">fixed</span> {} (was on {})</li>",
            escape(&bug.title),
            kernels_of(bug)
        );
    }
    let still = report
        .bugs
        .iter()
        .filter(|b| b.baseline == Some(BugLabel::Still))
        .count();
    if !any {
        page.push_str("<li>nothing new</li>\n");
    }
    let _ = writeln!(page, "<li>{still} bug(s) still there</li>\n</ul>");
}

fn kernels_of(bug: &crate::Bug) -> String {
    let kernels: BTreeSet<&str> = bug.occurrences.iter().map(|o| o.kernel.as_str()).collect();
    escape(&kernels.into_iter().collect::<Vec<_>>().join(", "))
}

/// One row per scenario, one column per kernel, each cell its status linked to its console
/// log; only when the report has more than one kernel.
pub(crate) fn grid(page: &mut String, report: &Report) {
    if report.runs.len() < 2 {
        return;
    }
    let mut names: Vec<&str> = Vec::new();
    for scenario in report.runs.iter().flat_map(|r| &r.scenarios) {
        if !names.contains(&scenario.name.as_str()) {
            names.push(&scenario.name);
        }
    }
    page.push_str("<h2>Kernels × scenarios</h2>\n<table>\n<thead><tr><th>Scenario</th>");
    for run in &report.runs {
        let _ = write!(page, "<th>{}</th>", escape(&run.kernel.spec));
    }
    page.push_str("</tr></thead>\n<tbody>\n");
    for name in names {
        let _ = write!(page, "<tr><td>{}</td>", escape(name));
        for run in &report.runs {
            match run.scenarios.iter().find(|s| s.name == name) {
                None => page.push_str("<td>—</td>"),
                Some(s) => {
                    let class = match s.status {
                        Status::Passed => "passed",
                        Status::Failed => "failed",
                        Status::Error => "error",
                    };
                    let label = s.status.label();
                    if is_safe_link(&s.console_log) {
                        let _ = write!(
                            page,
                            "<td class=\"{class}\"><a href=\"{}\">{label}</a></td>",
                            escape(&s.console_log)
                        );
                    } else {
                        let _ = write!(page, "<td class=\"{class}\">{label}</td>");
                    }
                }
            }
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");
}
