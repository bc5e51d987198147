//! What the harness makes of a QEMU that misbehaves: a fake QEMU (examples/fake_qemu.rs) hangs,
//! dies, or prints bytes no console should. These paths cannot be provoked reliably with the
//! real QEMU; the main paths are covered by tests/real_kernel.rs with the real one.

mod common;

use common::*;

/// `modharness run` of the fake scenario under TCG, not yet started.
fn command_with_fake(mode: &str, out: &std::path::Path) -> std::process::Command {
    let mut cmd = fake_run(mode, out);
    cmd.arg("--accel=tcg");
    cmd
}

fn run_with_fake(mode: &str, out: &std::path::Path) -> std::process::Output {
    command_with_fake(mode, out).output().unwrap()
}

#[test]
fn sigterm_leaves_no_qemu_behind_and_still_writes_the_report() {
    let dir = scratch("sigterm");
    let child = command_with_fake("hang", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pidfile = dir.path().join("qemu.pid");
    assert!(wait_until(std::time::Duration::from_secs(20), || pidfile.exists()));
    let qemu_pid: i32 = wait_then_read(&pidfile);
    assert!(process_alive(qemu_pid));
    // SAFETY: plain kill(2) on the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "an interrupted run is not a pass: {}",
        describe(&out)
    );
    assert!(
        wait_until(std::time::Duration::from_secs(5), || !process_alive(
            qemu_pid
        )),
        "QEMU {qemu_pid} outlived the harness"
    );
    let report = report(&dir.path().join("out"));
    assert_eq!(scenarios(&report)[0]["error"], "interrupted", "{report}");
}

fn wait_then_read(path: &std::path::Path) -> i32 {
    let mut text = String::new();
    wait_until(std::time::Duration::from_secs(5), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.trim().parse::<i32>().is_ok()
    });
    text.trim().parse().expect("a pid")
}

#[test]
fn a_guest_that_goes_silent_is_reported_as_a_hang() {
    let dir = scratch("hang");
    let out = run_with_fake("hang", dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    let findings = scenarios(&report)[0]["findings"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "hang");
}

#[test]
fn qemu_dying_mid_run_is_reported_as_a_vm_crash_with_its_stderr() {
    let dir = scratch("die");
    let out = run_with_fake("die", dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    let finding = &scenarios(&report)[0]["findings"][0];
    assert_eq!(finding["kind"], "vm_crash", "{report}");
    assert!(
        finding["title"]
            .as_str()
            .unwrap()
            .contains("fake fatal error"),
        "{finding}"
    );
}

#[test]
fn hostile_console_bytes_leave_every_report_file_valid() {
    let dir = scratch("garbage");
    let out = run_with_fake("garbage", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let out_dir = dir.path().join("out");
    let report = report(&out_dir);
    assert_eq!(scenarios(&report)[0]["status"], "passed");
    let junit = std::fs::read_to_string(out_dir.join("junit.xml")).unwrap();
    roxmltree::Document::parse(&junit).expect("junit.xml parses as XML");
    assert!(
        junit.contains("Linux version 6.1.0-fake"),
        "console excerpt kept"
    );
    let log = std::fs::read(out_dir.join(scenarios(&report)[0]["console_log"].as_str().unwrap()))
        .unwrap();
    assert!(
        log.windows(2).any(|w| w == b"\xff\xfe"),
        "the log keeps the raw bytes"
    );
}

#[test]
fn a_qemu_that_cannot_start_is_an_infrastructure_error() {
    let dir = scratch("noqemu");
    let scenario = dir.path().join("fake.yaml");
    std::fs::write(&scenario, "name: fake\nsteps:\n  - sleep: 10ms\n").unwrap();
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"x").unwrap();
    let out = modharness()
        .arg("run")
        .arg(&scenario)
        .arg("--kernel")
        .arg(format!("path:{}", kernel.display()))
        .arg("--accel=tcg")
        .arg("--out")
        .arg(dir.path().join("out"))
        .env("MODHARNESS_QEMU", dir.path().join("no-such-qemu"))
        .env("MODHARNESS_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    assert_eq!(scenarios(&report)[0]["status"], "error");
    assert!(scenarios(&report)[0]["error"]
        .as_str()
        .unwrap()
        .contains("no-such-qemu"));
}

#[test]
fn a_guest_that_crashes_once_before_any_step_is_booted_again_and_passes() {
    let dir = scratch("bootcrash-once");
    let out = run_with_fake("boot-crash-once", dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    let scenario = &scenarios(&report)[0];
    assert_eq!(scenario["status"], "passed", "{scenario}");
    let note = scenario["notes"][0].as_str().unwrap();
    assert!(note.contains("int3 in sched_clock_tick"), "{note}");
    let log = dir
        .path()
        .join("out")
        .join(scenario["console_log"].as_str().unwrap());
    assert!(
        log.with_extension("boot1.log").is_file(),
        "the first boot's console is kept"
    );
}

#[test]
fn a_guest_that_crashes_at_every_boot_is_an_infrastructure_error() {
    let dir = scratch("bootcrash");
    let out = run_with_fake("boot-crash", dir.path());
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let report = report(&dir.path().join("out"));
    let scenario = &scenarios(&report)[0];
    assert_eq!(scenario["status"], "error", "{scenario}");
    assert!(
        scenario["error"]
            .as_str()
            .unwrap()
            .contains("failed twice while booting"),
        "{scenario}"
    );
    assert_eq!(
        scenario["findings"][0]["kind"], "oops",
        "the kernel's own words are kept"
    );
}

#[test]
fn a_module_that_kills_a_mass_probe_vm_is_blamed_and_the_probe_goes_on_after_it() {
    let dir = scratch("probe-crash");
    // A modules tree for a kernel whose release the fake image does not say (`unknown`).
    let tree = dir.path().join("tree/lib/modules/unknown");
    std::fs::create_dir_all(tree.join("kernel")).unwrap();
    for module in ["a", "crasher", "c"] {
        std::fs::write(tree.join(format!("kernel/{module}.ko")), b"\x7fELF").unwrap();
    }
    std::fs::write(
        tree.join("modules.dep"),
        "kernel/a.ko:\nkernel/crasher.ko:\nkernel/c.ko:\n",
    )
    .unwrap();
    let scenario = dir.path().join("probe.yaml");
    std::fs::write(
        &scenario,
        "name: probe\nvm: { timeout: 20s }\nsteps:\n  - mass_probe: { modules: all }\n",
    )
    .unwrap();
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let out = modharness()
        .arg("run")
        .arg(&scenario)
        .arg("--kernel")
        .arg(format!(
            "path:{},modules={}",
            kernel.display(),
            dir.path().join("tree").display()
        ))
        .args(["--accel=tcg", "--out"])
        .arg(dir.path().join("out"))
        .env("MODHARNESS_QEMU", fake_qemu())
        .env("MODHARNESS_CACHE", dir.path().join("cache"))
        .env("FAKE_QEMU_MODE", "probe-crash")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unexpected oops: {}",
        describe(&out)
    );
    let report = report(&dir.path().join("out"));
    let scenario = &scenarios(&report)[0];
    let finding = &scenario["findings"][0];
    assert_eq!(finding["kind"], "oops", "{scenario}");
    assert_eq!(finding["module"], "crasher", "{scenario}");
    let probe = &scenario["mass_probe"];
    assert_eq!(probe["restarts"], 1, "{probe}");
    assert_eq!(probe["modules_tried"], 3, "{probe}");
    let crasher = &probe["modules"][1];
    assert_eq!(crasher["name"], "crasher");
    assert!(
        crasher["finding"]
            .as_str()
            .unwrap()
            .contains("NULL pointer"),
        "{crasher}"
    );
    let round = &probe["rounds"][0];
    assert_eq!(
        (&round["growth"]["SUnreclaim"], &round["growth_modules"]),
        (&serde_json::json!(8192), &serde_json::json!(2)),
        "each VM's own 4 KiB, over a and c (the crasher's VM died before its next sample): {round}"
    );
    let note = scenario["notes"][0].as_str().unwrap();
    assert!(note.contains("VM 1 died while probing crasher"), "{note}");
    let log_dir = dir
        .path()
        .join("out")
        .join(scenario["console_log"].as_str().unwrap());
    let second = std::fs::read_to_string(&log_dir).unwrap();
    assert!(
        second.contains("fake probe resumes at 2"),
        "the second VM went on after the crasher: {second}"
    );
    assert!(
        log_dir.with_extension("vm1.log").is_file(),
        "the first VM's console is kept"
    );
}
