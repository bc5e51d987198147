//! A Debian kernel's debug vmlinux (`linux-image-RELEASE-dbg`), for `file:line` on kernel
//! frames: fetched into the cache on request (`images fetch --debug-symbols`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel::{parse_release, Kernel};
use crate::{cache, run, Error, Result};

/// The kernel's vmlinux with debug info, from Debian's `linux-image-RELEASE-dbg` package (about
/// 1 GB to download; only the vmlinux is kept), fetched into the cache on request.
pub fn fetch_debug_vmlinux(kernel: &Kernel, cache_root: &Path) -> Result<PathBuf> {
    let release = &kernel.release;
    if parse_release(release).is_none() {
        return Err(Error::Other(format!(
            "debug symbols come from Debian's packages; {} is not a Debian kernel",
            kernel.spec
        )));
    }
    let entry = debug_entry(release, cache_root);
    let dir = cache::get_or_make(&entry, |tmp| {
        let package = format!("linux-image-{release}-dbg");
        run(
            Command::new("apt-get")
                .args(["download", "-q", "-o", "APT::Sandbox::User=root", &package])
                .current_dir(tmp),
            &format!("apt-get download {package}"),
        )?;
        let deb = fs::read_dir(tmp)
            .map_err(Error::io(tmp))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| Error::Other(format!("apt-get download {package} left no .deb")))?;
        let member = format!("./usr/lib/debug/boot/vmlinux-{release}");
        run(
            Command::new("sh")
                .arg("-c")
                .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" \"$3\"")
                .arg("sh")
                .arg(&deb)
                .arg(tmp)
                .arg(&member),
            &format!("extracting {member} from {}", deb.display()),
        )?;
        fs::remove_file(&deb).map_err(Error::io(&deb))?;
        let from = tmp.join(&member);
        fs::rename(&from, tmp.join("vmlinux")).map_err(Error::io(&from))?;
        fs::remove_dir_all(tmp.join("usr")).map_err(Error::io(tmp))
    })?;
    Ok(dir.join("vmlinux"))
}

/// The debug vmlinux of `kernel`, when [`fetch_debug_vmlinux`] has put it in the cache.
pub fn cached_debug_vmlinux(kernel: &Kernel, cache_root: &Path) -> Option<PathBuf> {
    let path = debug_entry(&kernel.release, cache_root).join("vmlinux");
    path.is_file().then_some(path)
}

fn debug_entry(release: &str, cache_root: &Path) -> PathBuf {
    cache_root
        .join("kernels")
        .join(format!("debian-{release}-dbg"))
}
