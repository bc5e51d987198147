//! report.html as a person sees it: Debian's headless Chromium renders a matrix report with a
//! baseline, and a screenshot is taken. `ci/install-deps.sh` installs `chromium`.

use std::path::Path;
use std::process::Command;

use modharness_report::{FindingEntry, KernelInfo, Report, Run, ScenarioResult, Status, StepStats};

fn scenario(name: &str, status: Status, finding: Option<&str>) -> ScenarioResult {
    ScenarioResult {
        name: name.to_owned(),
        file: format!("scenarios/{name}.yaml"),
        status,
        duration_s: 3.0,
        findings: finding
            .map(|title| FindingEntry {
                kind: "oops".into(),
                title: title.into(),
                module: Some("race_timer_buggy".into()),
                expected: false,
                time_s: Some(2.5),
                panicked: true,
                corrupted: false,
                frames: vec!["<script>alert(1)</script>".into()],
            })
            .into_iter()
            .collect(),
        memory: None,
        console_log: format!("logs/k/{name}.console.log"),
        error: None,
        failures: Vec::new(),
        steps: StepStats {
            total: 2,
            failed: 0,
            load_unload_per_s: None,
        },
        irq: None,
        notes: Vec::new(),
        accel: Some("tcg".into()),
        mass_probe: None,
    }
}

fn night(timer: Status, title: Option<&str>) -> Report {
    let mut report = Report::new(std::time::SystemTime::UNIX_EPOCH, Default::default());
    for spec in ["debian:latest", "debug:latest"] {
        report.runs.push(Run {
            kernel: KernelInfo {
                spec: spec.into(),
                release: "6.12.118".into(),
            },
            accel: Some("tcg".into()),
            accel_why: None,
            scenarios: vec![
                scenario("smoke", Status::Passed, None),
                scenario("timer-race", timer, title),
            ],
        });
    }
    report.collect_bugs();
    report
}

#[test]
fn chromium_renders_the_matrix_grid_and_what_is_new_and_takes_a_screenshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut today = night(
        Status::Failed,
        Some("BUG: unable to handle page fault in __run_timers"),
    );
    today.compare_with(&night(Status::Passed, None));
    today.write_html(dir.path()).unwrap();
    let page = format!("file://{}", dir.path().join("report.html").display());
    let chromium = |extra: &[&str]| {
        let profile = dir.path().join("profile");
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&page)
            .output()
            .expect("chromium runs (ci/install-deps.sh installs Debian's chromium)")
    };
    let dom = chromium(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    for shown in [
        "Kernels × scenarios",
        "NEW FAILURE",
        "new bug",
        "debug:latest",
    ] {
        assert!(
            dom_text.contains(shown),
            "{shown} not rendered:\n{dom_text}"
        );
    }
    // Guest text stays text: the page runs no script at all.
    assert!(!dom_text.contains("<script>"), "{dom_text}");
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(!stderr.contains("Uncaught"), "script error: {stderr}");

    let shot = dir.path().join("report.png");
    let out = chromium(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    let keep = std::env::var_os("MODHARNESS_KEEP_SCREENSHOT");
    if let Some(target) = keep {
        std::fs::copy(&shot, Path::new(&target)).unwrap();
    }
}
