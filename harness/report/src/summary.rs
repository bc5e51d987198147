//! The terminal summary: a table, mass-probe lines, bugs and totals.

use std::fmt::Write;

use crate::probe::{clock, signed_bytes};
use crate::text::{replace_undisplayable, truncate_chars};
use crate::{Bug, MassProbeResult, Report, ScenarioResult, Status};

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
/// The round figures a mass probe's summary line names: the largest of the judged ones.
const PROBE_FIGURES: [&str; 2] = ["SUnreclaim", "VmallocUsed"];
/// Modules a mass probe's summary line names at most, as many as fit.
const PROBE_TOP: usize = 3;

/// One row per (kernel, scenario), the lines of each mass probe, then the totals line.
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
        for &(kernel, scenario) in &rows {
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
        let several_kernels = report.runs.len() > 1;
        for (kernel, scenario) in rows {
            if let Some(probe) = &scenario.mass_probe {
                let name = match several_kernels {
                    true => format!("{} on {kernel}", scenario.name),
                    false => scenario.name.clone(),
                };
                probe_lines(&mut out, &name, probe);
            }
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

/// Two or three lines for a scenario's mass probe: its totals; its rounds; the modules that
/// returned least memory, as many as fit (on the rounds' line when the worst fits there).
fn probe_lines(out: &mut String, name: &str, probe: &MassProbeResult) {
    let totals = format!("{name}: {}", probe.totals());
    let mut lines = vec![totals];
    if let Some(rounds) = rounds_text(probe) {
        lines.push(format!("  {rounds}"));
    }
    let top = probe.top_unreturned(PROBE_TOP);
    if !top.is_empty() {
        let last = lines.len() - 1;
        let room = SUMMARY_WIDTH.saturating_sub(lines[last].chars().count() + 2);
        match top_text(&top, room) {
            Some(text) if last > 0 => lines[last] = format!("{}; {text}", lines[last]),
            _ => lines.push(format!(
                "  {}",
                top_text(&top, usize::MAX).unwrap_or_default()
            )),
        }
    }
    for line in lines {
        out.push_str(cell(&line, SUMMARY_WIDTH).trim_end());
        out.push('\n');
    }
}

/// `rounds 1-2: 4m20s, 0.2 modules/s, SUnreclaim +2.5 MiB, VmallocUsed +1.1 MiB`.
fn rounds_text(probe: &MassProbeResult) -> Option<String> {
    let (first, last) = (probe.rounds.first()?, probe.rounds.last()?);
    let seconds: f64 = probe.rounds.iter().map(|r| r.seconds).sum();
    let modules: usize = probe.rounds.iter().map(|r| r.modules).sum();
    let mut text = match probe.rounds.len() {
        1 => format!("round {}:", first.round),
        _ => format!("rounds {}-{}:", first.round, last.round),
    };
    let _ = write!(text, " {}", clock(seconds));
    if seconds > 0.0 {
        let _ = write!(text, ", {:.1} modules/s", modules as f64 / seconds);
    }
    for figure in PROBE_FIGURES {
        // A round no VM sampled on both sides of has no growth: the sum is over those that do.
        let growth: Vec<i64> = probe
            .rounds
            .iter()
            .filter_map(|r| r.growth.get(figure).copied())
            .collect();
        if !growth.is_empty() {
            let _ = write!(text, ", {figure} {}", signed_bytes(growth.iter().sum()));
        }
    }
    let (covered, sampled): (usize, usize) = probe
        .rounds
        .iter()
        .filter(|r| !r.growth.is_empty())
        .map(|r| (r.growth_modules, r.modules))
        .fold((0, 0), |(c, m), (rc, rm)| (c + rc, m + rm));
    if covered < sampled {
        // VMs died between samples: the growth leaves their last modules out.
        let _ = write!(text, " over {covered}/{sampled} modules");
    }
    Some(text)
}

/// `top unreturned: foo 48.0 KiB, bar 12.0 KiB` in at most `room` columns, the worst module
/// always, others while they fit; `None` when not even the worst fits.
fn top_text(top: &[(&str, i64)], room: usize) -> Option<String> {
    let mut text = String::from("top unreturned:");
    for (index, (module, bytes)) in top.iter().enumerate() {
        let entry = format!(
            "{}{} {}",
            if index == 0 { " " } else { ", " },
            one_line(module),
            modharness_memory::human_bytes(*bytes)
        );
        if text.chars().count() + entry.chars().count() > room {
            if index == 0 && room != usize::MAX {
                return None;
            }
            break;
        }
        text.push_str(&entry);
    }
    Some(text)
}

fn push_line(out: &mut String, cells: [String; 6]) {
    out.push_str(cells.join(GAP).trim_end());
    out.push('\n');
}

/// `text` made safe for a terminal, on one line, cut and padded to exactly `width` columns.
fn cell(text: &str, width: usize) -> String {
    format!("{:width$}", truncate_chars(&one_line(text), width))
}

/// `text` made safe for a terminal, on one line.
fn one_line(text: &str) -> String {
    replace_undisplayable(text, '?').replace(['\n', '\t'], " ")
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
