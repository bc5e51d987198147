//! Which modules a scenario names, and the check that they exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use modharness_scenario::{load, parse};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const UNKNOWN: &str = "in guest-modules/ or --modules dirs, nor in the kernel's modules; expected \
a module whose source is under guest-modules/ or in a directory given with --modules DIR \
(`modharness list modules` shows them)";

#[test]
fn module_names_include_modules_named_only_in_nested_steps() {
    let scenario = load(&fixture("unknown-module.yaml")).unwrap();
    let expected: BTreeSet<String> = ["known", "missing_one", "missing_two"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(scenario.module_names(), expected);
}

#[test]
fn module_names_normalize_dashes_like_the_kernel() {
    let text = "name: t\nmodules: [a-b]\nsteps: [ { unload: c-d } ]\n";
    let names = parse(text, Path::new("t.yaml")).unwrap().module_names();
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["a_b", "c_d"]);
}

#[test]
fn all_modules_known_passes() {
    let path = fixture("unknown-module.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = parse(&text, &path).unwrap();
    scenario.check_modules(&text, |_| true).unwrap();
}

#[test]
fn an_unknown_module_in_a_long_form_load_is_reported_at_its_module_key() {
    let path = fixture("unknown-module.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = parse(&text, &path).unwrap();
    let error = scenario
        .check_modules(&text, |module| module == "known")
        .unwrap_err();
    assert_eq!((error.line, error.column), (11, 27));
    assert_eq!(error.message, format!("no module `missing_one` {UNKNOWN}"));
    assert_eq!(error.file, path);
}

#[test]
fn an_unknown_unloaded_module_is_reported_at_its_name() {
    let path = fixture("unknown-module.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = parse(&text, &path).unwrap();
    let error = scenario
        .check_modules(&text, |module| module != "missing_two")
        .unwrap_err();
    assert_eq!((error.line, error.column), (13, 13));
    assert_eq!(error.message, format!("no module `missing_two` {UNKNOWN}"));
}

#[test]
fn an_unknown_module_in_the_modules_list_is_reported_there_first() {
    let path = fixture("unknown-module.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let scenario = parse(&text, &path).unwrap();
    let error = scenario.check_modules(&text, |_| false).unwrap_err();
    assert_eq!((error.line, error.column), (2, 11));
    assert_eq!(error.message, format!("no module `known` {UNKNOWN}"));
}

#[test]
fn unknown_modules_are_located_in_short_loads_and_inside_parallel_branches() {
    let text = "\
name: t
steps:
  - load: first
  - parallel:
      - [ { load: second } ]
      - [ { unload: third } ]
";
    let scenario = parse(text, Path::new("t.yaml")).unwrap();
    let position = |unknown: &str| {
        let error = scenario
            .check_modules(text, |module| module != unknown)
            .unwrap_err();
        (error.line, error.column)
    };
    assert_eq!(position("first"), (3, 11));
    assert_eq!(position("second"), (5, 19));
    assert_eq!(position("third"), (6, 21));
}

#[test]
fn modules_are_checked_by_their_normalized_name() {
    let text = "name: t\nsteps: [ { load: my-mod } ]\n";
    let scenario = parse(text, Path::new("t.yaml")).unwrap();
    scenario
        .check_modules(text, |module| module == "my_mod")
        .unwrap();
}
