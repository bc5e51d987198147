//! A night against the one before: each distinct bug `new`, `still` or `fixed`, and each
//! scenario whose status changed. Scenarios are matched by kernel spec and name (a spec such as
//! `debian:latest` names a newer release on a later night: that is the point of the matrix);
//! bugs by the rule that makes them distinct in one report (see `bugs.rs`).

use serde::{Deserialize, Serialize};

use crate::{Bug, Report, Status};

/// How a bug stands against the baseline.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BugLabel {
    /// Not in the baseline.
    New,
    /// In the baseline too.
    Still,
}

/// What changed since the baseline report.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Comparison {
    /// The baseline's `started_at`.
    pub baseline_started_at: String,
    /// Bugs of the baseline that a scenario which showed them ran again without.
    pub fixed: Vec<Bug>,
    /// Scenarios whose status is not the baseline's, in report order.
    pub changes: Vec<StatusChange>,
}

/// One scenario whose status changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StatusChange {
    /// The kernel spec.
    pub kernel: String,
    /// The scenario's name.
    pub scenario: String,
    /// Its status in the baseline; `None` when the baseline did not run it.
    pub was: Option<Status>,
    /// Its status now.
    pub now: Status,
}

impl StatusChange {
    /// A scenario that fails now and did not in the baseline (or was not in it).
    pub fn is_new_failure(&self) -> bool {
        self.now == Status::Failed && self.was != Some(Status::Failed)
    }
}

fn same_bug(a: &Bug, b: &Bug) -> bool {
    a.title == b.title && (a.module.is_none() || b.module.is_none() || a.module == b.module)
}

impl Report {
    /// Labels every bug against `baseline` and records what changed, in [`Report::comparison`].
    /// Call it after [`Report::collect_bugs`].
    pub fn compare_with(&mut self, baseline: &Report) {
        for bug in &mut self.bugs {
            let known = baseline.bugs.iter().any(|old| same_bug(old, bug));
            bug.baseline = Some(if known {
                BugLabel::Still
            } else {
                BugLabel::New
            });
        }
        let ran_now = |kernel: &str, scenario: &str| self.status_of(kernel, scenario).is_some();
        let fixed = baseline
            .bugs
            .iter()
            .filter(|old| !self.bugs.iter().any(|bug| same_bug(old, bug)))
            .filter(|old| {
                old.occurrences
                    .iter()
                    .any(|o| ran_now(&o.kernel, &o.scenario))
            })
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for run in &self.runs {
            for scenario in &run.scenarios {
                let was = baseline.status_of(&run.kernel.spec, &scenario.name);
                if was != Some(scenario.status) {
                    changes.push(StatusChange {
                        kernel: run.kernel.spec.clone(),
                        scenario: scenario.name.clone(),
                        was,
                        now: scenario.status,
                    });
                }
            }
        }
        self.comparison = Some(Comparison {
            baseline_started_at: baseline.started_at.clone(),
            fixed,
            changes,
        });
    }

    /// The status of `scenario` on `kernel` (a spec), if this report ran it.
    pub fn status_of(&self, kernel: &str, scenario: &str) -> Option<Status> {
        self.runs
            .iter()
            .filter(|run| run.kernel.spec == kernel)
            .flat_map(|run| &run.scenarios)
            .find(|s| s.name == scenario)
            .map(|s| s.status)
    }

    /// What is new since the baseline, for the terminal, before the summary: new failures and
    /// new bugs first, then what was fixed and what stays broken. `None` without a baseline.
    pub fn comparison_text(&self) -> Option<String> {
        let comparison = self.comparison.as_ref()?;
        let mut text = format!(
            "Against the baseline of {}:\n",
            comparison.baseline_started_at
        );
        let title = |bug: &Bug| {
            let shown = crate::text::replace_undisplayable(&bug.title, '?').into_owned();
            match &bug.module {
                Some(m) => format!("{shown} (module {m})"),
                None => shown,
            }
        };
        let mut lines = Vec::new();
        for change in comparison.changes.iter().filter(|c| c.is_new_failure()) {
            lines.push(format!(
                "  NEW FAILURE  {} on {}",
                change.scenario, change.kernel
            ));
        }
        for bug in self
            .bugs
            .iter()
            .filter(|b| b.baseline == Some(BugLabel::New))
        {
            let word = if bug.expected {
                "new (expected)"
            } else {
                "NEW"
            };
            lines.push(format!("  {word:<12} {}", title(bug)));
        }
        for bug in &comparison.fixed {
            lines.push(format!("  fixed        {}", title(bug)));
        }
        for change in comparison.changes.iter().filter(|c| !c.is_new_failure()) {
            let was = change.was.map_or("not run", |s| s.label());
            lines.push(format!(
                "  changed      {} on {}: {was} -> {}",
                change.scenario,
                change.kernel,
                change.now.label()
            ));
        }
        let still = self
            .bugs
            .iter()
            .filter(|b| b.baseline == Some(BugLabel::Still))
            .count();
        if lines.is_empty() {
            lines.push("  nothing new".into());
        }
        text.push_str(&lines.join("\n"));
        text.push_str(&format!("\n  {still} bug(s) still there"));
        Some(text)
    }

    /// Whether the comparison shows something that was not broken before: a scenario that
    /// newly fails, or a new unexpected bug. Without a comparison, any failed scenario.
    pub fn has_new_failures(&self) -> bool {
        match &self.comparison {
            Some(comparison) => {
                comparison.changes.iter().any(StatusChange::is_new_failure)
                    || self
                        .bugs
                        .iter()
                        .any(|b| !b.expected && b.baseline == Some(BugLabel::New))
            }
            None => self
                .runs
                .iter()
                .flat_map(|r| &r.scenarios)
                .any(|s| s.status == Status::Failed),
        }
    }
}
