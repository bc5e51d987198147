//! Helpers shared by the end-to-end tests.
#![allow(dead_code)] // each test binary uses its own share of these helpers

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `modharness` binary under test, run from the repository root with a shared kernel cache
/// (the first test to need the kernel fetches it; the cache's lock makes that safe).
pub fn modharness() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modharness"));
    cmd.current_dir(repo())
        .env("MODHARNESS_AGENT", env!("CARGO_BIN_EXE_modharness-agent"))
        .env_remove("MODHARNESS_QEMU");
    if std::env::var_os("MODHARNESS_CACHE").is_none() {
        cmd.env("MODHARNESS_CACHE", repo().join("target/modharness-cache"));
    }
    cmd
}

/// The fake QEMU built from `examples/fake_qemu.rs` (cargo test builds examples).
pub fn fake_qemu() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_modharness"));
    let fake = bin.parent().unwrap().join("examples/fake_qemu");
    assert!(
        fake.is_file(),
        "{} is missing: `cargo test` builds it, a filtered run needs `cargo build --examples`",
        fake.display()
    );
    fake
}

/// A scratch directory removed at the end of the test.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mh-{name}-"))
        .tempdir()
        .unwrap()
}

/// Text of an output, for assertion messages: only shown when a test fails.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// report.json of an output directory.
pub fn report(out_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out_dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// The scenarios of the first run in a report.
pub fn scenarios(report: &serde_json::Value) -> &Vec<serde_json::Value> {
    report["runs"][0]["scenarios"]
        .as_array()
        .expect("scenarios")
}

/// Poll `check` every 50 ms until it holds or `timeout` passes; says whether it held.
pub fn wait_until(timeout: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if check() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    check()
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// `modharness run` of a scenario that boots nothing real (the fake QEMU never reads the kernel
/// or initrd) in `out`, with the fake in `mode`, not yet started; the accelerator is left to the
/// caller.
pub fn fake_run(mode: &str, out: &Path) -> Command {
    let scenario = out.join("fake.yaml");
    std::fs::write(
        &scenario,
        "name: fake\nvm: { timeout: 3s }\nsteps:\n  - sleep: 10ms\n",
    )
    .unwrap();
    // A local "kernel" so nothing is fetched: a file that is not a bzImage is booted as is.
    let kernel = out.join("vmlinux");
    std::fs::write(&kernel, b"not a kernel").unwrap();
    let mut cmd = modharness();
    cmd.arg("run")
        .arg(&scenario)
        .arg("--kernel")
        .arg(format!("path:{}", kernel.display()))
        .arg("--out")
        .arg(out.join("out"))
        .env("MODHARNESS_QEMU", fake_qemu())
        .env("MODHARNESS_CACHE", out.join("cache"))
        .env("FAKE_QEMU_MODE", mode)
        .env("FAKE_QEMU_PIDFILE", out.join("qemu.pid"));
    cmd
}
