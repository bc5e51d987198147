//! Deduplication of findings across scenarios and kernels: the same title, blamed on the same
//! module (or with one side unattributed), is the same bug. A title alone is not enough: when
//! the fault is in freed module code the title names no function, and different modules'
//! unload races read alike.

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
                let same = |bug: &&mut Bug| {
                    bug.title == finding.title
                        && (bug.module.is_none()
                            || finding.module.is_none()
                            || bug.module == finding.module)
                };
                match bugs.iter_mut().find(same) {
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
                        baseline: None,
                    }),
                }
            }
        }
    }
    bugs
}
