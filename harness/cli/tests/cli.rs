//! The command-line contract that needs no VM: triage, validate, list, report merge, usage errors.

mod common;

use common::*;

#[test]
fn triage_json_finds_the_timer_race_in_a_real_log_and_exits_1() {
    let log = repo().join("harness/triage/tests/corpus/real-6.12-timer.log");
    let out = modharness()
        .arg("triage")
        .arg(&log)
        .arg("--json")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let finding = &json["findings"][0];
    assert_eq!(finding["kind"], "oops");
    assert_eq!(finding["module"], "race_timer_buggy");
    assert_eq!(finding["panicked"], true);
}

#[test]
fn triage_of_a_clean_log_from_stdin_exits_0() {
    use std::io::Write;
    let mut child = modharness()
        .args(["triage", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[    1.0] mh_trivial: loaded\n[    1.1] traps: a[1] general protection fault ip:1 sp:2 error:0 in libc.so.6\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn every_bundled_scenario_validates() {
    let out = modharness()
        .arg("validate")
        .args(bundled())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

fn bundled() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("scenarios"))
        .unwrap()
        .filter_map(|e| e.ok()?.path().file_stem()?.to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn list_shows_the_bundled_scenarios_and_modules() {
    let out = modharness().arg("list").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("smoke"),
        "{}",
        describe(&out)
    );
    let out = modharness().args(["list", "modules"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("race_timer_buggy"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_bad_kernel_spec_is_bad_usage() {
    let out = modharness()
        .args(["run", "smoke", "--kernel", "ubuntu:22.04"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ubuntu:22.04"));
}

#[test]
fn a_scenario_name_cannot_reach_outside_scenarios() {
    // A home whose scenarios/../outside.yaml exists and is valid: only the name check stops it.
    let home = scratch("escape");
    for dir in ["scenarios", "guest-modules", "a/b"] {
        std::fs::create_dir_all(home.path().join(dir)).unwrap();
    }
    std::fs::write(
        home.path().join("outside.yaml"),
        "name: outside\nsteps:\n  - sleep: 1ms\n",
    )
    .unwrap();
    let out = modharness()
        .args(["validate", "../outside"])
        .current_dir(home.path().join("a/b"))
        .env("MODHARNESS_HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no scenario of that name"), "{stderr}");
}

#[test]
fn report_merge_joins_runs_and_writes_every_file() {
    let dir = scratch("merge");
    let one = |kernel: &str, scenario: &str, status: &str| {
        serde_json::json!({
            "schema": 1, "started_at": "2026-11-25T10:00:00Z", "duration_s": 5.0,
            "host": {"qemu": "7.2.22", "accel": "tcg"},
            "runs": [{"kernel": {"spec": kernel, "release": kernel},
                      "scenarios": [{"name": scenario, "file": format!("scenarios/{scenario}.yaml"),
                                     "status": status, "duration_s": 1.0, "findings": [],
                                     "memory": null, "console_log": "logs/x.console.log"}]}]
        })
    };
    for (name, report) in [
        ("a", one("debian:6.1", "smoke", "passed")),
        ("b", one("debian:6.12", "smoke", "failed")),
    ] {
        std::fs::create_dir_all(dir.path().join(name)).unwrap();
        std::fs::write(
            dir.path().join(name).join("report.json"),
            report.to_string(),
        )
        .unwrap();
    }
    let out = modharness()
        .args(["report", "merge", "--out"])
        .arg(dir.path().join("all"))
        .arg(dir.path().join("a/report.json"))
        .arg(dir.path().join("b/report.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let merged = report(&dir.path().join("all"));
    assert_eq!(merged["runs"].as_array().unwrap().len(), 2, "{merged}");
    assert!(dir.path().join("all/junit.xml").is_file());
}

#[test]
fn images_build_of_an_unknown_recipe_lists_the_recipes_and_is_bad_usage() {
    let out = modharness()
        .args(["images", "build", "debug-nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no recipe") && stderr.contains("debug-mini"),
        "{stderr}"
    );
}

#[test]
fn images_build_takes_only_a_debian_source_and_a_recipe_name() {
    for args in [
        ["images", "build", "debug", "--from", "path:/boot/vmlinuz"],
        [
            "images",
            "build",
            "../etc",
            "--from",
            "debian:6.1.0-54-amd64",
        ],
    ] {
        let out = modharness().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
    }
}

#[test]
fn a_tree_spec_that_was_never_built_is_bad_usage() {
    let dir = scratch("tree");
    let out = modharness()
        .args(["run", "smoke", "--kernel"])
        .arg(format!("tree:{}", dir.path().display()))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run make there first"));
    assert!(!dir.path().join("out").exists(), "nothing written");
}
