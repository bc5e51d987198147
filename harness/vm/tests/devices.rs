//! The device list against the scenario format, and against the host's real QEMU.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use modharness_vm::argv::{accel_args, base_args, device_args, machine_args};
use modharness_vm::{machine_for, Accel, Device, Machine};

fn installer() -> Vec<Device> {
    modharness_scenario::INSTALLER_DEVICES
        .iter()
        .map(|name| Device::from_name(name).expect("a preset names known devices"))
        .collect()
}

#[test]
fn every_device_a_scenario_may_name_has_qemu_arguments_and_no_other() {
    let names: Vec<&str> = Device::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(names, modharness_scenario::DEVICES);
}

#[test]
fn the_installer_preset_goes_on_q35() {
    assert_eq!(machine_for(&installer(), false, false), Machine::Q35);
}

/// How QEMU took `devices` on `machine`, paused before the first instruction and without a
/// kernel: `Ok` when it was still running after two seconds and had printed nothing, else what
/// it said. `None` when there is no qemu-system-x86_64 to ask.
fn qemu_accepts(machine: Machine, devices: &[Device]) -> Option<Result<(), String>> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(base_args())
        .args(machine_args(machine))
        .args(accel_args(Accel::Tcg))
        .args(device_args(machine, devices))
        .args(["-L", "/usr/share/qemu", "-S"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let started = Instant::now();
    let exited = loop {
        if let Some(status) = child.try_wait().expect("waitpid on our own child") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(2) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if exited.is_none() {
        // SIGKILL: QEMU prints nothing for it, so whatever stderr holds came at startup.
        child.kill().expect("kill our own child");
        child.wait().expect("reap our own child");
    }
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .map(|mut e| e.read_to_string(&mut stderr));
    Some(match exited {
        Some(status) => Err(format!("QEMU exited with {status}: {stderr}")),
        None if !stderr.is_empty() => Err(format!("QEMU warned: {stderr}")),
        None => Ok(()),
    })
}

/// Needs qemu-system-x86_64 (Debian's qemu-system-x86); says so and passes when it is missing.
#[test]
fn real_qemu_accepts_the_installer_preset_and_every_device_without_a_warning() {
    let cases = [
        (Machine::Q35, installer()),
        (Machine::Q35, Device::ALL.to_vec()),
        (Machine::Pc, Device::ALL.to_vec()),
    ];
    let runs: Vec<_> = cases
        .into_iter()
        .map(|(machine, devices)| {
            std::thread::spawn(move || (machine, qemu_accepts(machine, &devices)))
        })
        .collect();
    for run in runs {
        let (machine, verdict) = run.join().expect("the QEMU thread does not panic");
        match verdict {
            // A test that cannot run must not pass: ci/install-deps.sh installs QEMU.
            None => panic!("no qemu-system-x86_64 on this host: run ci/install-deps.sh"),
            Some(Err(why)) => panic!("{machine:?}: {why}"),
            Some(Ok(())) => {}
        }
    }
}
