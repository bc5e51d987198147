//! Behaviour of the incremental reader beyond what the corpus fixes: hostile input, when
//! findings come out, and what `in_report` says meanwhile.

use std::fs;
use std::path::Path;

use modharness_triage::{triage, Kind, Triage};

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random bytes salted with pieces of crash reports, so the parser's deeper states are reached.
fn hostile_log(seed: u64, len: usize) -> Vec<u8> {
    const PIECES: &[&[u8]] = &[
        b"\n[    1.000000] BUG: unable to handle page fault for address: ffffffffc0a1b040\n",
        b"\nBUG: kernel NULL pointer dereference, address: 0000000000000000\n",
        b"\nWARNING: CPU: 0 PID: 1 at x.c:1 foo+0x1/0x2 [m]\n",
        b"\n------------[ cut here ]------------\n",
        b"\nCall Trace:\n",
        b"\n <IRQ>\n",
        b"\n ? foo+0x1/0x2 [m]\n",
        b"\n bar+0x10/0x20\n",
        b"\n 0xffffffffc0a1b040\n",
        b"\nRIP: 0010:0xffffffffc0a1b040\n",
        b"\nRIP: 0010:",
        b"\nModules linked in: a(OE+) b(-) [last unloaded: c(OE)]\n",
        b"\n---[ end trace 0000000000000000 ]---\n",
        b"\nKernel panic - not syncing: Fatal exception\n",
        b"\n---[ end Kernel panic - not syncing: x ]---\n",
        b"\n==================================================================\n",
        b"\nBUG: KASAN: slab-use-after-free in foo+0x1/0x2 [m]\n",
        b"\nRead of size 8 at addr ffff888004a3c118 by task swapper/0/0\n",
        b"\nINFO: task rmmod:97 blocked for more than 10 seconds.\n",
        b"\nunreferenced object 0xffff888004b1c000 (size 64):\n",
        b"\nOops: 0010 [#1] PREEMPT SMP NOPTI\n",
        b"\nCPU: 1 PID: 0 Comm: swapper/1 Tainted: G      D    OE      6.1.0 #1\n",
        b"[    2.5][  T123] ",
        b"[ C1] ",
        b"\xff\xfe\xc3\x28\x00\r\x1b[0m\t",
        b"\n",
    ];
    let mut rng = XorShift(seed | 1);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        if rng.below(3) == 0 {
            out.extend_from_slice(PIECES[rng.below(PIECES.len())]);
        } else {
            for _ in 0..rng.below(40) {
                out.push(rng.next() as u8);
            }
        }
    }
    out
}

fn feed_in_chunks(bytes: &[u8], chunk_size: usize) -> Vec<modharness_triage::Finding> {
    let mut reader = Triage::new();
    let mut findings = Vec::new();
    for chunk in bytes.chunks(chunk_size) {
        findings.extend(reader.feed(chunk));
    }
    findings.extend(reader.finish());
    findings
}

#[test]
fn random_bytes_and_invalid_utf8_never_panic_and_chunking_does_not_matter() {
    for seed in 1..=12 {
        let log = hostile_log(seed, 64 * 1024);
        let whole = triage(&log);
        assert_eq!(feed_in_chunks(&log, 1), whole, "seed {seed}, 1-byte chunks");
        assert_eq!(
            feed_in_chunks(&log, 97),
            whole,
            "seed {seed}, 97-byte chunks"
        );
        for finding in &whole {
            assert!(!finding.title.is_empty());
        }
    }
}

#[test]
fn pure_noise_and_a_newline_free_flood_give_nothing() {
    let mut rng = XorShift(42);
    let noise: Vec<u8> = (0..256 * 1024).map(|_| rng.next() as u8).collect();
    assert!(triage(&noise).is_empty());
    assert!(triage(&vec![b'x'; 1 << 20]).is_empty());
    assert!(triage(b"").is_empty());
}

fn corpus(name: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(name),
    )
    .expect("corpus file")
}

#[test]
fn corpus_logs_cut_anywhere_never_panic() {
    let log = corpus("real-6.12-irq-msi.log");
    for cut in (0..log.len()).step_by(97) {
        let findings = triage(&log[..cut]);
        assert!(findings.len() <= 3, "cut at {cut}: {findings:?}");
    }
}

#[test]
fn a_panicking_oops_comes_out_when_the_panic_ends_not_at_finish() {
    let log = corpus("timer-race-run-timers-6.1.log");
    let text = String::from_utf8(log).expect("utf-8 fixture");
    let mut reader = Triage::new();
    let mut emitted_at = None;
    for (number, line) in text.lines().enumerate() {
        let findings = reader.feed(format!("{line}\n").as_bytes());
        if line.contains("BUG: unable to handle page fault") {
            assert!(reader.in_report(), "a report has started");
        }
        if !findings.is_empty() {
            assert_eq!(findings.len(), 1);
            assert!(findings[0].panicked);
            emitted_at = Some(number);
        }
    }
    let last_line = text.lines().count() - 1;
    assert_eq!(
        emitted_at,
        Some(last_line),
        "emitted with the end-of-panic line"
    );
    assert!(!reader.in_report());
    assert!(reader.finish().is_empty());
}

#[test]
fn a_warning_waits_for_a_possible_panic_then_comes_out_on_ordinary_lines() {
    let warning = concat!(
        "[    2.0] ------------[ cut here ]------------\n",
        "[    2.0] WARNING: CPU: 0 PID: 7 at drivers/foo.c:9 foo_exit+0x1d/0x30 [foo]\n",
        "[    2.0] Modules linked in: foo(OE-)\n",
        "[    2.0] RIP: 0010:foo_exit+0x1d/0x30 [foo]\n",
        "[    2.0] Call Trace:\n",
        "[    2.0]  <TASK>\n",
        "[    2.0]  __do_sys_delete_module+0x1d5/0x320\n",
        "[    2.0]  </TASK>\n",
        "[    2.0] ---[ end trace 0000000000000000 ]---\n",
    );
    let mut reader = Triage::new();
    assert!(reader
        .feed(&warning.as_bytes()[..warning.len() - 40])
        .is_empty());
    assert!(reader.in_report(), "the report is being printed");
    assert!(
        reader
            .feed(&warning.as_bytes()[warning.len() - 40..])
            .is_empty(),
        "a panic may still follow"
    );
    assert!(!reader.in_report(), "the report has ended");
    let mut findings = Vec::new();
    for i in 0..40 {
        findings.extend(reader.feed(format!("[    3.{i}] foo: ordinary message {i}\n").as_bytes()));
    }
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].title, "WARNING in foo_exit");
    assert_eq!(findings[0].module.as_deref(), Some("foo"));
    assert!(!findings[0].panicked);
    assert!(reader.finish().is_empty());
}

#[test]
fn settle_gives_out_an_ended_report_on_a_quiet_console() {
    let log = corpus("warning-in-exit-with-look-alikes-6.1.log");
    let text = String::from_utf8(log).expect("utf-8 fixture");
    let end = text.find("---[ end trace").expect("end marker");
    let through_end = &text[..end + text[end..].find('\n').expect("newline") + 1];
    let mut reader = Triage::new();
    assert!(reader.feed(through_end.as_bytes()).is_empty());
    let settled = reader.settle();
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].title, "WARNING in mh_warn_exit");
    assert!(reader.settle().is_empty());
    assert!(reader.finish().is_empty());
}

#[test]
fn a_fatal_exception_panic_with_its_oops_lost_is_a_corrupted_panic() {
    let findings = triage(b"[    9.1] Kernel panic - not syncing: Fatal exception in interrupt\n");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].kind, Kind::Panic);
    assert_eq!(
        findings[0].title,
        "kernel panic: Fatal exception in interrupt"
    );
    assert!(findings[0].corrupted);
    assert!(findings[0].panicked);
}

#[test]
fn a_line_split_in_the_middle_of_a_timestamp_is_read_whole() {
    let log = b"[    1.82] BUG: kernel NULL pointer dereference, address: 0000000000000008\n[    1.83] RIP: 0010:foo_read+0x2a/0x60 [foo]\n[    1.84] ---[ end trace 0000000000000000 ]---\n";
    let mut reader = Triage::new();
    let mut findings = reader.feed(&log[..53]);
    findings.extend(reader.feed(&log[53..57]));
    findings.extend(reader.feed(&log[57..]));
    findings.extend(reader.finish());
    assert_eq!(findings.len(), 1);
    assert_eq!(
        findings[0].title,
        "BUG: kernel NULL pointer dereference in foo_read"
    );
    assert_eq!(findings[0].time_s, Some(1.82));
}

#[test]
fn report_text_is_the_reports_lines_with_timestamps() {
    let findings = triage(&corpus("warning-in-exit-with-look-alikes-6.1.log"));
    let report = &findings[0].report;
    assert!(report.starts_with("[    2.004410] ------------[ cut here ]------------\n[    2.004901] mh_warn: device still busy at exit\n"));
    assert!(report.ends_with("[    2.019920] ---[ end trace 0000000000000000 ]---"));
    assert!(!report.contains("Disabling lock debugging"));
}

#[test]
fn an_oops_storm_after_a_first_oops_is_one_finding() {
    let mut log = String::new();
    for i in 0..3000 {
        let taint = if i == 0 {
            "G           OE"
        } else {
            "G      D    OE"
        };
        log.push_str(&format!(
            concat!(
                "[   10.{i:06}] BUG: unable to handle page fault for address: ffffffffc0a1d040\n",
                "[   10.{i:06}] Oops: 0000 [#{n}] PREEMPT SMP NOPTI\n",
                "[   10.{i:06}] CPU: 1 PID: 0 Comm: swapper/1 Tainted: {taint}      6.1.0-54-amd64 #1  Debian 6.1.0-54\n",
                "[   10.{i:06}] RIP: 0010:__run_timers+0x1b3/0x2e0\n",
                "[   10.{i:06}] Call Trace:\n",
                "[   10.{i:06}]  run_timer_softirq+0x2f/0x50\n",
                "[   10.{i:06}] Modules linked in: [last unloaded: race_timer_buggy(OE)]\n",
                "[   10.{i:06}] ---[ end trace 0000000000000000 ]---\n",
            ),
            i = i,
            n = i + 1,
            taint = taint
        ));
    }
    let findings = triage(log.as_bytes());
    assert_eq!(
        findings.len(),
        1,
        "{:?}",
        findings.iter().map(|f| &f.title).collect::<Vec<_>>()
    );
    assert_eq!(
        findings[0].title,
        "BUG: unable to handle page fault in __run_timers"
    );
    assert_eq!(findings[0].module.as_deref(), Some("race_timer_buggy"));
}

#[test]
fn a_finding_lists_at_most_a_hundred_frames_of_a_runaway_stack() {
    let mut log = String::from(concat!(
        "[    2.0] BUG: soft lockup - CPU#0 stuck for 22s! [insmod:99]\n",
        "[    2.0] Modules linked in: foo(OE+)\n",
        "[    2.0] RIP: 0010:foo_spin+0x4/0x10 [foo]\n",
        "[    2.0] Call Trace:\n",
    ));
    for depth in 0..5000 {
        log.push_str(&format!(
            "[    2.0]  foo_recurse+0x{depth:x}/0x2000 [foo]\n"
        ));
    }
    let findings = triage(log.as_bytes());
    assert_eq!(findings.len(), 1);
    let frames = &findings[0].frames;
    assert_eq!(frames.len(), 100);
    assert_eq!(frames[0].function, "foo_spin");
    assert_eq!(frames[99].offset, 98, "the innermost frames are kept");
}

#[test]
fn every_kind_is_listed_once() {
    let names: std::collections::BTreeSet<&str> = modharness_triage::Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names.len(), modharness_triage::Kind::ALL.len());
    for kind in modharness_triage::Kind::ALL {
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
        assert_eq!(
            serde_json::from_str::<modharness_triage::Kind>(&json).unwrap(),
            kind
        );
    }
}
