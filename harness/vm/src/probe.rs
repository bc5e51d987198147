//! Facts about the host's QEMU: its version, and whether KVM really runs guests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::argv::{accel_args, Accel};

/// `qemu-system-x86_64 --version`, first line's version number, or `unknown`.
pub async fn qemu_version(qemu: &Path) -> String {
    let out = Command::new(qemu).arg("--version").output().await;
    out.ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A 64 KiB firmware whose reset vector writes 1 to the isa-debug-exit port and halts: QEMU then
/// exits with status 3. Booting it proves the accelerator runs guest code.
fn exit_firmware() -> Vec<u8> {
    let mut rom = vec![0xf4u8; 64 * 1024]; // hlt everywhere
                                           // At the reset vector (top 16 bytes): mov al, 1; out 0xf4, al; hlt.
    rom[0xfff0..0xfff5].copy_from_slice(&[0xb0, 0x01, 0xe6, 0xf4, 0xf4]);
    rom
}

/// Does `accel` run a guest to completion within `timeout`, with the same accelerator and CPU
/// options a real run uses? On some hosts `/dev/kvm` exists but guests hang or QEMU aborts
/// setting up the vCPU; this finds out without hanging.
pub async fn probe_accel(qemu: &Path, accel: Accel, scratch: &Path, timeout: Duration) -> bool {
    if accel == Accel::Kvm && !Path::new("/dev/kvm").exists() {
        return false;
    }
    let rom = scratch.join("modharness-probe.rom");
    if std::fs::write(&rom, exit_firmware()).is_err() {
        return false;
    }
    let child = Command::new(qemu)
        .args([
            "-M",
            "pc",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
        ])
        .args(accel_args(accel))
        .arg("-bios")
        .arg(&rom)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else { return false };
    let result = tokio::time::timeout(timeout, child.wait()).await;
    let _ = std::fs::remove_file(&rom);
    match result {
        Ok(Ok(status)) => status.code() == Some(3),
        _ => {
            if let Some(pid) = child.id() {
                // SAFETY: plain syscall on the probe's own process group.
                unsafe { libc::killpg(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait().await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_firmware_exits_through_the_debug_port_at_the_reset_vector() {
        let rom = exit_firmware();
        assert_eq!(rom.len(), 65536);
        assert_eq!(&rom[0xfff0..0xfff5], &[0xb0, 0x01, 0xe6, 0xf4, 0xf4]);
    }

    /// Needs qemu-system-x86_64: TCG always runs guests, so the probe must say yes, and quickly.
    #[tokio::test]
    async fn the_probe_sees_a_working_accelerator() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = Path::new("qemu-system-x86_64");
        assert!(probe_accel(qemu, Accel::Tcg, dir.path(), Duration::from_secs(20)).await);
    }
}
