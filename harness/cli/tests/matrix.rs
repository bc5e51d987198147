//! `modharness matrix` end to end on the real default kernel, and its outputs read by the
//! consumers CI dashboards use: Python's junitparser and KernelCI's kcidb-io validator
//! (`ci/install-deps.sh` installs both).

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{describe, modharness, report, scratch};

fn matrix(dir: &Path, args: &[&str]) -> Output {
    modharness()
        .arg("matrix")
        .arg("--matrix")
        .arg(dir.join("matrix.yaml"))
        .args(args)
        .output()
        .unwrap()
}

/// (kernel, scenario, status, finding titles) of every cell, and the bug titles.
type Cells = (Vec<(String, String, String, Vec<String>)>, Vec<String>);

fn cells(out_dir: &Path) -> Cells {
    let json = report(out_dir);
    let mut cells = Vec::new();
    for run in json["runs"].as_array().unwrap() {
        for s in run["scenarios"].as_array().unwrap() {
            let titles = s["findings"].as_array().unwrap();
            cells.push((
                run["kernel"]["spec"].as_str().unwrap().to_owned(),
                s["name"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
                titles
                    .iter()
                    .map(|f| f["title"].as_str().unwrap().to_owned())
                    .collect(),
            ));
        }
    }
    let bugs = json["bugs"].as_array().unwrap();
    let titles = bugs
        .iter()
        .map(|b| b["title"].as_str().unwrap().to_owned())
        .collect();
    (cells, titles)
}

/// Runs a Python check; a missing package is a failure that says how to install it.
fn python(script: &str, arg: &Path) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python check failed (ci/install-deps.sh installs junitparser and kcidb-io):\n{}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn two_shards_merged_equal_the_unsharded_matrix_and_dashboards_accept_the_outputs() {
    let dir = scratch("matrix");
    std::fs::write(
        dir.path().join("matrix.yaml"),
        "kernels: [debian:latest]\nscenarios: [smoke, timer-race]\n",
    )
    .unwrap();
    let whole = dir.path().join("whole");
    let out = matrix(
        dir.path(),
        &["--jobs", "2", "--out", whole.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    for i in 1..=2 {
        let shard = dir.path().join(format!("s{i}"));
        let out = matrix(
            dir.path(),
            &[
                "--shard",
                &format!("{i}/2"),
                "--out",
                shard.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        // Each shard ran one of the two cells.
        assert_eq!(cells(&shard).0.len(), 1, "{}", describe(&out));
    }
    let merged = dir.path().join("merged");
    let out = modharness()
        .args(["report", "merge", "--out"])
        .arg(&merged)
        .arg(dir.path().join("s2/report.json"))
        .arg(dir.path().join("s1/report.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let expected = cells(&whole);
    assert_eq!(cells(&merged), expected);
    assert_eq!(expected.0.len(), 2);
    assert_eq!(
        expected.1,
        ["BUG: unable to handle page fault in __run_timers"]
    );

    let junit = python(
        "import sys, junitparser\n\
         x = junitparser.JUnitXml.fromfile(sys.argv[1] + '/junit.xml')\n\
         for s in x:\n\
         \x20   props = dict((p.name, p.value) for p in s.properties())\n\
         \x20   print(props['kernel.spec'], props['kernel.flavour'], props['accel'], sorted(c.name for c in s))\n",
        &merged,
    );
    assert!(
        junit.starts_with("debian:latest amd64 ") && junit.contains("['smoke', 'timer-race']"),
        "{junit}"
    );
    let kcidb = python(
        "import sys, json, kcidb_io\n\
         data = json.load(open(sys.argv[1] + '/report.kcidb.json'))\n\
         kcidb_io.schema.LATEST.validate(data)\n\
         print(len(data['tests']), len(data['issues']), len(data['incidents']))\n",
        &merged,
    );
    assert_eq!(kcidb.trim(), "2 1 1");

    // Against the merged night as its baseline, a shard finds nothing new: the bug is "still".
    let again = dir.path().join("again");
    let baseline = merged.join("report.json");
    let out = matrix(
        dir.path(),
        &[
            "--shard",
            "1/2",
            "--baseline",
            baseline.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Against the baseline of"),
        "{}",
        describe(&out)
    );
    assert!(!stdout.contains("NEW"), "{}", describe(&out));
}

#[test]
fn a_bad_matrix_file_exits_2_naming_its_line_and_writes_nothing() {
    let dir = scratch("matrix-bad");
    std::fs::write(
        dir.path().join("matrix.yaml"),
        "kernels:\n  - debian:latest\n  - { spec: debian:latest, scenarios: [smoke] }\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = matrix(dir.path(), &["--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("matrix.yaml:3:5: kernel `debian:latest` a second time"),
        "{stderr}"
    );
    assert!(!out_dir.exists());

    std::fs::write(
        dir.path().join("matrix.yaml"),
        "kernels: [debian:latest]\nscenarios: [smoke, ../outside.yaml]\n",
    )
    .unwrap();
    let out = matrix(dir.path(), &["--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("matrix.yaml:2:20: `../outside.yaml`"),
        "{}",
        describe(&out)
    );
    assert!(!out_dir.exists());
}
