//! The probe's round memory samples, and what it tells of each load (for blame after unload).

use std::cell::RefCell;
use std::path::Path;

use super::*;

/// The `done` of each `ProbeMemory` event, with its SUnreclaim in KiB.
fn round_memory(events: &[Event]) -> Vec<(usize, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ProbeMemory { done, meminfo, .. } => Some((*done, meminfo["SUnreclaim"] / 1024)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_round_samples_its_memory_at_the_start_every_fifty_modules_and_at_the_end() {
    let names: Vec<String> = (0..120)
        .map(|i| {
            if i < 60 {
                format!("leaky{i}")
            } else {
                format!("plain{i}")
            }
        })
        .collect();
    let tree: Vec<(&str, &[&str])> = names.iter().map(|n| (n.as_str(), &[][..])).collect();
    let guest = Guest::new(&tree, "");
    let kernel = FakeKernel::new(&guest);
    let selection = ProbeSelection::All;
    let outcome = run(&guest, &kernel, &request(&selection, 1));
    // Each leaky module keeps 4 KiB: the samples carry what a crash would otherwise lose.
    assert_eq!(
        round_memory(&outcome.events),
        [(0, 10_000), (50, 10_200), (100, 10_240), (120, 10_240)]
    );
}

#[test]
fn a_resumed_round_samples_its_memory_where_it_goes_on() {
    let guest = Guest::new(&[("crasher", &[]), ("plain", &[])], "");
    let kernel = FakeKernel::new(&guest);
    let selection = ProbeSelection::Named(strings(&["crasher", "plain"]));
    let resume = ProbeResume {
        round: 0,
        index: 1,
        kept: Vec::new(),
    };
    let outcome = run_resumed(&guest, &kernel, &selection, &resume);
    assert_eq!(round_memory(&outcome.events), [(1, 10_000), (2, 10_000)]);
}

#[test]
fn every_module_and_dependency_loaded_is_told_with_when_its_load_began() {
    let guest = Guest::new(&[("pps_core", &[]), ("ptp", &["pps_core"])], "");
    let kernel = FakeKernel::new(&guest);
    let told = RefCell::new(Vec::new());
    let loaded = |path: &Path, since: f64| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        told.borrow_mut().push((name, since));
    };
    let scans = std::cell::Cell::new(0);
    let round_done = || scans.set(scans.get() + 1);
    let probe = Probe {
        kernel: &kernel,
        modules_dir: guest.modules(),
        sysfs: guest.sysfs(),
        procfs: guest.procfs(),
        emit: &|_| {},
        sample: &|_| {},
        loaded: &loaded,
        round_done: &round_done,
    };
    let selection = ProbeSelection::Named(strings(&["ptp"]));
    probe.run(&request(&selection, 2)).unwrap();
    let told = told.into_inner();
    let names: Vec<&str> = told
        .iter()
        .map(|(n, _)| n.split('.').next().unwrap())
        .collect();
    assert_eq!(names, ["pps_core", "ptp", "pps_core", "ptp"]);
    assert!(told.windows(2).all(|w| w[0].1 <= w[1].1), "{told:?}");
    assert_eq!(scans.get(), 2, "one scan per round");
}
