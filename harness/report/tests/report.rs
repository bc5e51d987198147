//! Behaviour of the report writers, the loader and the merge, through the public API.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use modharness_report::{
    write_atomic, Bug, BugLabel, FindingEntry, Host, KernelInfo, MemoryResult, Report, ReportError,
    Run, ScenarioResult, Series, Status, StepStats,
};

/// A fresh, empty directory for one test.
fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "modharness-report-test-{}-{}-{label}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn scenario(name: &str, status: Status) -> ScenarioResult {
    ScenarioResult {
        name: name.to_owned(),
        file: format!("scenarios/{name}.yaml"),
        status,
        duration_s: 8.1,
        findings: Vec::new(),
        memory: None,
        console_log: format!("logs/debian-6.1.0-54-amd64/{name}.console.log"),
        error: None,
        failures: Vec::new(),
        steps: StepStats {
            total: 4,
            failed: 0,
            load_unload_per_s: None,
        },
        irq: None,
        notes: Vec::new(),
        accel: None,
        mass_probe: None,
    }
}

fn oops(module: &str, expected: bool) -> FindingEntry {
    FindingEntry {
        kind: "oops".to_owned(),
        title: "BUG: unable to handle page fault in __run_timers".to_owned(),
        module: Some(module.to_owned()),
        expected,
        time_s: Some(2.45),
        panicked: false,
        corrupted: false,
        frames: Vec::new(),
    }
}

fn kernel(spec: &str, release: &str) -> KernelInfo {
    KernelInfo {
        spec: spec.to_owned(),
        release: release.to_owned(),
    }
}

/// One kernel, three scenarios: passed (with an expected oops and a memory verdict), failed,
/// error.
fn sample_report() -> Report {
    let mut passed = scenario("timer-race", Status::Passed);
    passed.findings.push(oops("race_timer", true));
    passed.memory = Some(MemoryResult {
        cycles: 40,
        leak_bytes_per_cycle: 196_608,
        verdict: "leak".to_owned(),
        ..MemoryResult::default()
    });
    let mut failed = scenario("work-race", Status::Failed);
    failed.findings.push(oops("race_work", false));
    failed.failures.push(
        "unexpected oops: BUG: unable to handle page fault in __run_timers (module race_work)"
            .to_owned(),
    );
    failed
        .failures
        .push("expected oops from module race_timer did not appear".to_owned());
    let mut error = scenario("irq-race", Status::Error);
    error.error = Some("VM could not boot: no console output within 60 s".to_owned());
    Report {
        schema: 1,
        started_at: "2025-11-25T11:49:02.000Z".to_owned(),
        duration_s: 30.0,
        host: Host {
            qemu: "7.2.22".to_owned(),
            accel: "tcg".to_owned(),
        },
        runs: vec![Run {
            accel: None,
            accel_why: None,
            kernel: kernel("debian:6.1.0-54-amd64", "6.1.0-54-amd64"),
            scenarios: vec![passed, failed, error],
        }],
        bugs: Vec::new(),
        comparison: None,
    }
}

fn object_keys(value: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

fn contains_all(keys: &[&str], required: &[&str]) -> bool {
    required.iter().all(|key| keys.contains(key))
}

#[test]
fn report_json_has_the_field_names_of_design_md() {
    let json = serde_json::to_value(sample_report()).unwrap();
    assert!(contains_all(
        &object_keys(&json),
        &["schema", "started_at", "duration_s", "host", "runs"]
    ));
    assert_eq!(json["schema"], 1);
    assert_eq!(object_keys(&json["host"]), ["accel", "qemu"]);
    let run = &json["runs"][0];
    assert_eq!(object_keys(&run["kernel"]), ["release", "spec"]);
    let scenario = &run["scenarios"][0];
    assert!(contains_all(
        &object_keys(scenario),
        &[
            "name",
            "file",
            "status",
            "duration_s",
            "findings",
            "memory",
            "console_log"
        ]
    ));
    assert!(contains_all(
        &object_keys(&scenario["findings"][0]),
        &["kind", "title", "module", "expected", "time_s"]
    ));
    assert_eq!(
        object_keys(&scenario["memory"]),
        ["cycles", "leak_bytes_per_cycle", "verdict"]
    );
    let statuses: Vec<&str> = run["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|scenario| scenario["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["passed", "failed", "error"]);
}

#[test]
fn the_design_md_example_loads_with_defaults_for_newer_fields() {
    let dir = scratch_dir("design-example");
    let path = dir.join("report.json");
    fs::write(
        &path,
        r#"{ "schema": 1, "started_at": "2025-11-25T11:49:02Z", "duration_s": 12.3,
  "host": { "qemu": "7.2.22", "accel": "tcg" },
  "runs": [ { "kernel": { "spec": "debian:6.1.0-54-amd64", "release": "6.1.0-54-amd64" },
    "scenarios": [ { "name": "timer-race", "file": "scenarios/timer-race.yaml",
      "status": "passed", "duration_s": 8.1,
      "findings": [ { "kind": "oops", "title": "BUG: unable to handle page fault in __run_timers",
                      "module": "race_timer", "expected": true, "time_s": 2.45 } ],
      "memory": { "cycles": 40, "leak_bytes_per_cycle": 196608, "verdict": "leak" },
      "console_log": "logs/debian-6.1.0-54-amd64/timer-race.console.log" } ] } ] }"#,
    )
    .unwrap();
    let report = Report::load(&path).unwrap();
    let scenario = &report.runs[0].scenarios[0];
    assert_eq!(scenario.status, Status::Passed);
    assert_eq!(scenario.findings[0].module.as_deref(), Some("race_timer"));
    assert!(!scenario.findings[0].panicked);
    assert!(scenario.failures.is_empty());
    assert_eq!(scenario.steps, StepStats::default());
}

#[test]
fn write_json_then_load_gives_the_same_report() {
    let dir = scratch_dir("round-trip");
    let report = sample_report();
    report.write_json(&dir).unwrap();
    assert_eq!(Report::load(&dir.join("report.json")).unwrap(), report);
}

#[test]
fn load_rejects_another_schema_and_names_the_file() {
    let dir = scratch_dir("schema");
    let mut report = sample_report();
    report.schema = 2;
    report.write_json(&dir).unwrap();
    let error = Report::load(&dir.join("report.json")).unwrap_err();
    assert!(matches!(
        error,
        ReportError::UnsupportedSchema { found: 2, .. }
    ));
    assert!(error.to_string().contains("report.json"), "{error}");
}

#[test]
fn load_of_broken_json_says_where() {
    let dir = scratch_dir("broken");
    let path = dir.join("report.json");
    fs::write(&path, "{\"schema\": 1,\n \"runs\": [").unwrap();
    let error = Report::load(&path).unwrap_err();
    assert!(matches!(error, ReportError::Parse { .. }));
    assert!(error.to_string().contains("line 2"), "{error}");
}

/// Everything a crashing guest might print, and then some.
fn hostile_console_bytes() -> Vec<u8> {
    let mut bytes = b"[    2.450000] BUG: unable to handle page fault <here> & there\n".to_vec();
    bytes.extend_from_slice(b"invalid utf-8: \xff\xfe\xc3\x28 \xe2\x82 end\n");
    bytes.extend_from_slice(b"nul:\0 esc:\x1b[31mred\x1b[0m bell:\x07\n");
    bytes.extend((0x01u8..=0x1f).chain([0x7f]));
    // The ESC among those bytes starts a sequence that the ANSI stripper ends at this `Z`.
    bytes.push(b'Z');
    bytes.extend_from_slice(b"\ncdata end: ]]> and <![CDATA[ x ]]>\n");
    bytes.extend_from_slice("noncharacters: \u{FFFE}\u{FFFF} surrogate: ".as_bytes());
    bytes.extend_from_slice(b"\xed\xa0\x80\n");
    bytes.extend_from_slice(b"last line\n");
    bytes
}

/// The report of [`sample_report`], with guest-controlled strings made hostile too.
fn hostile_report(out_dir: &Path) -> Report {
    let mut report = sample_report();
    for scenario in &mut report.runs[0].scenarios {
        let log = out_dir.join(&scenario.console_log);
        fs::create_dir_all(log.parent().unwrap()).unwrap();
        fs::write(&log, hostile_console_bytes()).unwrap();
    }
    let failed = &mut report.runs[0].scenarios[1];
    failed.findings[0].title = "WARNING in foo\u{0}\u{1b}[2J ]]> <b>\u{FFFF}".to_owned();
    failed.failures[0] = "unexpected warning: \u{7}]]>\u{1}".to_owned();
    report.runs[0].scenarios[2].error = Some("qemu said \u{0}\u{1b}]0;title\u{7}".to_owned());
    report
}

#[test]
fn junit_from_hostile_console_bytes_is_well_formed_xml() {
    let dir = scratch_dir("junit-hostile");
    let report = hostile_report(&dir);
    report.write_junit(&dir).unwrap();
    let xml = fs::read_to_string(dir.join("junit.xml")).unwrap();
    let document = roxmltree::Document::parse(&xml).expect("junit.xml is strict XML");

    let suite = document
        .descendants()
        .find(|node| node.has_tag_name("testsuite"))
        .unwrap();
    assert_eq!(
        suite.attribute("name"),
        Some("debian:6.1.0-54-amd64 (6.1.0-54-amd64)")
    );
    let cases: Vec<_> = suite
        .children()
        .filter(|node| node.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 3);
    assert_eq!(cases[0].attribute("name"), Some("timer-race"));
    assert_eq!(
        cases[0].attribute("classname"),
        Some("modharness.6.1.0-54-amd64")
    );
    assert_eq!(cases[0].attribute("time"), Some("8.100"));

    let system_out = cases[0]
        .children()
        .find(|node| node.has_tag_name("system-out"))
        .and_then(|node| node.text())
        .unwrap();
    assert!(system_out.contains("<here> & there"), "{system_out}");
    assert!(
        system_out.contains("cdata end: ]]> and <![CDATA[ x ]]>"),
        "{system_out:?}"
    );
    assert!(
        system_out.contains("esc:red bell:"),
        "ANSI codes stripped: {system_out:?}"
    );
    assert!(system_out.ends_with("last line\n"));

    let failure = cases[1]
        .children()
        .find(|node| node.has_tag_name("failure"))
        .unwrap();
    assert_eq!(failure.attribute("message"), Some("WARNING in foo ]]> <b>"));
    assert_eq!(
        failure.text(),
        Some(
            "unexpected warning: ]]>\nexpected oops from module race_timer did not appear\n\n\
             oops: WARNING in foo ]]> <b> (module race_work)\n"
        )
    );
    let error = cases[2]
        .children()
        .find(|node| node.has_tag_name("error"))
        .unwrap();
    assert!(error
        .attribute("message")
        .unwrap()
        .starts_with("qemu said "));
    assert_eq!(error.text(), error.attribute("message"));
}

#[test]
fn report_json_with_hostile_strings_stays_valid_json() {
    let dir = scratch_dir("json-hostile");
    let report = hostile_report(&dir);
    report.write_json(&dir).unwrap();
    let text = fs::read_to_string(dir.join("report.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
    assert_eq!(Report::load(&dir.join("report.json")).unwrap(), report);
}

#[test]
fn junit_system_out_is_only_the_tail_of_a_long_console_log() {
    let dir = scratch_dir("junit-tail");
    let mut report = sample_report();
    report.runs[0].scenarios.truncate(1);
    let log = dir.join(&report.runs[0].scenarios[0].console_log);
    fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut text = String::new();
    for line in 0..10_000 {
        text.push_str(&format!("[{line:>6}] some boot chatter\n"));
    }
    fs::write(&log, &text).unwrap();
    report.write_junit(&dir).unwrap();
    let xml = fs::read_to_string(dir.join("junit.xml")).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    let system_out = document
        .descendants()
        .find(|node| node.has_tag_name("system-out"))
        .and_then(|node| node.text())
        .unwrap();
    assert!(system_out.len() <= 16 * 1024 + 100, "{}", system_out.len());
    assert!(
        system_out.starts_with("[… "),
        "says that the head was left out"
    );
    let first_kept_line = system_out.lines().nth(1).unwrap();
    assert!(first_kept_line.starts_with('[') && first_kept_line.ends_with("chatter"));
    assert!(system_out.ends_with("[  9999] some boot chatter\n"));
}

#[test]
fn junit_without_console_log_file_has_no_system_out() {
    let dir = scratch_dir("junit-no-log");
    sample_report().write_junit(&dir).unwrap();
    let xml = fs::read_to_string(dir.join("junit.xml")).unwrap();
    let document = roxmltree::Document::parse(&xml).unwrap();
    assert_eq!(
        document
            .descendants()
            .filter(|node| node.has_tag_name("testcase"))
            .count(),
        3
    );
    assert!(!document
        .descendants()
        .any(|node| node.has_tag_name("system-out")));
}

#[test]
fn writers_leave_only_their_files_in_the_out_dir() {
    let dir = scratch_dir("atomic-writers");
    let out = dir.join("out");
    let report = sample_report();
    for _ in 0..2 {
        report.write_json(&out).unwrap();
        report.write_junit(&out).unwrap();
        report.write_html(&out).unwrap();
    }
    assert_eq!(
        dir_entries(&out),
        ["junit.xml", "report.html", "report.json"]
    );
}

#[test]
fn write_atomic_replaces_the_whole_file() {
    let dir = scratch_dir("atomic-replace");
    let path = dir.join("file.txt");
    write_atomic(&path, b"a much longer first version\n").unwrap();
    write_atomic(&path, b"short\n").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"short\n");
    assert_eq!(dir_entries(&dir), ["file.txt"]);
}

#[test]
fn write_atomic_that_fails_removes_its_temp_file_and_keeps_the_target() {
    let dir = scratch_dir("atomic-fail");
    // Renaming a file over a non-empty directory fails after the temp file was written.
    let target = dir.join("occupied");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("inside"), b"keep me").unwrap();
    assert!(write_atomic(&target, b"data").is_err());
    assert_eq!(dir_entries(&dir), ["occupied"]);
    assert_eq!(fs::read(target.join("inside")).unwrap(), b"keep me");
}

#[test]
fn write_atomic_into_a_missing_directory_is_an_error() {
    let dir = scratch_dir("atomic-missing");
    assert!(write_atomic(&dir.join("missing/file"), b"data").is_err());
    assert!(dir_entries(&dir).is_empty());
}

fn shard(started_at: &str, duration_s: f64, runs: Vec<Run>) -> Report {
    Report {
        schema: 1,
        started_at: started_at.to_owned(),
        duration_s,
        host: Host {
            qemu: "7.2.22".to_owned(),
            accel: "tcg".to_owned(),
        },
        runs,
        bugs: Vec::new(),
        comparison: None,
    }
}

fn run_of(spec: &str, names: &[&str]) -> Run {
    Run {
        accel: None,
        accel_why: None,
        kernel: kernel(spec, spec.trim_start_matches("debian:")),
        scenarios: names
            .iter()
            .map(|name| scenario(name, Status::Passed))
            .collect(),
    }
}

#[test]
fn merge_joins_runs_of_the_same_kernel_in_canonical_order() {
    let first = shard(
        "2025-11-25T12:00:00Z",
        100.0,
        vec![
            run_of("debian:6.1.0-54-amd64", &["a"]),
            run_of("debian:6.1.0-54-rt-amd64", &["b"]),
        ],
    );
    let mut second = shard(
        "2025-11-25T11:59:00Z",
        30.0,
        vec![run_of("debian:6.1.0-54-amd64", &["c", "d"])],
    );
    second.host.accel = "kvm".to_owned();
    let merged = Report::merge(vec![first, second]);

    assert_eq!(merged.schema, 1);
    assert_eq!(merged.started_at, "2025-11-25T11:59:00Z");
    // Span: from 11:59:00 (earliest start) to 12:01:40 (the first shard's end).
    assert_eq!(merged.duration_s, 160.0);
    assert_eq!(merged.host.qemu, "7.2.22");
    assert_eq!(merged.host.accel, "kvm, tcg");
    let layout: Vec<(&str, Vec<&str>)> = merged
        .runs
        .iter()
        .map(|run| {
            (
                run.kernel.spec.as_str(),
                run.scenarios.iter().map(|s| s.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        layout,
        [
            ("debian:6.1.0-54-amd64", vec!["a", "c", "d"]),
            ("debian:6.1.0-54-rt-amd64", vec!["b"]),
        ]
    );
}

#[test]
fn merge_compares_start_times_as_instants_across_offsets() {
    let utc = shard("2025-11-25T11:00:00Z", 10.0, vec![]);
    // 10:30 UTC, written with an offset: earlier, though it sorts later as text.
    let offset = shard("2025-11-25T12:30:00+02:00", 10.0, vec![]);
    let merged = Report::merge(vec![utc, offset]);
    assert_eq!(merged.started_at, "2025-11-25T12:30:00+02:00");
    assert_eq!(merged.duration_s, 1810.0);
}

#[test]
fn merge_uses_the_longest_duration_when_a_start_time_is_unreadable() {
    let good = shard("2025-11-25T11:00:00Z", 10.0, vec![]);
    let bad = shard("yesterday", 42.0, vec![]);
    assert_eq!(Report::merge(vec![good, bad]).duration_s, 42.0);
}

#[test]
fn merge_of_nothing_is_an_empty_report() {
    let merged = Report::merge(Vec::new());
    assert!(merged.runs.is_empty());
    assert_eq!(merged.duration_s, 0.0);
    assert_eq!(merged.schema, 1);
}

#[test]
fn rebased_console_logs_point_into_the_loaded_reports_directory() {
    let mut report = sample_report();
    report.runs[0].scenarios[1].console_log = "/abs/work-race.log".to_owned();
    report.rebase_console_logs(Path::new("/shards/one"));
    assert_eq!(
        report.runs[0].scenarios[0].console_log,
        "/shards/one/logs/debian-6.1.0-54-amd64/timer-race.console.log"
    );
    assert_eq!(
        report.runs[0].scenarios[1].console_log,
        "/abs/work-race.log"
    );
}

#[test]
fn summary_has_a_row_per_scenario_and_a_totals_line() {
    let summary = sample_report().summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(lines.len(), 5, "{summary}");
    assert!(lines[0].starts_with("KERNEL"));
    assert!(lines[1].starts_with("debian:6.1.0-54-amd64  timer-race"));
    assert!(lines[1].contains("PASS"));
    assert!(lines[1].ends_with("8.1s         1"), "{}", lines[1]);
    assert!(lines[2].contains("FAIL"));
    assert!(lines[2].contains("unexpected oops: BUG: unable"));
    assert!(lines[3].contains("ERROR"));
    assert!(lines[3].contains("VM could not boot"));
    assert_eq!(lines[4], "3 scenarios: 1 passed, 1 failed, 1 error");
    for line in &lines {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    assert!(
        lines[2].ends_with('…'),
        "long failure text is cut: {}",
        lines[2]
    );
}

#[test]
fn summary_stays_within_100_columns_with_long_names_and_hides_escapes() {
    let mut report = sample_report();
    report.runs[0].kernel.spec = "path:/home/someone/linux/arch/x86/boot/bzImage".to_owned();
    let failed = &mut report.runs[0].scenarios[1];
    failed.name = "a-scenario-with-a-really-very-long-name".to_owned();
    failed.failures[0] = "evil\u{1b}[2J\u{1b}]0;pwned\u{7}\nsecond line".to_owned();
    let summary = report.summary();
    for line in summary.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    assert!(!summary.contains('\u{1b}') && !summary.contains('\u{7}'));
    assert!(summary.contains("evil?[2J?]0;pwned? …"), "{summary}");
}

#[test]
fn html_escapes_guest_text_and_links_only_plain_paths() {
    let dir = scratch_dir("html");
    let mut report = sample_report();
    report.runs[0].scenarios[1].findings[0].title =
        "<script>alert('x')</script> & \u{0}".to_owned();
    report.runs[0].scenarios[2].console_log = "javascript:alert(1)".to_owned();
    report.write_html(&dir).unwrap();
    let page = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!page.contains("<script"));
    assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; \u{FFFD}"));
    assert!(page.contains("<a href=\"logs/debian-6.1.0-54-amd64/timer-race.console.log\">log</a>"));
    assert!(!page.contains("href=\"javascript:"));
    assert!(page.contains("<h2>debian:6.1.0-54-amd64 (6.1.0-54-amd64)</h2>"));
    assert!(page.contains("leak: 196608 B/cycle over 40 cycles"));
    assert!(page.contains("3 scenarios: 1 passed, 1 failed, 1 error"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external assets"
    );
}

fn finding(kind: &str, title: &str, module: Option<&str>, expected: bool) -> FindingEntry {
    FindingEntry {
        kind: kind.to_owned(),
        title: title.to_owned(),
        module: module.map(str::to_owned),
        expected,
        time_s: None,
        panicked: false,
        corrupted: false,
        frames: Vec::new(),
    }
}

/// Two kernels; the timer oops on both (expected in one scenario, not in the other), a WARNING
/// twice in one scenario, a leak once.
fn report_with_repeated_bugs() -> Report {
    const OOPS: &str = "BUG: unable to handle page fault in __run_timers";
    let mut timer = scenario("timer-race", Status::Passed);
    timer
        .findings
        .push(finding("oops", OOPS, Some("race_timer"), true));
    let mut work = scenario("work-race", Status::Failed);
    work.findings
        .push(finding("warning", "WARNING in race_work_exit", None, false));
    work.findings.push(finding(
        "warning",
        "WARNING in race_work_exit",
        Some("race_work"),
        false,
    ));
    work.findings
        .push(finding("oops", OOPS, Some("race_timer"), false));
    let mut leak = scenario("leak", Status::Failed);
    leak.findings.push(finding(
        "leak",
        "memory leak of 8 KiB per cycle",
        Some("mh_leaky"),
        false,
    ));
    let mut timer_612 = scenario("timer-race", Status::Passed);
    timer_612
        .findings
        .push(finding("oops", OOPS, Some("race_timer"), true));
    shard(
        "2025-11-25T12:00:00Z",
        10.0,
        vec![
            Run {
                accel: None,
                accel_why: None,
                kernel: kernel("debian:6.1.0-54-amd64", "6.1.0-54-amd64"),
                scenarios: vec![timer, work, leak],
            },
            Run {
                accel: None,
                accel_why: None,
                kernel: kernel("debian:latest", "6.12.117+deb12-amd64"),
                scenarios: vec![timer_612],
            },
        ],
    )
}

fn bug_titles(bugs: &[Bug]) -> Vec<&str> {
    bugs.iter().map(|bug| bug.title.as_str()).collect()
}

#[test]
fn bugs_group_findings_by_title_across_scenarios_and_kernels_in_first_seen_order() {
    let mut report = report_with_repeated_bugs();
    report.collect_bugs();
    assert_eq!(
        bug_titles(&report.bugs),
        [
            "BUG: unable to handle page fault in __run_timers",
            "WARNING in race_work_exit",
            "memory leak of 8 KiB per cycle",
        ]
    );
    let oops = &report.bugs[0];
    assert_eq!(oops.kind, "oops");
    assert!(!oops.expected, "one occurrence was unexpected");
    let places: Vec<(&str, &str, &str)> = oops
        .occurrences
        .iter()
        .map(|o| (o.kernel.as_str(), o.release.as_str(), o.scenario.as_str()))
        .collect();
    assert_eq!(
        places,
        [
            ("debian:6.1.0-54-amd64", "6.1.0-54-amd64", "timer-race"),
            ("debian:6.1.0-54-amd64", "6.1.0-54-amd64", "work-race"),
            ("debian:latest", "6.12.117+deb12-amd64", "timer-race"),
        ]
    );
    let warning = &report.bugs[1];
    assert_eq!(warning.occurrences.len(), 1, "one scenario counts once");
    assert_eq!(
        warning.module.as_deref(),
        Some("race_work"),
        "the first module a finding names"
    );
}

#[test]
fn a_bug_is_expected_only_when_every_occurrence_was() {
    let mut report = report_with_repeated_bugs();
    for run in &mut report.runs {
        for scenario in &mut run.scenarios {
            if scenario.name == "work-race" {
                scenario.findings.retain(|f| f.kind != "oops");
            }
        }
    }
    report.collect_bugs();
    assert!(report.bugs[0].expected);
    assert_eq!(report.bugs[0].occurrences.len(), 2);
    assert!(!report.bugs[1].expected);
}

#[test]
fn bugs_round_trip_and_old_reports_without_them_load_with_none() {
    let dir = scratch_dir("bugs-json");
    let mut report = report_with_repeated_bugs();
    report.collect_bugs();
    report.write_json(&dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], 1);
    assert_eq!(
        object_keys(&json["bugs"][0]),
        ["expected", "kind", "module", "occurrences", "title"]
    );
    assert_eq!(
        object_keys(&json["bugs"][0]["occurrences"][0]),
        ["kernel", "release", "scenario"]
    );
    assert_eq!(Report::load(&dir.join("report.json")).unwrap(), report);

    let mut old = json.clone();
    old.as_object_mut().unwrap().remove("bugs");
    fs::write(dir.join("report.json"), old.to_string()).unwrap();
    assert!(Report::load(&dir.join("report.json"))
        .unwrap()
        .bugs
        .is_empty());
}

#[test]
fn merge_recomputes_bugs_over_all_shards() {
    let mut first = report_with_repeated_bugs();
    first.collect_bugs();
    let mut second = shard(
        "2025-11-25T12:00:05Z",
        10.0,
        vec![Run {
            accel: None,
            accel_why: None,
            kernel: kernel("debian:6.1.0-54-amd64", "6.1.0-54-amd64"),
            scenarios: vec![{
                let mut selfput = scenario("selfput-race", Status::Failed);
                selfput.findings.push(finding(
                    "oops",
                    "BUG: unable to handle page fault in __run_timers",
                    None,
                    false,
                ));
                selfput
                    .findings
                    .push(finding("warning", "WARNING in module_put", None, false));
                selfput
            }],
        }],
    );
    second.bugs = vec![]; // never collected: merge must not rely on the inputs' bugs
    let merged = Report::merge(vec![first, second]);
    assert_eq!(
        bug_titles(&merged.bugs),
        [
            "memory leak of 8 KiB per cycle",
            "BUG: unable to handle page fault in __run_timers",
            "WARNING in module_put",
            "WARNING in race_work_exit",
        ]
    );
    let scenarios: Vec<&str> = merged.bugs[1]
        .occurrences
        .iter()
        .map(|o| o.scenario.as_str())
        .collect();
    // Runs of the same kernel are joined, so 6.1's scenarios (by name) come before 6.12's.
    assert_eq!(
        scenarios,
        ["selfput-race", "timer-race", "work-race", "timer-race"]
    );
}

#[test]
fn summary_counts_distinct_bugs_and_lists_unexpected_ones_first() {
    let mut report = report_with_repeated_bugs();
    report.runs[0].scenarios[0].findings[0].title = "WARNING in timer_ok".to_owned();
    report.collect_bugs();
    let summary = report.summary();
    let lines: Vec<&str> = summary.lines().collect();
    let header = lines
        .iter()
        .position(|line| line.starts_with("4 distinct bugs (3 unexpected):"))
        .unwrap_or_else(|| panic!("no bugs section: {summary}"));
    let listed = &lines[header + 1..header + 5];
    assert_eq!(
        listed,
        [
            "  UNEXPECTED WARNING in race_work_exit (module race_work): 1 scenario run on 1 kernel",
            "  UNEXPECTED BUG: unable to handle page fault in __run_timers (module race_timer): 2 \
             scenario runs …",
            "  UNEXPECTED memory leak of 8 KiB per cycle (module mh_leaky): 1 scenario run on 1 kernel",
            "  expected   WARNING in timer_ok (module race_timer): 1 scenario run on 1 kernel",
        ],
        "{summary}"
    );
    assert_eq!(
        lines.last(),
        Some(&"4 scenarios: 2 passed, 2 failed, 0 errors")
    );
    for line in &lines {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
}

#[test]
fn summary_without_findings_has_no_bugs_section() {
    let mut report = shard(
        "2025-11-25T12:00:00Z",
        1.0,
        vec![run_of("debian:latest", &["a"])],
    );
    report.collect_bugs();
    assert!(!report.summary().contains("distinct bug"));
}

#[test]
fn html_lists_bugs_with_where_they_were_found_and_escapes_titles() {
    let dir = scratch_dir("html-bugs");
    let mut report = report_with_repeated_bugs();
    report.runs[0].scenarios[2].findings[0].title = "<b>leak</b>".to_owned();
    report.collect_bugs();
    report.write_html(&dir).unwrap();
    let page = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        page.contains("<h2>3 distinct bugs (3 unexpected)</h2>"),
        "{page}"
    );
    assert!(page.contains("<li>timer-race on debian:latest (6.12.117+deb12-amd64)</li>"));
    assert!(page.contains("&lt;b&gt;leak&lt;/b&gt;") && !page.contains("<b>leak"));
    let bugs_at = page.find("distinct bugs").unwrap();
    let first_run_at = page.find("<h2>debian:6.1.0-54-amd64").unwrap();
    assert!(bugs_at < first_run_at, "bugs come before the runs");
}

#[test]
fn one_title_blamed_on_two_modules_is_two_bugs() {
    const TITLE: &str = "BUG: unable to handle page fault";
    let mut kthread = scenario("kthread-race", Status::Passed);
    kthread
        .findings
        .push(finding("oops", TITLE, Some("race_kthread_buggy"), true));
    let mut rcu = scenario("rcu-race", Status::Passed);
    rcu.findings
        .push(finding("oops", TITLE, Some("race_rcu_buggy"), true));
    let mut report = on_debian_latest("6.12.117+deb12-amd64", vec![kthread, rcu]);
    report.collect_bugs();
    let modules: Vec<_> = report.bugs.iter().map(|b| b.module.as_deref()).collect();
    assert_eq!(
        modules,
        [Some("race_kthread_buggy"), Some("race_rcu_buggy")]
    );
}

/// A 30-cycle run leaking 3 KiB a cycle in `kmalloc-64`, with a second growing cache named by
/// hostile guest bytes.
fn leaking_memory_result(hostile_name: &str) -> MemoryResult {
    use modharness_memory::{analyze, Label, Options, Sample};
    use std::collections::BTreeMap;
    let samples: Vec<Sample> = (0..=30u64)
        .map(|c| Sample {
            cycle: c as u32,
            label: Label::Cycle,
            meminfo: BTreeMap::from([("SUnreclaim".to_string(), (10_000 + 4 * c) * 1024)]),
            slab: BTreeMap::from([
                ("kmalloc-64".to_string(), (100 + c * 3 / 4) * 4096),
                (hostile_name.to_string(), (10 + c / 4) * 4096),
            ]),
            ..Sample::default()
        })
        .collect();
    let analysis = analyze(&samples, &Options::default());
    MemoryResult::from_analysis(&analysis, Series::from_samples(&samples, 8))
}

#[test]
fn memory_results_keep_the_schema_1_fields_and_add_interval_attribution_and_series() {
    let mut report = sample_report();
    report.runs[0].scenarios[0].memory = Some(leaking_memory_result("kmalloc-128"));
    let json = serde_json::to_value(&report).unwrap();
    let memory = &json["runs"][0]["scenarios"][0]["memory"];
    assert_eq!(memory["verdict"], "leak");
    assert_eq!(memory["cycles"], 30);
    assert!(memory["leak_bytes_per_cycle"].as_i64().unwrap() > 3000);
    assert!(contains_all(
        &object_keys(memory),
        &["ci", "floor", "bar", "warm_up", "growth", "series"]
    ));
    assert_eq!(memory["growth"][0]["name"], "kmalloc-64");
    assert_eq!(memory["growth"][0]["source"], "slab");
    assert_eq!(memory["series"]["cycles"].as_array().unwrap().len(), 31);
    assert!(memory["series"]["slab"]["kmalloc-64"].is_array());
    let dir = scratch_dir("memory-round-trip");
    report.write_json(&dir).unwrap();
    assert_eq!(Report::load(&dir.join("report.json")).unwrap(), report);
}

#[test]
fn html_plots_memory_as_inline_svg_that_is_strict_xml_with_guest_names_escaped() {
    let dir = scratch_dir("html-svg");
    let hostile = "<script>alert(1)</script>&\u{1b}[31m\u{0}]]>\u{FFFE}";
    let mut report = sample_report();
    report.runs[0].scenarios[0].memory = Some(leaking_memory_result(hostile));
    report.write_html(&dir).unwrap();
    let page = fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(!page.contains("<script"), "guest text is escaped");
    assert!(page.contains("<h3>Memory of timer-race</h3>"));
    assert!(
        page.contains("<li><code>kmalloc-64</code> +3072 B/cycle</li>"),
        "{page}"
    );
    let charts: Vec<&str> = page
        .match_indices("<svg")
        .map(|(start, _)| {
            let end = page[start..].find("</svg>").unwrap() + start + "</svg>".len();
            &page[start..end]
        })
        .collect();
    assert_eq!(charts.len(), 2, "the judged total and the growing caches");
    for chart in &charts {
        let document = roxmltree::Document::parse(chart).expect("each chart is strict XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        assert!(!chart.contains("<script") && !chart.contains("href"));
    }
    let sources = roxmltree::Document::parse(charts[1]).unwrap();
    let legend: Vec<&str> = sources
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text())
        .collect();
    assert!(
        legend.iter().any(|t| t.starts_with("slab kmalloc-64 (+")),
        "{legend:?}"
    );
    assert!(
        legend
            .iter()
            .any(|t| t.contains("<script>alert(1)</script>")),
        "{legend:?}"
    );
    assert!(
        !page.contains("http"),
        "no external assets, no namespace URL either"
    );
}

#[test]
fn merge_ignores_input_order_and_merging_again_changes_nothing() {
    let first = shard(
        "2025-11-25T12:00:00Z",
        100.0,
        vec![
            run_of("debian:latest", &["smoke", "leak"]),
            run_of("debug:latest", &["a"]),
        ],
    );
    let second = shard(
        "2025-11-25T12:00:10Z",
        50.0,
        vec![run_of("debian:latest", &["timer-race"])],
    );
    let forward = Report::merge(vec![first.clone(), second.clone()]);
    let backward = Report::merge(vec![second.clone(), first]);
    assert_eq!(forward, backward);
    assert_eq!(
        Report::merge(vec![forward.clone(), forward.clone()]),
        forward
    );
    assert_eq!(Report::merge(vec![forward.clone(), second]), forward);
}

/// A report of one run of `scenarios` on `debian:latest`, there `release`.
fn on_debian_latest(release: &str, scenarios: Vec<ScenarioResult>) -> Report {
    shard(
        "2025-11-25T12:00:00Z",
        10.0,
        vec![Run {
            accel: None,
            accel_why: None,
            kernel: kernel("debian:latest", release),
            scenarios,
        }],
    )
}

/// One night of `timer-race` (with these bug titles) and `smoke` on debian:latest.
fn night(titles: &[&str], status: Status) -> Report {
    let mut timer = scenario("timer-race", status);
    for title in titles {
        timer
            .findings
            .push(finding("oops", title, Some("race_timer_buggy"), false));
    }
    let mut report = on_debian_latest(
        "6.12.118+deb12-amd64",
        vec![timer, scenario("smoke", Status::Passed)],
    );
    report.collect_bugs();
    report
}

#[test]
fn a_baseline_labels_bugs_new_still_and_fixed_and_lists_status_changes() {
    let yesterday = night(&["old bug", "gone bug"], Status::Passed);
    let mut today = night(&["old bug", "fresh bug"], Status::Failed);
    today.compare_with(&yesterday);
    let labels: Vec<_> = today
        .bugs
        .iter()
        .map(|b| (b.title.as_str(), b.baseline))
        .collect();
    assert_eq!(
        labels,
        [
            ("old bug", Some(BugLabel::Still)),
            ("fresh bug", Some(BugLabel::New))
        ]
    );
    let comparison = today.comparison.clone().unwrap();
    assert_eq!(bug_titles(&comparison.fixed), ["gone bug"]);
    assert_eq!(comparison.changes.len(), 1);
    assert!(comparison.changes[0].is_new_failure());
    assert!(today.has_new_failures());

    // The same night again: nothing new, nothing fixed, no change, though it still fails.
    let mut again = night(&["old bug", "fresh bug"], Status::Failed);
    again.compare_with(&today);
    assert!(!again.has_new_failures());
    let comparison = again.comparison.unwrap();
    assert!(comparison.fixed.is_empty() && comparison.changes.is_empty());
}
