//! Deduplication of findings across scenarios and kernels: the same title is the same bug.

use crate::{Bug, Occurrence, Run};

/// The distinct bugs of `runs`, in the order their titles first appear.
pub(crate) fn collect(runs: &[Run]) -> Vec<Bug> {
    let mut bugs: Vec<Bug> = Vec::new();
    for run in runs {
        for scenario in &run.scenarios {
            for finding in &scenario.findings {
                let occurrence = Occurrence {
                    kernel: run.kernel.spec.clone(),
                    release: run.kernel.release.clone(),
                    scenario: scenario.name.clone(),
                };
                match bugs.iter_mut().find(|bug| bug.title == finding.title) {
                    Some(bug) => {
                        bug.expected &= finding.expected;
                        if bug.module.is_none() {
                            bug.module = finding.module.clone();
                        }
                        if !bug.occurrences.contains(&occurrence) {
                            bug.occurrences.push(occurrence);
                        }
                    }
                    None => bugs.push(Bug {
                        kind: finding.kind.clone(),
                        title: finding.title.clone(),
                        module: finding.module.clone(),
                        expected: finding.expected,
                        occurrences: vec![occurrence],
                    }),
                }
            }
        }
    }
    bugs
}
