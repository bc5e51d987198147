//! Runs every console log in `tests/corpus/`: each `NAME.log` with a `NAME.expected.json` beside
//! it is a case. The expected file lists the findings in order, each as
//! `{kind, title, module, panicked, corrupted}` (other fields are ignored), either as a JSON array
//! or as the `{"findings": [...]}` object `modharness triage --json` prints.

use std::fs;
use std::path::{Path, PathBuf};

use modharness_triage::{triage, Finding, Triage};
use serde::Deserialize;

#[derive(Deserialize, Debug, PartialEq)]
struct Expected {
    kind: String,
    title: String,
    module: Option<String>,
    panicked: bool,
    corrupted: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExpectedFile {
    List(Vec<Expected>),
    Object { findings: Vec<Expected> },
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn logs() -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(corpus_dir())
        .expect("tests/corpus exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn summary(finding: &Finding) -> Expected {
    Expected {
        kind: finding.kind.as_str().to_string(),
        title: finding.title.clone(),
        module: finding.module.clone(),
        panicked: finding.panicked,
        corrupted: finding.corrupted,
    }
}

#[test]
fn every_corpus_log_gives_its_expected_findings() {
    let mut cases = 0;
    let mut failures = Vec::new();
    for log in logs() {
        let expected_path = log.with_extension("expected.json");
        let Ok(text) = fs::read_to_string(&expected_path) else {
            continue;
        };
        cases += 1;
        let expected = match serde_json::from_str::<ExpectedFile>(&text) {
            Ok(ExpectedFile::List(list)) | Ok(ExpectedFile::Object { findings: list }) => list,
            Err(e) => {
                failures.push(format!("{}: {e}", expected_path.display()));
                continue;
            }
        };
        let bytes = fs::read(&log).expect("readable log");
        let actual: Vec<Expected> = triage(&bytes).iter().map(summary).collect();
        if actual != expected {
            failures.push(format!(
                "{}:\n  expected {expected:#?}\n  actual   {actual:#?}",
                log.display()
            ));
        }
    }
    assert!(
        cases > 0,
        "no corpus cases found in {}",
        corpus_dir().display()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_corpus_log_gives_the_same_findings_in_any_chunking() {
    for log in logs() {
        let bytes = fs::read(&log).expect("readable log");
        let whole = triage(&bytes);
        for chunk_size in [1, 2, 3, 7, 64, 1000, 4096] {
            let mut reader = Triage::new();
            let mut findings = Vec::new();
            for chunk in bytes.chunks(chunk_size) {
                findings.extend(reader.feed(chunk));
            }
            findings.extend(reader.finish());
            assert_eq!(
                findings,
                whole,
                "{} fed in chunks of {chunk_size}",
                log.display()
            );
        }
    }
}

#[test]
fn crlf_line_endings_give_the_same_findings() {
    for log in logs() {
        let bytes = fs::read(&log).expect("readable log");
        let crlf: Vec<u8> = bytes
            .iter()
            .flat_map(|&b| {
                if b == b'\n' {
                    vec![b'\r', b'\n']
                } else {
                    vec![b]
                }
            })
            .collect();
        let titles = |findings: Vec<Finding>| findings.iter().map(summary).collect::<Vec<_>>();
        assert_eq!(
            titles(triage(&crlf)),
            titles(triage(&bytes)),
            "{}",
            log.display()
        );
    }
}
