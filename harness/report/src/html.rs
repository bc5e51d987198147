//! A self-contained HTML page: inline style, no scripts, no external assets.

use std::fmt::Write;

use crate::matrix_html::{comparison_section, grid};
use crate::plot::memory_charts;
use crate::probe_html::probe_section;
use crate::text::replace_undisplayable;
use crate::{Bug, FindingEntry, MemoryResult, Report, ScenarioResult, Status};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%;margin-bottom:2em}\
th,td{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f0f0f0}ul{margin:0;padding-left:1.2em}\
.passed{color:#1a7f37;font-weight:bold}.failed{color:#cf222e;font-weight:bold}\
.error{color:#9a6700;font-weight:bold}.tag{font-size:.8em;border:1px solid #999;\
border-radius:3px;padding:0 .3em;margin-left:.3em}pre{white-space:pre-wrap;margin:0}\
.charts{display:flex;flex-wrap:wrap;gap:1em;margin-bottom:2em}td.passed a,td.failed a,td.error a{color:inherit}";

/// Text from the report (much of it from the guest) as HTML character data or attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in replace_undisplayable(text, '\u{FFFD}').chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The whole page.
pub(crate) fn render(report: &Report) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>modharness report</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>modharness report</h1>\n\
         <p>Started {} · {:.1} s · QEMU {} · accel {}</p>\n<p><strong>{}</strong></p>\n",
        escape(&report.started_at),
        report.duration_s,
        escape(&report.host.qemu),
        escape(&report.host.accel),
        escape(&report.totals().to_string()),
    );
    comparison_section(&mut page, report);
    grid(&mut page, report);
    bugs_table(&mut page, &report.bugs);
    for run in &report.runs {
        let _ = write!(
            page,
            "<h2>{} ({})</h2>\n<table>\n<thead><tr><th>Scenario</th><th>Status</th>\
             <th>Duration</th><th>Findings</th><th>Memory</th><th>Failures</th>\
             <th>Console</th></tr></thead>\n<tbody>\n",
            escape(&run.kernel.spec),
            escape(&run.kernel.release),
        );
        for scenario in &run.scenarios {
            scenario_row(&mut page, scenario);
        }
        page.push_str("</tbody>\n</table>\n");
        for scenario in &run.scenarios {
            memory_section(&mut page, scenario);
            probe_section(&mut page, scenario);
        }
    }
    page.push_str("</body>\n</html>\n");
    page
}

fn scenario_row(page: &mut String, scenario: &ScenarioResult) {
    let status_class = scenario.status.to_string();
    let _ = write!(
        page,
        "<tr><td>{}<br><small>{}</small></td><td class=\"{status_class}\">{}</td>\
         <td>{:.1} s</td><td>",
        escape(&scenario.name),
        escape(&scenario.file),
        scenario.status.label(),
        scenario.duration_s,
    );
    findings_list(page, &scenario.findings);
    page.push_str("</td><td>");
    if let Some(memory) = &scenario.memory {
        memory_cell(page, memory);
    }
    page.push_str("</td><td>");
    if scenario.status == Status::Error {
        if let Some(error) = &scenario.error {
            let _ = write!(page, "<pre class=\"error\">{}</pre>", escape(error));
        }
    }
    if !scenario.failures.is_empty() {
        page.push_str("<ul>");
        for failure in &scenario.failures {
            let _ = write!(page, "<li>{}</li>", escape(failure));
        }
        page.push_str("</ul>");
    }
    page.push_str("</td><td>");
    if is_safe_link(&scenario.console_log) {
        let _ = write!(
            page,
            "<a href=\"{}\">log</a>",
            escape(&scenario.console_log)
        );
    } else if !scenario.console_log.is_empty() {
        page.push_str(&escape(&scenario.console_log));
    }
    page.push_str("</td></tr>\n");
}

fn memory_cell(page: &mut String, memory: &MemoryResult) {
    let _ = write!(
        page,
        "{}: {} B/cycle over {} cycles",
        escape(&memory.verdict),
        memory.leak_bytes_per_cycle,
        memory.cycles
    );
    if let (Some([lo, hi]), Some(bar)) = (memory.ci, memory.bar) {
        let _ = write!(page, "<br><small>95% CI {lo}…{hi}, bar {bar} B/cycle");
        if let Some(needed) = memory.cycles_needed {
            let _ = write!(page, "; about {needed} cycles would decide");
        }
        page.push_str("</small>");
    }
    if !memory.growth.is_empty() {
        page.push_str("<ul>");
        for growth in &memory.growth {
            let _ = write!(
                page,
                "<li><code>{}</code> {:+} B/cycle</li>",
                escape(&growth.name),
                growth.bytes_per_cycle
            );
        }
        page.push_str("</ul>");
    }
}

/// The memory charts of a scenario that sampled memory, under the run's table.
fn memory_section(page: &mut String, scenario: &ScenarioResult) {
    let Some(series) = scenario.memory.as_ref().and_then(|m| m.series.as_ref()) else {
        return;
    };
    let charts = memory_charts(series);
    if !charts.is_empty() {
        let _ = write!(
            page,
            "<h3>Memory of {}</h3>\n<div class=\"charts\">\n{charts}</div>\n",
            escape(&scenario.name)
        );
    }
}

fn findings_list(page: &mut String, findings: &[FindingEntry]) {
    if findings.is_empty() {
        page.push_str("none");
        return;
    }
    page.push_str("<ul>");
    for finding in findings {
        let _ = write!(
            page,
            "<li><code>{}</code> {}",
            escape(&finding.kind),
            escape(&finding.title)
        );
        if let Some(module) = &finding.module {
            let _ = write!(page, " (module <code>{}</code>)", escape(module));
        }
        for (set, tag) in [
            (finding.expected, "expected"),
            (finding.panicked, "panicked"),
            (finding.corrupted, "corrupted"),
        ] {
            if set {
                let _ = write!(page, "<span class=\"tag\">{tag}</span>");
            }
        }
        page.push_str("</li>");
    }
    page.push_str("</ul>");
}

/// The distinct bugs, unexpected ones first, with where each was found.
fn bugs_table(page: &mut String, bugs: &[Bug]) {
    if bugs.is_empty() {
        return;
    }
    let unexpected = bugs.iter().filter(|bug| !bug.expected).count();
    let _ = write!(
        page,
        "<h2>{} distinct bug{} ({unexpected} unexpected)</h2>\n<table>\n<thead><tr>\
         <th>Bug</th><th>Expected</th><th>Found in</th></tr></thead>\n<tbody>\n",
        bugs.len(),
        if bugs.len() == 1 { "" } else { "s" },
    );
    let mut ordered: Vec<&Bug> = bugs.iter().collect();
    // Unexpected first; among them what is new since the baseline.
    ordered.sort_by_key(|bug| (bug.expected, bug.baseline != Some(crate::BugLabel::New)));
    for bug in ordered {
        let _ = write!(
            page,
            "<tr><td><code>{}</code> {}",
            escape(&bug.kind),
            escape(&bug.title)
        );
        if let Some(module) = &bug.module {
            let _ = write!(page, " (module <code>{}</code>)", escape(module));
        }
        let (class, word) = match bug.expected {
            true => ("passed", "expected"),
            false => ("failed", "UNEXPECTED"),
        };
        if let Some(label) = bug.baseline {
            let tag = if label == crate::BugLabel::New {
                "new"
            } else {
                "still"
            };
            let _ = write!(page, " <span class=\"tag\">{tag}</span>");
        }
        let _ = write!(page, "</td><td class=\"{class}\">{word}</td><td><ul>");
        for occurrence in &bug.occurrences {
            let _ = write!(
                page,
                "<li>{} on {} ({})</li>",
                escape(&occurrence.scenario),
                escape(&occurrence.kernel),
                escape(&occurrence.release)
            );
        }
        page.push_str("</ul></td></tr>\n");
    }
    page.push_str("</tbody>\n</table>\n");
}

/// Only plain paths become links: anything with a scheme (`javascript:`, `http:`) or that
/// starts like a protocol-relative URL stays text.
pub(crate) fn is_safe_link(path: &str) -> bool {
    !path.is_empty() && !path.contains(':') && !path.starts_with("//")
}
