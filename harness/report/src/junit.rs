//! JUnit XML: one testsuite per kernel, one testcase per scenario.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};

use crate::text::xml_string;
use crate::{FindingEntry, Report, ScenarioResult, Status};

/// How much of the end of a console log goes into a test case's system-out: enough for the
/// last crash report, small enough that CI front-ends stay responsive.
pub(crate) const CONSOLE_TAIL_BYTES: u64 = 16 * 1024;

/// The JUnit document for `report`; console logs are resolved against `out_dir`.
pub(crate) fn render(report: &Report, out_dir: &Path) -> io::Result<String> {
    let mut junit = quick_junit::Report::new("modharness");
    let started_at = chrono::DateTime::parse_from_rfc3339(&report.started_at).ok();
    if let Some(started_at) = started_at {
        junit.set_timestamp(started_at);
    }
    junit.set_time(seconds(report.duration_s));
    for run in &report.runs {
        let mut suite = TestSuite::new(xml_string(&format!(
            "{} ({})",
            run.kernel.spec, run.kernel.release
        )));
        if let Some(started_at) = started_at {
            suite.set_timestamp(started_at);
        }
        // What a dashboard groups and filters by; none of it is text from the guest.
        let accel = run.accel.as_deref().unwrap_or(&report.host.accel);
        for (name, value) in [
            ("kernel.spec", run.kernel.spec.as_str()),
            ("kernel.release", run.kernel.release.as_str()),
            (
                "kernel.flavour",
                flavour(&run.kernel.spec, &run.kernel.release),
            ),
            ("accel", accel),
            ("qemu.version", report.host.qemu.as_str()),
        ] {
            suite.add_property(Property::new(name, xml_string(value)));
        }
        suite.set_time(seconds(
            run.scenarios
                .iter()
                .map(|scenario| scenario.duration_s)
                .sum(),
        ));
        for scenario in &run.scenarios {
            suite.add_test_case(test_case(scenario, &run.kernel.release, out_dir)?);
        }
        junit.add_test_suite(suite);
    }
    junit.to_string().map_err(io::Error::other)
}

fn test_case(scenario: &ScenarioResult, release: &str, out_dir: &Path) -> io::Result<TestCase> {
    let status = match scenario.status {
        Status::Passed => TestCaseStatus::success(),
        Status::Failed => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            // The first finding's title is what a dashboard lists; every failure is in the body.
            let message = scenario
                .findings
                .iter()
                .find(|f| !f.expected)
                .map(|f| f.title.clone())
                .or_else(|| scenario.failures.first().cloned())
                .unwrap_or_else(|| "scenario failed".to_owned());
            status
                .set_message(xml_string(&message))
                .set_description(xml_string(&format!(
                    "{}\n\n{}",
                    scenario.failures.join("\n"),
                    findings_text(&scenario.findings)
                )));
            status
        }
        Status::Error => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            let error = xml_string(scenario.error.as_deref().unwrap_or("infrastructure error"));
            // The body too: CI front-ends differ in which of the two they show, and an
            // attribute loses the error's line breaks.
            status.set_message(error.clone()).set_description(error);
            status
        }
    };
    let mut case = TestCase::new(xml_string(&scenario.name), status);
    case.set_classname(xml_string(&format!("modharness.{release}")))
        .set_time(seconds(scenario.duration_s));
    if let Some(probe) = &scenario.mass_probe {
        // Numbers only: CI front-ends show properties as they are, and none of these is text
        // from the guest.
        let unreturned: i64 = probe.rounds.iter().map(|r| r.unreturned_bytes).sum();
        for (name, value) in [
            ("mass_probe.modules_tried", probe.modules_tried.to_string()),
            ("mass_probe.loaded", probe.loaded.to_string()),
            ("mass_probe.bound", probe.bound.to_string()),
            ("mass_probe.failed", probe.failed.to_string()),
            ("mass_probe.restarts", probe.restarts.to_string()),
            ("mass_probe.rounds", probe.rounds.len().to_string()),
            ("mass_probe.unreturned_bytes", unreturned.to_string()),
        ] {
            case.properties.push(Property::new(name, value));
        }
    }
    if !scenario.console_log.is_empty() {
        match console_tail(&out_dir.join(&scenario.console_log)) {
            Ok(tail) => {
                case.set_system_out(xml_string(&tail));
            }
            // A scenario that never booted has no console log; that is not a reporting error.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
    }
    Ok(case)
}

/// One line per finding: `kind: title (module m) [expected, panicked, corrupted]`.
fn findings_text(findings: &[FindingEntry]) -> String {
    if findings.is_empty() {
        return "no findings".to_owned();
    }
    let mut text = String::new();
    for finding in findings {
        text.push_str(&finding.kind);
        text.push_str(": ");
        text.push_str(&finding.title);
        if let Some(module) = &finding.module {
            text.push_str(&format!(" (module {module})"));
        }
        let flags: Vec<&str> = [
            (finding.expected, "expected"),
            (finding.panicked, "panicked"),
            (finding.corrupted, "corrupted"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if !flags.is_empty() {
            text.push_str(&format!(" [{}]", flags.join(", ")));
        }
        text.push('\n');
    }
    text
}

/// The last [`CONSOLE_TAIL_BYTES`] of a console log, decoded lossily. When the log is longer,
/// the partial first line is dropped and a note says how much was left out.
pub(crate) fn console_tail(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let skipped = len.saturating_sub(CONSOLE_TAIL_BYTES);
    file.seek(SeekFrom::Start(skipped))?;
    let mut bytes = Vec::with_capacity((len - skipped) as usize);
    file.take(CONSOLE_TAIL_BYTES).read_to_end(&mut bytes)?;
    if skipped == 0 {
        return Ok(String::from_utf8_lossy(&bytes).into_owned());
    }
    let line_start = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    Ok(format!(
        "[… {} earlier bytes of the console log left out …]\n{}",
        skipped + line_start as u64,
        String::from_utf8_lossy(&bytes[line_start..])
    ))
}

/// The flavour of a kernel: Debian's (`6.12.118+deb12-rt-amd64` → `rt-amd64`), else the kind
/// of spec it came from (`debug`, `debug-mini`, `path`, `tree`).
fn flavour<'a>(spec: &'a str, release: &'a str) -> &'a str {
    if !spec.starts_with("debian:") {
        return spec.split(':').next().unwrap_or(spec);
    }
    ["cloud-amd64", "rt-amd64"]
        .into_iter()
        .find(|f| release.ends_with(f))
        .unwrap_or_else(|| release.rsplit('-').next().unwrap_or(release))
}

/// A duration from seconds that came from a file: negative, NaN or huge values become zero
/// rather than a panic.
fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}
