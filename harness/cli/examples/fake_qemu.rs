//! A stand-in for `qemu-system-x86_64`, for the fault-path tests only: it connects to the console
//! and control sockets and serves QMP like QEMU does, then misbehaves as `FAKE_QEMU_MODE` says:
//!
//! - `hang`: prints a boot line, then nothing, for ever;
//! - `die`: prints a boot line and the agent's Ready, then exits with status 1;
//! - `garbage`: prints invalid UTF-8 and control bytes on the console, then finishes the plan;
//! - `boot-crash`: an oops and a panic on the console before the agent is up, then it exits as
//!   QEMU does when the guest resets;
//! - `boot-crash-once`: `boot-crash` the first time (a marker beside the pid file remembers),
//!   a clean plan after that;
//! - `silent`: prints a boot line, and the agent never comes up;
//! - `kvm-silent`, `kvm-stall`, `kvm-abort`: under `-accel kvm`, nothing at all / a boot line
//!   and then nothing / QEMU's abort at vCPU setup, as hosts with a `/dev/kvm` that does not
//!   work do; `clean` under TCG;
//! - `kvm-probe-only`: under KVM the first boot (the accelerator probe) is up at once and every
//!   later one stalls; under TCG the agent comes up after a second, then `clean`.
//!
//! - `probe-crash`: a mass probe over modules `a`, `crasher`, `c`: the first VM oopses and
//!   panics while `crasher` loads; a VM whose plan resumes (read from the initrd) probes what
//!   is left, and says on the console which index it resumed at. Each VM samples the round's
//!   memory before each module and at the end: SUnreclaim grows 4 KiB per module, from a base
//!   of its own.
//!
//! With `FAKE_QEMU_PIDFILE` set, it writes its pid there first. With `FAKE_QEMU_LOG` set, it
//! appends the accelerator of each start there (`kvm` or `tcg`), one line per start.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

fn option_path(args: &[String], id: &str) -> String {
    args.iter()
        .find_map(|a| {
            a.strip_prefix(&format!("socket,id={id},path="))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no chardev {id} in {args:?}"))
}

fn serve_qmp(listener: UnixListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let mut out = stream.try_clone().expect("clone");
            let _ = writeln!(
                out,
                r#"{{"QMP": {{"version": {{"qemu": {{"micro": 0, "minor": 2, "major": 7}}, "package": "fake"}}, "capabilities": []}}}}"#
            );
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let id = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .unwrap_or(serde_json::Value::Null);
                let _ = writeln!(out, "{}", serde_json::json!({"return": {}, "id": id}));
                if line.contains("\"quit\"") {
                    std::process::exit(0);
                }
            }
        });
    }
}

/// The plan inside the `-initrd` newc archive, if there is one.
fn plan_from_initrd(args: &[String]) -> Option<serde_json::Value> {
    let path = args.windows(2).find(|w| w[0] == "-initrd")?[1].clone();
    let bytes = std::fs::read(path).ok()?;
    let mut at = 0;
    while at + 110 <= bytes.len() {
        let field = |i: usize| {
            let text = std::str::from_utf8(&bytes[at + 6 + i * 8..at + 14 + i * 8]).ok()?;
            usize::from_str_radix(text, 16).ok()
        };
        let (size, name_len) = (field(6)?, field(11)?);
        let name = &bytes[at + 110..at + 110 + name_len - 1];
        let data = (at + 110 + name_len + 3) & !3;
        if name == b"modharness/plan.json" {
            return serde_json::from_slice(&bytes[data..data + size]).ok();
        }
        at = (data + size + 3) & !3;
    }
    None
}

/// `probe-crash`: the probe's events, as the agent would send them.
fn fake_probe(console: &mut UnixStream, control: &mut UnixStream, args: &[String]) {
    let resume = plan_from_initrd(args)
        .and_then(|plan| plan["resume"]["index"].as_u64())
        .unwrap_or(0) as usize;
    let send = |control: &mut UnixStream, line: serde_json::Value| {
        writeln!(control, "{line}").unwrap();
    };
    send(
        control,
        serde_json::json!({"event": "ready", "uptime_s": 1.0}),
    );
    send(
        control,
        serde_json::json!({"event": "probe_round", "round": 0, "total": 3}),
    );
    writeln!(console, "[    1.100000] fake probe resumes at {resume}\r").unwrap();
    let memory = |control: &mut UnixStream, done: usize| {
        let sunreclaim = 1_000_000 * (resume + 1) + 4096 * done;
        send(
            control,
            serde_json::json!({"event": "probe_memory", "round": 0, "done": done,
            "meminfo": {"SUnreclaim": sunreclaim}}),
        );
    };
    for (index, module) in ["a", "crasher", "c"].into_iter().enumerate().skip(resume) {
        memory(control, index);
        send(
            control,
            serde_json::json!({"event": "probe_start", "round": 0, "index": index, "module": module}),
        );
        if module == "crasher" {
            let oops = "[    2.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000\r\n\
                        [    2.000100] RIP: 0010:crasher_init+0x5/0x10 [crasher]\r\n\
                        [    2.000200] Call Trace:\r\n\
                        [    2.000300]  <TASK>\r\n\
                        [    2.000400]  do_one_initcall+0x40/0x200\r\n\
                        [    2.000500]  </TASK>\r\n\
                        [    2.000600] ---[ end trace 0000000000000000 ]---\r\n\
                        [    2.000700] Kernel panic - not syncing: Fatal exception\r\n";
            console.write_all(oops.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            std::process::exit(0);
        }
        send(
            control,
            serde_json::json!({"event": "probe_module", "round": 0, "index": index,
            "module": module, "load_ms": 1.0, "unload_ms": 2.0, "unreturned_bytes": 0}),
        );
    }
    memory(control, 3);
    send(control, serde_json::json!({"event": "done", "ok": true}));
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Append this start's accelerator to `FAKE_QEMU_LOG`; how many KVM starts it held before.
fn record_start(kvm: bool) -> usize {
    let Some(log) = std::env::var_os("FAKE_QEMU_LOG") else {
        return 0;
    };
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .expect("FAKE_QEMU_LOG");
    writeln!(file, "{}", if kvm { "kvm" } else { "tcg" }).unwrap();
    before.lines().filter(|l| *l == "kvm").count()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--version") {
        println!("QEMU emulator version 7.2.0 (fake)");
        return;
    }
    let qmp_path = args
        .iter()
        .find_map(|a| a.strip_prefix("unix:").and_then(|r| r.split(',').next()))
        .expect("a -qmp unix: socket")
        .to_string();
    let kvm = args.windows(2).any(|w| w[0] == "-accel" && w[1] == "kvm");
    let earlier_kvm_starts = record_start(kvm);
    let mut mode = std::env::var("FAKE_QEMU_MODE").unwrap_or_default();
    if mode == "kvm-abort" && kvm {
        eprintln!("qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69");
        std::process::abort();
    }
    let mut console = UnixStream::connect(option_path(&args, "console")).expect("console");
    let mut control = UnixStream::connect(option_path(&args, "control")).expect("control");
    let qmp = UnixListener::bind(qmp_path).expect("qmp socket");
    std::thread::spawn(move || serve_qmp(qmp));

    if let Some(pidfile) = std::env::var_os("FAKE_QEMU_PIDFILE") {
        std::fs::write(pidfile, std::process::id().to_string()).expect("pid file");
    }
    if kvm && (mode == "kvm-silent" || (mode == "kvm-probe-only" && earlier_kvm_starts > 0)) {
        mode = "silent-console".into();
    }
    if mode != "silent-console" {
        console
            .write_all(b"[    0.000000] Linux version 6.1.0-fake\r\n")
            .unwrap();
    }
    match mode.as_str() {
        "kvm-stall" if kvm => mode = "silent".into(),
        "kvm-silent" | "kvm-stall" | "kvm-abort" => mode = "clean".into(),
        "kvm-probe-only" => {
            if !kvm {
                std::thread::sleep(Duration::from_secs(1));
            }
            mode = "clean".into();
        }
        _ => {}
    }
    if mode == "probe-crash" {
        fake_probe(&mut console, &mut control, &args);
    }
    if mode == "silent" || mode == "silent-console" {
        if mode == "silent" {
            console
                .write_all(b"[    0.000000] Booting paravirtualized kernel on KVM\r\n")
                .unwrap();
        }
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    if mode == "boot-crash-once" {
        let pidfile =
            std::env::var_os("FAKE_QEMU_PIDFILE").expect("boot-crash-once needs a pid file");
        let marker = std::path::PathBuf::from(pidfile).with_extension("crashed");
        mode = if marker.exists() {
            "clean"
        } else {
            "boot-crash"
        }
        .to_string();
        std::fs::write(marker, b"").unwrap();
    }
    if mode == "boot-crash" {
        let oops = "[    2.530508] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\r\n\
                    [    2.531149] RIP: 0010:sched_clock_tick+0x5/0xb0\r\n\
                    [    2.531200] Call Trace:\r\n\
                    [    2.531210]  <TASK>\r\n\
                    [    2.531220]  sched_clock_init+0x3a/0x60\r\n\
                    [    2.531230]  </TASK>\r\n\
                    [    2.531240] ---[ end trace 0000000000000000 ]---\r\n\
                    [    2.534448] Kernel panic - not syncing: Fatal exception in interrupt\r\n";
        console.write_all(oops.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        std::process::exit(0);
    }
    control
        .write_all(b"{\"event\":\"ready\",\"uptime_s\":1.0}\n")
        .unwrap();
    match mode.as_str() {
        "hang" => loop {
            std::thread::sleep(Duration::from_secs(60));
        },
        "die" => {
            std::thread::sleep(Duration::from_millis(200));
            eprintln!("qemu-system-x86_64: fake fatal error");
            std::process::exit(1);
        }
        "clean" => {
            control
                .write_all(b"{\"event\":\"done\",\"ok\":true}\n")
                .unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        "garbage" => {
            let mut junk: Vec<u8> = (0u8..=255).collect();
            junk.extend_from_slice(b"\xff\xfe]]><![CDATA[\x1b[31m\x00\x07 <tag> & \xc3\x28\r\n");
            console.write_all(&junk).unwrap();
            control
                .write_all(b"{\"event\":\"done\",\"ok\":true}\n")
                .unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        other => panic!("unknown FAKE_QEMU_MODE {other:?}"),
    }
}
