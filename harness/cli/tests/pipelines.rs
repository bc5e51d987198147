//! The nightly pipelines of `ci/` checked with their ecosystems' schemas (GitHub's workflow
//! schema and GitLab's CI schema, as `check-jsonschema` ships them; `ci/install-deps.sh`
//! installs it), and the script both call checked by bash.

mod common;

use std::path::Path;
use std::process::Command;

use common::{describe, repo, scratch};

fn check(schema: &str, file: &Path) -> std::process::Output {
    Command::new("check-jsonschema")
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .expect("check-jsonschema runs (ci/install-deps.sh installs it with pip)")
}

#[test]
fn the_nightly_pipelines_pass_their_platforms_schemas_and_a_broken_one_does_not() {
    for (schema, file) in [
        ("vendor.github-workflows", "ci/github-nightly.yml"),
        ("vendor.gitlab-ci", "ci/gitlab-nightly.yml"),
    ] {
        let path = repo().join(file);
        let out = check(schema, &path);
        assert!(out.status.success(), "{file}: {}", describe(&out));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("ci/nightly.sh shard"),
            "{file} calls the shared script"
        );
        assert!(
            text.contains("ci/nightly.sh merge"),
            "{file} merges the shards"
        );

        // The check can fail: the same file with a job that has no way to run.
        let dir = scratch("pipeline");
        let broken = dir.path().join("broken.yml");
        std::fs::write(
            &broken,
            format!("{text}\nbroken-job:\n  stage: 42\n  runs-on: []\n"),
        )
        .unwrap();
        assert!(
            !check(schema, &broken).status.success(),
            "{file}: broken copy accepted"
        );
    }
    let out = Command::new("bash")
        .arg("-n")
        .arg(repo().join("ci/nightly.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
}
