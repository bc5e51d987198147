//! Where the project's own files are: `scenarios/` and `guest-modules/`.

use std::path::{Path, PathBuf};

/// The directory holding `scenarios/` and `guest-modules/`: `$MODHARNESS_HOME`, else the current
/// directory when it has both, else the source tree this binary was built from.
pub fn project_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("MODHARNESS_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let looks_like_home =
        |dir: &Path| dir.join("scenarios").is_dir() && dir.join("guest-modules").is_dir();
    if let Ok(cwd) = std::env::current_dir() {
        if looks_like_home(&cwd) {
            return cwd;
        }
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The guest agent binary: `$MODHARNESS_AGENT`, else `modharness-agent` beside this executable.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MODHARNESS_AGENT").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("modharness-agent")))
        .unwrap_or_else(|| PathBuf::from("modharness-agent"))
}

/// The QEMU binary: `$MODHARNESS_QEMU`, else `qemu-system-x86_64` from `PATH`.
pub fn qemu_binary() -> PathBuf {
    std::env::var_os("MODHARNESS_QEMU")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// The KVM device node: `$MODHARNESS_KVM_DEVICE`, else `/dev/kvm`. Its absence means TCG
/// without a probe; tests point it at a file of their own so that `auto` really probes.
pub fn kvm_device() -> PathBuf {
    std::env::var_os("MODHARNESS_KVM_DEVICE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/kvm"))
}
