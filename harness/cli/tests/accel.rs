//! The default accelerator, `auto`, on hosts whose `/dev/kvm` does not run kernels: a fake QEMU
//! (examples/fake_qemu.rs) that misbehaves only under `-accel kvm`. The real-kernel tests run
//! `auto` against the real QEMU of this machine.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

/// `modharness run` with the default accelerator, `/dev/kvm` standing in as a file of the test's
/// own (so `auto` probes whatever the machine has), each QEMU start logged.
fn run_auto(mode: &str, dir: &Path) -> Output {
    let kvm = dir.join("kvm");
    std::fs::write(&kvm, b"").unwrap();
    fake_run(mode, dir)
        .env("MODHARNESS_KVM_DEVICE", &kvm)
        .env("FAKE_QEMU_LOG", dir.join("starts.log"))
        .output()
        .unwrap()
}

/// The accelerator of every QEMU start so far, in order.
fn starts(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("starts.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Check the starts from the `from`th on: `probe` stands for the probe's two boots, which start
/// at once and so reach the log in either order.
fn assert_starts(dir: &Path, from: usize, expected: &[&str]) {
    let all = starts(dir);
    let mut got = all[from.min(all.len())..].iter().map(String::as_str);
    let mut seen = Vec::new();
    for want in expected {
        if *want == "probe" {
            let mut pair = [got.next().unwrap_or("-"), got.next().unwrap_or("-")];
            pair.sort();
            assert_eq!(pair, ["kvm", "tcg"], "starts {all:?}");
        } else {
            assert_eq!(got.next(), Some(*want), "starts {all:?}");
        }
        seen.push(*want);
    }
    assert_eq!(got.next(), None, "starts {all:?} beyond {seen:?}");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn auto_picks_tcg_when_kvm_guests_never_say_a_word() {
    let dir = scratch("accel-silent");
    let out = run_auto("kvm-silent", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    assert_eq!(report["host"]["accel"], "tcg", "{report}");
    assert_eq!(report["runs"][0]["accel"], "tcg");
    assert_eq!(scenarios(&report)[0]["accel"], "tcg");
    assert!(
        stderr(&out).contains("accelerator: tcg (kvm: no agent within"),
        "{}",
        describe(&out)
    );
    assert_starts(dir.path(), 0, &["probe", "tcg"]);
}

#[test]
fn auto_picks_tcg_when_qemu_aborts_setting_up_the_kvm_vcpu() {
    let dir = scratch("accel-abort");
    let out = run_auto("kvm-abort", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    assert_eq!(scenarios(&report)[0]["status"], "passed", "{report}");
    assert_eq!(report["runs"][0]["accel"], "tcg", "{report}");
    // Usually the abort is seen first and quoted; on a loaded host the fake's TCG guest can be
    // up before the KVM process has even exited (seen in a clean-clone CI run).
    let why = report["runs"][0]["accel_why"].as_str().unwrap();
    assert!(
        why.contains("failed to set MSR") || why.contains("no agent within"),
        "{why}"
    );
}

#[test]
fn a_kvm_guest_that_stalls_in_early_boot_loses_the_probe() {
    let dir = scratch("accel-stall");
    let out = run_auto("kvm-stall", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(report(&dir.path().join("out"))["host"]["accel"], "tcg");
}

#[test]
fn a_remembered_verdict_spares_the_probe_for_a_day_then_expires() {
    let dir = scratch("accel-cache");
    let first = run_auto("kvm-silent", dir.path());
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert_starts(dir.path(), 0, &["probe", "tcg"]);

    let second = run_auto("kvm-silent", dir.path());
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_starts(dir.path(), 3, &["tcg"]);
    assert!(
        stderr(&second).contains("remembered"),
        "{}",
        describe(&second)
    );

    // A day and more later the verdict no longer holds.
    let verdicts: Vec<_> = std::fs::read_dir(dir.path().join("cache/accel"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    let mut verdict: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&verdicts[0]).unwrap()).unwrap();
    let decided = verdict["decided_at"].as_u64().unwrap();
    verdict["decided_at"] = (decided - 25 * 3600).into();
    std::fs::write(&verdicts[0], verdict.to_string()).unwrap();
    let third = run_auto("kvm-silent", dir.path());
    assert_eq!(third.status.code(), Some(0), "{}", describe(&third));
    assert_starts(dir.path(), 4, &["probe", "tcg"]);
}

#[test]
fn a_kvm_guest_that_stalls_at_run_time_is_rerun_under_tcg_with_the_same_result() {
    let dir = scratch("accel-fallback");
    let out = run_auto("kvm-probe-only", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_starts(dir.path(), 0, &["probe", "kvm", "tcg"]);
    let report = report(&dir.path().join("out"));
    let scenario = &scenarios(&report)[0];
    assert_eq!(scenario["status"], "passed", "{scenario}");
    assert_eq!(scenario["accel"], "tcg");
    assert_eq!(
        scenario["findings"].as_array().unwrap().len(),
        0,
        "no hang blamed on it"
    );
    // The scenario's 3 s timeout is shorter than the KVM boot limit, so it bounds the wait.
    let note = scenario["notes"][0].as_str().unwrap();
    assert!(
        note.contains("under kvm the guest did not boot (no agent within 3 s)"),
        "{note}"
    );
    assert!(
        dir.path()
            .join("out")
            .join(scenario["console_log"].as_str().unwrap())
            .with_extension("kvm.log")
            .is_file(),
        "the KVM console is kept"
    );
    assert!(
        stderr(&out).contains("tcg from now on"),
        "{}",
        describe(&out)
    );

    // The same scenario forced onto TCG from the start ends the same way.
    let tcg_dir = scratch("accel-fallback-tcg");
    let forced = fake_run("kvm-probe-only", tcg_dir.path())
        .arg("--accel=tcg")
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", describe(&forced));
    let forced_report = common::report(&tcg_dir.path().join("out"));
    let forced_scenario = &scenarios(&forced_report)[0];
    assert_eq!(forced_scenario["status"], scenario["status"]);
    assert_eq!(forced_scenario["findings"], scenario["findings"]);
    assert_eq!(forced_scenario["steps"], scenario["steps"]);
}

#[test]
fn a_guest_that_never_starts_its_agent_is_an_infrastructure_error_not_a_hang() {
    let dir = scratch("never-ready");
    let out = fake_run("silent", dir.path())
        .arg("--accel=tcg")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    let scenario = &scenarios(&report)[0];
    assert_eq!(scenario["status"], "error", "{scenario}");
    assert_eq!(
        scenario["findings"].as_array().unwrap().len(),
        0,
        "{scenario}"
    );
    let error = scenario["error"].as_str().unwrap();
    assert!(error.contains("no agent within 3 s"), "{error}");
}
