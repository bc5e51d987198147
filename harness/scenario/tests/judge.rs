//! Matching a run's findings against a scenario's expectations.

use std::path::Path;

use modharness_scenario::{judge, parse, Expect, FoundFinding};

fn expect(findings_yaml: &str) -> Expect {
    let text = format!("name: t\nsteps: [ {{ load: a }} ]\nexpect:\n  findings: {findings_yaml}\n");
    parse(&text, Path::new("t.yaml")).unwrap().expect
}

fn found<'a>(kind: &'a str, module: Option<&'a str>, title: &'a str) -> FoundFinding<'a> {
    FoundFinding {
        kind,
        module,
        title,
    }
}

const OOPS_TITLE: &str = "BUG: unable to handle page fault in __run_timers";

#[test]
fn nothing_expected_and_nothing_found_passes() {
    let judgement = judge(&Expect::default(), &[]);
    assert!(judgement.expected.is_empty());
    assert!(judgement.missing.is_empty());
    assert!(judgement.passed());
}

#[test]
fn by_default_any_finding_is_unexpected() {
    let judgement = judge(
        &Expect::default(),
        &[found("warning", None, "WARNING in foo")],
    );
    assert_eq!(judgement.expected, [false]);
    assert!(!judgement.passed());
}

#[test]
fn a_finding_of_the_expected_kind_and_module_is_expected() {
    let expect = expect("[ { kind: oops, module: race_timer } ]");
    let judgement = judge(&expect, &[found("oops", Some("race_timer"), OOPS_TITLE)]);
    assert_eq!(judgement.expected, [true]);
    assert!(judgement.missing.is_empty());
    assert!(judgement.passed());
}

#[test]
fn a_different_kind_does_not_match() {
    let expect = expect("[ { kind: oops, module: race_timer } ]");
    let judgement = judge(&expect, &[found("warning", Some("race_timer"), OOPS_TITLE)]);
    assert_eq!(judgement.expected, [false]);
    assert_eq!(judgement.missing, [0]);
    assert!(!judgement.passed());
}

#[test]
fn a_different_or_missing_module_does_not_match_an_expectation_that_names_one() {
    let expect = expect("[ { kind: oops, module: race_timer } ]");
    let judgement = judge(
        &expect,
        &[
            found("oops", Some("other"), OOPS_TITLE),
            found("oops", None, OOPS_TITLE),
        ],
    );
    assert_eq!(judgement.expected, [false, false]);
    assert_eq!(judgement.missing, [0]);
}

#[test]
fn an_expectation_without_module_matches_any_module() {
    let expect = expect("[ { kind: oops } ]");
    let judgement = judge(
        &expect,
        &[
            found("oops", Some("other"), OOPS_TITLE),
            found("oops", None, OOPS_TITLE),
        ],
    );
    assert_eq!(judgement.expected, [true, true]);
    assert!(judgement.passed());
}

#[test]
fn found_module_names_are_compared_normalized() {
    let expect = expect("[ { kind: oops, module: race-timer } ]");
    let judgement = judge(&expect, &[found("oops", Some("race-timer"), OOPS_TITLE)]);
    assert!(judgement.passed());
}

#[test]
fn a_title_pattern_must_match_somewhere_in_the_title() {
    let expect = expect("[ { kind: oops, title: 'page fault in (__run_timers|call_timer_fn)' } ]");
    let matching = judge(&expect, &[found("oops", None, OOPS_TITLE)]);
    assert_eq!(matching.expected, [true]);
    let other = judge(
        &expect,
        &[found(
            "oops",
            None,
            "BUG: kernel NULL pointer dereference in foo",
        )],
    );
    assert_eq!(other.expected, [false]);
    assert_eq!(other.missing, [0]);
}

#[test]
fn one_expectation_covers_a_race_that_fires_twice() {
    let expect = expect("[ { kind: oops, module: race_timer } ]");
    let judgement = judge(
        &expect,
        &[
            found("oops", Some("race_timer"), OOPS_TITLE),
            found("oops", Some("race_timer"), OOPS_TITLE),
        ],
    );
    assert_eq!(judgement.expected, [true, true]);
    assert!(judgement.passed());
}

#[test]
fn an_expectation_nothing_matched_is_missing() {
    let expect = expect("[ { kind: oops }, { kind: kasan }, { kind: warning } ]");
    let judgement = judge(
        &expect,
        &[found(
            "kasan",
            None,
            "KASAN: slab-use-after-free Read in bar",
        )],
    );
    assert_eq!(judgement.expected, [true]);
    assert_eq!(judgement.missing, [0, 2]);
    assert!(!judgement.passed());
}

#[test]
fn an_unexpected_finding_fails_even_when_every_expectation_is_met() {
    let expect = expect("[ { kind: oops } ]");
    let judgement = judge(
        &expect,
        &[
            found("oops", None, OOPS_TITLE),
            found("hung_task", None, "INFO: task hung in baz"),
        ],
    );
    assert_eq!(judgement.expected, [true, false]);
    assert!(judgement.missing.is_empty());
    assert!(!judgement.passed());
}
