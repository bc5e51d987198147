//! End to end on a debug kernel built here, the way a user gets one: `images build debug-mini`
//! (the small recipe of images/: KASAN, kmemleak and ODEBUG on allnoconfig; 7–10 minutes on two
//! cores the first time, cached after), then a race, a leak and a fixed twin run on it with
//! `run --kernel debug-mini:latest` and the default accelerator. The full `debug` recipe builds
//! the same way, only longer: it is measured in the README, not here.

mod common;

use std::path::Path;

use common::*;

const SPEC: &str = "debug-mini:latest";

/// `modharness run SCENARIO --kernel debug-mini:latest --out DIR/out`, with its report.
fn run_on_debug_kernel(dir: &Path, scenario: &str) -> (std::process::Output, serde_json::Value) {
    let out = modharness()
        .args(["run", scenario, "--kernel", SPEC, "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let report = report(&dir.join("out"));
    (out, report)
}

fn findings(scenario: &serde_json::Value) -> Vec<(String, String, String)> {
    scenario["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |key: &str| f[key].as_str().unwrap_or_default().to_string();
            (text("kind"), text("title"), text("module"))
        })
        .collect()
}

#[test]
fn the_small_debug_recipe_builds_into_a_kernel_spec() {
    let out = modharness()
        .args(["images", "build", "debug-mini"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // `debug-mini:RELEASE-OF-DEBIAN-LATEST RELEASE VMLINUX`
    let words: Vec<&str> = stdout.split_whitespace().collect();
    assert!(words[0].starts_with("debug-mini:6."), "{stdout}");
    assert!(
        words[1].contains("-debug-mini-"),
        "the release names the recipe: {stdout}"
    );
    let entry = Path::new(words[2]).parent().unwrap();
    for file in [
        "vmlinux",
        "config",
        "build.log",
        "System.map",
        "headers/Makefile",
    ] {
        assert!(entry.join(file).exists(), "{file} in {}", entry.display());
    }
    let config = std::fs::read_to_string(entry.join("config")).unwrap();
    for option in [
        "CONFIG_KASAN=y",
        "CONFIG_DEBUG_KMEMLEAK=y",
        "CONFIG_DEBUG_OBJECTS_TIMERS=y",
        "CONFIG_PVH=y",
    ] {
        assert!(config.lines().any(|l| l == option), "{option}");
    }
    let list = modharness().args(["images", "list"]).output().unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains(words[1]), "{listed}");
    assert!(
        listed.contains("recipes") && listed.contains("debug-mini"),
        "{listed}"
    );
}

#[test]
fn a_read_of_freed_module_memory_is_a_kasan_report_blamed_on_the_module() {
    let dir = scratch("debug-fops");
    let (out, report) = run_on_debug_kernel(dir.path(), "fops-race");
    let scenario = &scenarios(&report)[0];
    assert_eq!(out.status.code(), Some(0), "{}\n{scenario}", describe(&out));
    let found = findings(scenario);
    // The open file's `close()` reads the `file_operations` of a module already gone: with
    // KASAN_VMALLOC that read is reported before it faults (3 runs of 3 here). The address is
    // the gone module's data, which only the load history can name.
    assert!(
        found.iter().any(|(kind, title, module)| kind == "kasan"
            && title == "KASAN: vmalloc-out-of-bounds Read in filp_flush"
            && module == "race_fops_buggy"),
        "{found:?}"
    );
    assert!(report["runs"][0]["kernel"]["release"]
        .as_str()
        .unwrap()
        .contains("-debug-mini-"));
}

#[test]
fn a_leak_is_a_kmemleak_finding_that_names_the_module_and_its_function() {
    let dir = scratch("debug-leak");
    let (out, report) = run_on_debug_kernel(dir.path(), "leak");
    let scenario = &scenarios(&report)[0];
    assert_eq!(out.status.code(), Some(0), "{}\n{scenario}", describe(&out));
    let found = findings(scenario);
    assert!(
        found.iter().any(|(kind, title, module)| kind == "kmemleak"
            && title == "memory leak in mh_leaky_init"
            && module == "mh_leaky"),
        "rmmod leaves the allocating frame a bare address; the load history and the module's \
         symbols name it: {found:?}"
    );
    // KASAN's quarantine holds freed objects; emptied before each sample, the growth verdict
    // still sees the leak and nothing else.
    assert_eq!(scenario["memory"]["verdict"], "leak", "{scenario}");
}

#[test]
fn a_fixed_twin_stays_clean_on_the_debug_kernel() {
    let dir = scratch("debug-fixed");
    let (out, report) = run_on_debug_kernel(dir.path(), "timer-fixed");
    let scenario = &scenarios(&report)[0];
    assert_eq!(out.status.code(), Some(0), "{}\n{scenario}", describe(&out));
    assert_eq!(findings(scenario), [], "{scenario}");
}
