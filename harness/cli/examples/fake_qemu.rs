//! A stand-in for `qemu-system-x86_64`, for the fault-path tests only: it connects to the console
//! and control sockets and serves QMP like QEMU does, then misbehaves as `FAKE_QEMU_MODE` says:
//!
//! - `hang`: prints a boot line, then nothing, for ever;
//! - `die`: prints a boot line and the agent's Ready, then exits with status 1;
//! - `garbage`: prints invalid UTF-8 and control bytes on the console, then finishes the plan.
//!
//! With `FAKE_QEMU_PIDFILE` set, it writes its pid there first.

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
    let mut console = UnixStream::connect(option_path(&args, "console")).expect("console");
    let mut control = UnixStream::connect(option_path(&args, "control")).expect("control");
    let qmp = UnixListener::bind(qmp_path).expect("qmp socket");
    std::thread::spawn(move || serve_qmp(qmp));

    if let Some(pidfile) = std::env::var_os("FAKE_QEMU_PIDFILE") {
        std::fs::write(pidfile, std::process::id().to_string()).expect("pid file");
    }
    let mode = std::env::var("FAKE_QEMU_MODE").unwrap_or_default();
    console
        .write_all(b"[    0.000000] Linux version 6.1.0-fake\r\n")
        .unwrap();
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
