//! The mass-probe section of report.html: totals, rounds, two charts, the modules worth a look
//! and, folded away, every module tried. Module names, errors and devices come from the guest:
//! all of it goes through [`escape`].

use std::fmt::Write;

use modharness_memory::human_bytes;

use crate::html::escape;
use crate::plot::bar_chart;
use crate::probe::{clock, signed_bytes};
use crate::{MassProbeResult, ProbeModuleResult, ProbeRoundResult, ScenarioResult};

/// Modules in the chart of memory not returned.
const TOP_UNRETURNED: usize = 15;
/// Meminfo figures shown per round at most: the usual ones first. A round may carry all of
/// /proc/meminfo, which no table or chart shows legibly.
const FIGURES_SHOWN: usize = 8;

/// The section of a scenario that ran a mass probe; nothing for any other.
pub(crate) fn probe_section(page: &mut String, scenario: &ScenarioResult) {
    let Some(probe) = &scenario.mass_probe else {
        return;
    };
    let _ = write!(
        page,
        "<h3>Mass probe of {}</h3>\n<p>{}</p>\n",
        escape(&scenario.name),
        probe.totals(),
    );
    rounds_table(page, probe);
    let charts = charts(probe);
    if !charts.is_empty() {
        let _ = write!(page, "<div class=\"charts\">\n{charts}</div>\n");
    }
    let blamed: Vec<&ProbeModuleResult> = probe
        .modules
        .iter()
        .filter(|m| m.finding.is_some())
        .collect();
    if !blamed.is_empty() {
        page.push_str(
            "<h4>Modules blamed for a finding</h4>\n<table>\n<thead><tr><th>Module</th>\
             <th>Finding</th><th>Load</th></tr></thead>\n<tbody>\n",
        );
        for module in blamed {
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(&module.name),
                escape(module.finding.as_deref().unwrap_or_default()),
                load_outcome(module),
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
    let bound: Vec<&ProbeModuleResult> = probe
        .modules
        .iter()
        .filter(|m| !m.bound.is_empty())
        .collect();
    if !bound.is_empty() {
        page.push_str(
            "<h4>Modules that bound a device</h4>\n<table>\n<thead><tr><th>Module</th>\
             <th>Devices</th><th>Load ms</th></tr></thead>\n<tbody>\n",
        );
        for module in bound {
            let _ = writeln!(
                page,
                "<tr><td><code>{}</code></td><td>{}</td><td>{:.1}</td></tr>",
                escape(&module.name),
                escape(&module.bound.join(", ")),
                module.load_ms,
            );
        }
        page.push_str("</tbody>\n</table>\n");
    }
    all_modules(page, probe);
}

/// A row per round: size, speed, each meminfo figure's growth and the modules' unreturned sum.
fn rounds_table(page: &mut String, probe: &MassProbeResult) {
    if probe.rounds.is_empty() {
        return;
    }
    let figures = shown_figures(probe);
    page.push_str(
        "<table>\n<thead><tr><th>Round</th><th>Modules</th><th>Time</th><th>Modules/s</th>",
    );
    for figure in &figures {
        let _ = write!(page, "<th>{}</th>", escape(figure));
    }
    page.push_str("<th>Not returned</th></tr></thead>\n<tbody>\n");
    for round in &probe.rounds {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td>",
            round.round,
            modules_cell(round),
            clock(round.seconds),
            round.modules_per_s,
        );
        for figure in &figures {
            match round.growth.get(*figure) {
                Some(&bytes) => {
                    let _ = write!(page, "<td>{}</td>", signed_bytes(bytes));
                }
                // No VM sampled on both sides of any stretch of the round.
                None => page.push_str("<td>-</td>"),
            }
        }
        let _ = writeln!(
            page,
            "<td>{}</td></tr>",
            human_bytes(round.unreturned_bytes)
        );
    }
    page.push_str("</tbody>\n</table>\n");
}

/// The round's modules, and how many of them its growth spans when a crash left some out.
fn modules_cell(round: &ProbeRoundResult) -> String {
    if round.growth_modules < round.modules && !round.growth.is_empty() {
        format!(
            "{} (growth over {}: a VM died)",
            round.modules, round.growth_modules
        )
    } else {
        round.modules.to_string()
    }
}

/// Growth per figure, a bar per round; then the modules that returned least.
fn charts(probe: &MassProbeResult) -> String {
    let mut out = String::new();
    let figures = shown_figures(probe);
    if !figures.is_empty() {
        let rounds: Vec<String> = probe
            .rounds
            .iter()
            .map(|round| format!("round {}", round.round))
            .collect();
        let rows: Vec<(String, Vec<Option<i64>>)> = figures
            .iter()
            .map(|figure| {
                let values = probe
                    .rounds
                    .iter()
                    .map(|round| round.growth.get(*figure).copied())
                    .collect();
                (figure.to_string(), values)
            })
            .collect();
        out.push_str(&bar_chart(
            "Memory growth per round (after the round against before it)",
            &rounds,
            &rows,
        ));
    }
    let top: Vec<(String, Vec<Option<i64>>)> = probe
        .top_unreturned(TOP_UNRETURNED)
        .into_iter()
        .map(|(name, bytes)| (name.to_owned(), vec![Some(bytes)]))
        .collect();
    if !top.is_empty() {
        out.push_str(&bar_chart(
            &format!("Top {} modules by memory not returned", top.len()),
            &[],
            &top,
        ));
    }
    out
}

/// Every module tried, folded away: 4,000 rows are there to search, not to scroll past.
fn all_modules(page: &mut String, probe: &MassProbeResult) {
    if probe.modules.is_empty() {
        return;
    }
    let _ = write!(
        page,
        "<details><summary>All {} modules tried</summary>\n<table>\n<thead><tr>\
         <th>Module</th><th>Load</th><th>Bound</th><th>Load ms</th><th>Unload ms</th>\
         <th>Not returned, per round</th></tr></thead>\n<tbody>\n",
        probe.modules.len()
    );
    for module in &probe.modules {
        let _ = write!(
            page,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}",
            escape(&module.name),
            load_outcome(module),
            escape(&module.bound.join(", ")),
            module.load_ms,
            module.unload_ms,
        );
        if let Some(error) = &module.unload_error {
            // A block, not <br>: the section stays well-formed XML, which the tests check.
            let _ = write!(page, "<div class=\"error\">{}</div>", escape(error));
        }
        let unreturned: Vec<String> = module
            .unreturned_bytes
            .iter()
            .map(|&bytes| signed_bytes(bytes))
            .collect();
        let _ = writeln!(page, "</td><td>{}</td></tr>", unreturned.join(", "));
    }
    page.push_str("</tbody>\n</table>\n</details>\n");
}

/// `loaded`, or why it did not, as HTML.
fn load_outcome(module: &ProbeModuleResult) -> String {
    match (&module.error, module.loaded) {
        // A module can load in one round and fail in another: both facts matter.
        (Some(error), true) => format!("loaded; once {}", escape(error)),
        (Some(error), false) => format!("<span class=\"error\">{}</span>", escape(error)),
        (None, true) => "loaded".to_owned(),
        (None, false) => "not loaded".to_owned(),
    }
}

/// The figures of [`MassProbeResult::growth_figures`] that fit, in its order.
fn shown_figures(probe: &MassProbeResult) -> Vec<&str> {
    let mut figures = probe.growth_figures();
    figures.truncate(FIGURES_SHOWN);
    figures
}
