//! Reports that are fragments of another crash. When one CPU oopses, another CPU that touches
//! the same freed module faults a few milliseconds later and prints its own report into the
//! middle of the first one; the panic then cuts it short. What is left has no function and no
//! module (`BUG: unable to handle page fault`, corrupted), yet it is the same bug, and judging
//! it apart makes a scenario that caught its race fail on how two CPUs' lines interleaved.

use crate::Finding;

/// A corrupted report that starts this soon after another one is read as part of that crash.
const SAME_CRASH_S: f64 = 1.0;

/// When `finding` is a corrupted, unblamed report that began within [`SAME_CRASH_S`] of
/// `earlier` (the report before it on the same console), blame the module `earlier` blames.
pub fn blame_as_fragment_of(finding: &mut Finding, earlier: &Finding) {
    if !finding.corrupted || finding.module.is_some() || finding.guilty_frame.is_some() {
        return;
    }
    let (Some(at), Some(before)) = (finding.time_s, earlier.time_s) else {
        return;
    };
    if (0.0..=SAME_CRASH_S).contains(&(at - before)) {
        finding.module.clone_from(&earlier.module);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    fn oops(title: &str, module: Option<&str>, time_s: f64, corrupted: bool) -> Finding {
        Finding {
            kind: Kind::Oops,
            title: title.into(),
            alt_titles: Vec::new(),
            module: module.map(String::from),
            corrupted,
            panicked: true,
            time_s: Some(time_s),
            guilty_frame: title.split(" in ").nth(1).map(String::from),
            report: String::new(),
            frames: Vec::new(),
            located: Vec::new(),
        }
    }

    #[test]
    fn a_second_cpus_cut_short_oops_during_a_crash_is_blamed_on_that_crashs_module() {
        let first = oops(
            "BUG: unable to handle page fault in __handle_irq_event_percpu",
            Some("race_ivshmem_buggy"),
            3.985601,
            false,
        );
        let mut second = oops("BUG: unable to handle page fault", None, 4.007661, true);
        blame_as_fragment_of(&mut second, &first);
        assert_eq!(second.module.as_deref(), Some("race_ivshmem_buggy"));
    }

    #[test]
    fn whole_reports_and_later_ones_keep_their_own_blame() {
        let first = oops("BUG: oops in a", Some("mod_a"), 3.0, false);
        let mut whole = oops("BUG: unable to handle page fault", None, 3.2, false);
        blame_as_fragment_of(&mut whole, &first);
        assert_eq!(whole.module, None, "not corrupted: a report of its own");
        let mut later = oops("BUG: unable to handle page fault", None, 9.0, true);
        blame_as_fragment_of(&mut later, &first);
        assert_eq!(later.module, None, "seconds later: another crash");
        let mut named = oops("BUG: unable to handle page fault in b", None, 3.1, true);
        blame_as_fragment_of(&mut named, &first);
        assert_eq!(named.module, None, "it names its own function");
    }
}
