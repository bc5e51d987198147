//! End to end on a debug kernel built here, the way a user gets one: `images build debug-mini`
//! (the small recipe of images/: KASAN, kmemleak and ODEBUG on allnoconfig; 7–10 minutes on two
//! cores the first time, cached after), then a race, a leak and a fixed twin run on it with
//! `run --kernel debug-mini:latest` and the default accelerator. The full `debug` recipe builds
//! the same way, only longer: it is measured in the README, not here.

mod common;

use std::path::Path;

use common::*;

const SPEC: &str = "debug-mini:latest";

/// `modharness run SCENARIO --kernel debug-mini:latest --out DIR/out`, which must pass: its
/// report and its scenario's findings as (kind, title, module).
fn passing_run(dir: &Path, scenario: &str) -> (serde_json::Value, Vec<(String, String, String)>) {
    let out = modharness()
        .args(["run", scenario, "--kernel", SPEC, "--out"])
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let report = report(&dir.join("out"));
    let result = &scenarios(&report)[0];
    assert_eq!(out.status.code(), Some(0), "{}\n{result}", describe(&out));
    let found = result["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |key: &str| f[key].as_str().unwrap_or_default().to_string();
            (text("kind"), text("title"), text("module"))
        })
        .collect();
    (report, found)
}

/// Whether one of `found` has this kind, title and module.
fn has(found: &[(String, String, String)], kind: &str, title: &str, module: &str) -> bool {
    found
        .iter()
        .any(|f| (f.0.as_str(), f.1.as_str(), f.2.as_str()) == (kind, title, module))
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
    let (report, found) = passing_run(dir.path(), "fops-race");
    // The open file's `close()` reads the `file_operations` of a module already gone: with
    // KASAN_VMALLOC that read is reported before it faults (3 runs of 3 here). The address is
    // the gone module's data, which only the load history can name.
    let title = "KASAN: vmalloc-out-of-bounds Read in filp_flush";
    assert!(has(&found, "kasan", title, "race_fops_buggy"), "{found:?}");
    assert!(report["runs"][0]["kernel"]["release"]
        .as_str()
        .unwrap()
        .contains("-debug-mini-"));
}

#[test]
fn a_leak_is_a_kmemleak_finding_that_names_the_module_and_its_function() {
    let dir = scratch("debug-leak");
    let (report, found) = passing_run(dir.path(), "leak");
    // rmmod leaves the allocating frame a bare address; the load history and the module's
    // symbols name it.
    let title = "memory leak in mh_leaky_init";
    assert!(has(&found, "kmemleak", title, "mh_leaky"), "{found:?}");
    // KASAN's quarantine holds freed objects; emptied before each sample, the growth verdict
    // still sees the leak and nothing else.
    let memory = &scenarios(&report)[0]["memory"];
    assert_eq!(memory["verdict"], "leak", "{memory}");
}

#[test]
fn a_fixed_twin_stays_clean_on_the_debug_kernel() {
    let dir = scratch("debug-fixed");
    let (_, found) = passing_run(dir.path(), "timer-fixed");
    assert_eq!(found, [], "nothing may be found");
}
