//! Facts about the host's QEMU.

use std::path::Path;

use tokio::process::Command;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs qemu-system-x86_64 (CI installs it).
    #[tokio::test]
    async fn the_version_of_the_installed_qemu_is_read() {
        let version = qemu_version(Path::new("qemu-system-x86_64")).await;
        assert!(
            version.starts_with(|c: char| c.is_ascii_digit()),
            "{version}"
        );
    }

    #[tokio::test]
    async fn a_missing_qemu_has_an_unknown_version() {
        assert_eq!(
            qemu_version(Path::new("/nonexistent/qemu")).await,
            "unknown"
        );
    }
}
