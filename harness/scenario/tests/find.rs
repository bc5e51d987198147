//! Resolving a `SCENARIO` argument to a file.

use std::fs;
use std::path::{Path, PathBuf};

use modharness_scenario::{bundled_scenarios, find_scenario};

/// A temporary directory, removed when dropped.
struct Workspace(PathBuf);

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Workspace {
    fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.0.join(path)
    }
}

/// A fresh directory with a `scenarios/` holding `timer-race.yaml` and `leak.yaml`, and a
/// `secret.yaml` beside it that no name may reach.
fn workspace(test: &str) -> Workspace {
    let root =
        std::env::temp_dir().join(format!("modharness-scenario-{}-{test}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("scenarios")).unwrap();
    fs::write(root.join("scenarios/timer-race.yaml"), "name: timer-race\n").unwrap();
    fs::write(root.join("scenarios/leak.yaml"), "name: leak\n").unwrap();
    fs::write(root.join("scenarios/notes.txt"), "not a scenario\n").unwrap();
    fs::write(root.join("secret.yaml"), "name: secret\n").unwrap();
    Workspace(root)
}

#[test]
fn an_existing_path_is_taken_as_is() {
    let root = workspace("path");
    let path = root.join("secret.yaml");
    let found = find_scenario(path.to_str().unwrap(), &root.join("scenarios")).unwrap();
    assert_eq!(found, path);
}

#[test]
fn a_name_is_looked_up_in_the_scenarios_dir() {
    let root = workspace("name");
    let found = find_scenario("timer-race", &root.join("scenarios")).unwrap();
    assert_eq!(found, root.join("scenarios/timer-race.yaml"));
}

#[test]
fn a_name_cannot_escape_the_scenarios_dir() {
    let root = workspace("escape");
    let scenarios = root.join("scenarios");
    for arg in [
        "../secret",
        "x/../../secret",
        "a..b",
        "scenarios/timer-race",
    ] {
        let error = find_scenario(arg, &scenarios).unwrap_err();
        assert_eq!(error.line, 0, "{arg}");
        assert!(error.message.starts_with("no such file"), "{arg}: {error}");
    }
}

#[test]
fn an_unknown_name_lists_the_bundled_scenarios() {
    let root = workspace("unknown");
    let scenarios = root.join("scenarios");
    let error = find_scenario("timer-rase", &scenarios).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "timer-rase: no such file, and no scenario of that name in {0}; expected a YAML path \
             or a scenario name, one of: leak, timer-race",
            scenarios.display()
        )
    );
}

#[test]
fn a_directory_is_not_a_scenario() {
    let root = workspace("directory");
    let error = find_scenario(root.0.to_str().unwrap(), &root.join("scenarios")).unwrap_err();
    assert!(error.message.starts_with("not a file"), "{error}");
}

#[test]
fn bundled_scenarios_are_the_sorted_yaml_stems() {
    let root = workspace("bundled");
    assert_eq!(
        bundled_scenarios(&root.join("scenarios")),
        ["leak", "timer-race"]
    );
    assert!(bundled_scenarios(&root.join("nonexistent")).is_empty());
}
