//! Symbolization against objects built by the tests: a small C file compiled here (needs only a
//! C compiler), and a real module built against the cached Debian 6.12 headers, symbolizing a
//! console log captured from that module in a QEMU guest (it fails without the cache; the log is
//! `tests/corpus/real-6.12-symtest-warnings.log`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use modharness_triage::{triage, Finding, Symbolizer};

/// Debian 6.12 amd64 headers from a modharness kernel cache (the log was captured on 6.12.117):
/// `$MODHARNESS_CACHE`, the cache the end-to-end tests fill (`target/modharness-cache`, fetched
/// before this crate's tests run), or a developer's `/var/cache/modharness-dev`.
fn headers() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let caches = std::env::var_os("MODHARNESS_CACHE")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            repo.join("target/modharness-cache"),
            "/var/cache/modharness-dev".into(),
        ]);
    caches.into_iter().find_map(|cache| {
        let mut kernels: Vec<PathBuf> = fs::read_dir(cache.join("kernels"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                name.starts_with("debian-6.12.") && name.ends_with("+deb12-amd64")
            })
            .collect();
        kernels.sort();
        let kernel = kernels.pop()?;
        let release = kernel
            .file_name()?
            .to_str()?
            .strip_prefix("debian-")?
            .to_string();
        let headers = kernel.join(format!("root/usr/src/linux-headers-{release}"));
        headers.is_dir().then_some(headers)
    })
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/symbolize")
}

/// A fresh directory for one test.
fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "modharness-symbolize-{}-{label}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(command: &mut Command) -> bool {
    match command.output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => panic!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => false,
    }
}

/// `(function, file name, line)` of each frame; the file without its directory.
fn resolved(finding: &Finding) -> Vec<(&str, Option<&str>, Option<u32>)> {
    finding
        .frames
        .iter()
        .map(|frame| {
            let file = frame
                .file
                .as_deref()
                .map(|f| f.rsplit('/').next().unwrap_or(f));
            (frame.function.as_str(), file, frame.line)
        })
        .collect()
}

/// The frames of module `symtest`, resolved.
fn in_symtest(finding: &Finding) -> Vec<(&str, Option<&str>, Option<u32>)> {
    resolved(finding)
        .into_iter()
        .zip(&finding.frames)
        .filter(|(_, frame)| frame.module.as_deref() == Some("symtest"))
        .map(|(resolved, _)| resolved)
        .collect()
}

/// Each function of `tiny.c` is on one line, so any offset in it has that line.
const TINY_C: &str = "\
/* Each function on one line, so any offset in it has that line. */
int tiny_helper(int v) { return v * 3 + 1; }
int tiny_check(int v) { return tiny_helper(v) + tiny_helper(v + 1); }
__attribute__((section(\".exit.text\"))) int tiny_exit(int v) { return tiny_check(v) - 1; }
void tiny_start(void) { for (;;) tiny_exit(tiny_helper(2)); }
";

/// A WARNING whose RIP is in module `tiny`'s `.text` at offset 4, called from its `.exit.text`
/// (also at section offset 0 in a relocatable object), called from the "kernel".
const TINY_LOG: &str = "\
[    1.000000] ------------[ cut here ]------------
[    1.000001] WARNING: CPU: 0 PID: 1 at tiny.c:2 tiny_helper+0x4/0x20 [tiny]
[    1.000002] Modules linked in: tiny(OE-)
[    1.000003] CPU: 0 UID: 0 PID: 1 Comm: rmmod Tainted: G           OE      6.12.0 #1
[    1.000004] RIP: 0010:tiny_helper+0x4/0x20 [tiny]
[    1.000005] Call Trace:
[    1.000006]  <TASK>
[    1.000007]  ? tiny_check+0x10/0x30 [tiny]
[    1.000008]  tiny_exit+0x9/0x40 [tiny]
[    1.000009]  tiny_start+0x5/0x20
[    1.000010]  missing_from_the_object+0x5/0x20 [tiny]
[    1.000011]  0xffffffffc0a1b040
[    1.000012]  </TASK>
[    1.000013] ---[ end trace 0000000000000000 ]---
";

#[test]
fn frames_resolve_by_section_in_a_relocatable_object_and_by_address_in_a_linked_one() {
    let dir = scratch_dir("tiny");
    let source = dir.join("tiny.c");
    fs::write(&source, TINY_C).unwrap();
    let object = dir.join("tiny.o");
    let linked = dir.join("tiny.elf");
    let compiled = run(Command::new("cc")
        .args(["-g", "-O0", "-c", "-o"])
        .args([&object, &source]))
        && run(Command::new("cc")
            .args([
                "-g",
                "-O0",
                "-nostdlib",
                "-static",
                "-Wl,-e,tiny_start",
                "-o",
            ])
            .args([&linked, &source]));
    // A test that cannot run must not pass: ci/install-deps.sh installs gcc.
    assert!(compiled, "no C compiler (cc) to build the test objects");

    let mut findings = triage(TINY_LOG.as_bytes());
    assert_eq!(findings.len(), 1);
    let finding = &mut findings[0];
    assert_eq!(
        resolved(finding),
        [
            ("tiny_helper", None, None),
            ("tiny_check", None, None),
            ("tiny_exit", None, None),
            ("tiny_start", None, None),
            ("missing_from_the_object", None, None),
        ],
        "triage alone gives the frames, without lines"
    );
    let rip = &finding.frames[0];
    assert_eq!((rip.offset, rip.size), (4, 0x20));
    assert_eq!(rip.module.as_deref(), Some("tiny"));
    assert!(
        rip.reliable && !rip.return_address,
        "the RIP is the instruction that ran"
    );
    let guessed = &finding.frames[1];
    assert!(!guessed.reliable && guessed.return_address);
    assert_eq!(finding.frames[3].module, None);

    let mut symbolizer = Symbolizer::new();
    symbolizer.add_module("tiny", &object);
    symbolizer.set_vmlinux(&linked);
    symbolizer.symbolize(finding);
    assert_eq!(
        resolved(finding),
        [
            ("tiny_helper", Some("tiny.c"), Some(2)),
            ("tiny_check", Some("tiny.c"), Some(3)),
            // At offset 0 of .exit.text, like tiny_helper in .text: the section tells them apart.
            ("tiny_exit", Some("tiny.c"), Some(4)),
            ("tiny_start", Some("tiny.c"), Some(5)),
            ("missing_from_the_object", None, None),
        ]
    );
    assert_eq!(
        finding.frames[1].to_string(),
        format!("? tiny_check+0x10/0x30 [tiny] {}:3", source.display())
    );
    assert_eq!(
        finding.frames[4].to_string(),
        "missing_from_the_object+0x5/0x20 [tiny]"
    );
    let problems = symbolizer.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("no symbol missing_from_the_object"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn objects_that_cannot_be_read_leave_frames_alone_and_say_why() {
    let dir = scratch_dir("unreadable");
    let not_elf = dir.join("not-elf.ko");
    fs::write(&not_elf, "just text, long enough to have a header").unwrap();
    let mut findings = triage(TINY_LOG.as_bytes());
    let before = findings[0].clone();

    let mut symbolizer = Symbolizer::new();
    symbolizer.add_module("tiny", &not_elf);
    symbolizer.set_vmlinux(&dir.join("missing-vmlinux"));
    symbolizer.symbolize(&mut findings[0]);
    assert_eq!(findings[0], before);
    let problems = symbolizer.problems();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].ends_with("not-elf.ko: not an ELF object"));
    assert!(problems[1].contains("missing-vmlinux: cannot read"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_object_without_debug_info_is_named_in_the_problems() {
    let dir = scratch_dir("no-debug");
    let source = dir.join("tiny.c");
    fs::write(&source, TINY_C).unwrap();
    let object = dir.join("tiny.o");
    if !run(Command::new("cc")
        .args(["-g0", "-O0", "-c", "-o"])
        .args([&object, &source]))
    {
        panic!("no C compiler (cc) to build the test object");
    }
    let mut findings = triage(TINY_LOG.as_bytes());
    let mut symbolizer = Symbolizer::new();
    symbolizer.add_module("tiny", &object);
    symbolizer.symbolize(&mut findings[0]);
    assert!(findings[0].frames.iter().all(|frame| frame.line.is_none()));
    let problems = symbolizer.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.ends_with("tiny.o: no line information (built without CONFIG_DEBUG_INFO?)")),
        "{problems:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn findings_saved_before_frames_existed_still_parse() {
    let json = r#"{"kind": "warning", "title": "WARNING in foo_exit", "alt_titles": [],
        "module": "foo", "corrupted": false, "panicked": false, "time_s": 1.5,
        "guilty_frame": "foo_exit", "report": "WARNING: ..."}"#;
    let finding: Finding = serde_json::from_str(json).unwrap();
    assert!(finding.frames.is_empty());
}

/// Builds `tests/symbolize/symtest` against the cached 6.12 headers, as modharness builds
/// modules, and symbolizes the console log captured when the harness loaded and unloaded it:
/// a WARN_ON in `symtest_check` (called by the init) and a WARN in the exit.
#[test]
fn a_captured_6_12_log_symbolizes_against_the_module_built_from_its_source() {
    // `cargo test --workspace` runs the cli's end-to-end tests, which fetch the kernel, first.
    let Some(headers) = headers() else {
        panic!("no cached Debian 6.12 headers: run the end-to-end tests first (cargo test -p modharness)");
    };
    let dir = scratch_dir("symtest");
    for file in ["symtest.c", "Kbuild"] {
        fs::copy(fixtures().join("symtest").join(file), dir.join(file)).unwrap();
    }
    assert!(run(Command::new("make")
        .arg("-C")
        .arg(&headers)
        .arg(format!("M={}", dir.display()))
        .args(["CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"])));
    let ko = dir.join("symtest.ko");

    let log = fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/real-6.12-symtest-warnings.log"),
    )
    .unwrap();
    let mut findings = triage(&log);
    let titles: Vec<&str> = findings.iter().map(|f| f.title.as_str()).collect();
    assert_eq!(
        titles,
        ["WARNING in symtest_check", "WARNING in symtest_exit"]
    );

    let mut symbolizer = Symbolizer::new();
    symbolizer.add_module("symtest", &ko);
    for finding in &mut findings {
        symbolizer.symbolize(finding);
    }
    assert_eq!(symbolizer.problems(), Vec::<String>::new());
    // symtest.c: line 9 `WARN_ON(value != 0);`, 14 `symtest_check(symtest_value);`,
    // 20 `WARN(symtest_value, …);`.
    assert_eq!(
        in_symtest(&findings[0]),
        [
            ("symtest_check", Some("symtest.c"), Some(9)),
            ("symtest_init", Some("symtest.c"), Some(14)),
        ]
    );
    assert_eq!(
        in_symtest(&findings[1]),
        [("symtest_exit", Some("symtest.c"), Some(20))]
    );
    let _ = fs::remove_dir_all(&dir);
}
