//! The initramfs: a cpio (`newc`) archive written here, so no root, loop device or `cpio` binary is
//! needed. It holds the guest agent as `/init`, busybox with its applets, the plan and the modules
//! a scenario may load.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, Error, Result};

/// A cpio `newc` archive being written in memory.
#[derive(Default)]
pub struct Cpio {
    bytes: Vec<u8>,
    next_inode: u32,
    dirs: BTreeSet<String>,
}

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

impl Cpio {
    /// An empty archive.
    pub fn new() -> Cpio {
        Cpio::default()
    }

    fn entry(&mut self, path: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name_len = path.len() + 1;
        let fields = [
            self.next_inode,
            mode,
            0,
            0,
            if mode & S_IFDIR != 0 { 2 } else { 1 },
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name_len as u32,
            0,
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Add a directory and any missing parents.
    pub fn dir(&mut self, path: &str) {
        let path = path.trim_matches('/');
        let mut so_far = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(part);
            if self.dirs.insert(so_far.clone()) {
                let name = so_far.clone();
                self.entry(&name, S_IFDIR | 0o755, (0, 0), &[]);
            }
        }
    }

    fn parent_of(&mut self, path: &str) -> String {
        let path = path.trim_start_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        path
    }

    /// Add a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, data: &[u8], perm: u32) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFREG | perm, (0, 0), data);
    }

    /// Add a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    /// Add a character device node.
    pub fn char_device(&mut self, path: &str, major: u32, minor: u32) {
        let path = self.parent_of(path);
        self.entry(&path, S_IFCHR | 0o600, (major, minor), &[]);
    }

    /// The bytes written so far, taken out of the archive, so that an archive too large to hold
    /// in memory can be written to a file as it grows. Entries keep their alignment: every entry
    /// ends on a 4-byte boundary.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// Close the archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.bytes
    }
}

/// What goes into a scenario's initramfs.
pub struct Contents<'a> {
    /// The static guest agent, installed as `/init`.
    pub agent: &'a Path,
    /// A static busybox, installed as `/bin/busybox` with a link per applet, for plans that
    /// run shell commands (left out otherwise: the guest unpacks every byte under emulation).
    pub busybox: Option<&'a Path>,
    /// The plan, as JSON, installed at `plan_path`.
    pub plan_json: &'a [u8],
    /// Where the agent reads the plan.
    pub plan_path: &'a str,
    /// Module files: (path in the guest, file on the host). Compressed modules (`.ko.xz`,
    /// `.ko.zst`) are decompressed on the way in, so the guest needs no decompressor.
    pub modules: &'a [(String, PathBuf)],
}

/// Write the initramfs for `contents`.
pub fn build(contents: &Contents<'_>) -> Result<Vec<u8>> {
    let mut cpio = Cpio::new();
    for dir in ["dev", "proc", "sys", "tmp", "run", "bin", "sbin", "etc"] {
        cpio.dir(dir);
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.char_device("dev/console", 5, 1);
    cpio.file("init", &read(contents.agent)?, 0o755);
    if let Some(busybox) = contents.busybox {
        cpio.file("bin/busybox", &read(busybox)?, 0o755);
        for applet in busybox_applets(busybox)? {
            cpio.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    cpio.file(contents.plan_path, contents.plan_json, 0o644);
    for (guest, host) in contents.modules {
        cpio.file(guest, &module_bytes(host)?, 0o644);
    }
    Ok(cpio.finish())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(Error::io(path))
}

/// Applet names of a busybox, without `busybox` itself (a link named `busybox` next to the binary
/// would replace it) and without anything that is not a plain name.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let list = run(Command::new(busybox).arg("--list"), "busybox --list")?;
    Ok(list
        .lines()
        .map(str::trim)
        .filter(|a| *a != "busybox" && !a.is_empty())
        .filter(|a| {
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.[".contains(&b))
        })
        .map(str::to_string)
        .collect())
}

/// A module file's bytes, decompressed when the kernel's tree ships it compressed.
pub fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let data = read(path)?;
    let name = path.to_string_lossy();
    let bad = |e: String| Error::Other(format!("{name}: {e}"));
    if name.ends_with(".xz") {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut data.as_slice(), &mut out).map_err(|e| bad(e.to_string()))?;
        Ok(out)
    } else if name.ends_with(".zst") {
        use std::io::Read;
        let mut out = Vec::new();
        ruzstd::decoding::StreamingDecoder::new(data.as_slice())
            .map_err(|e| bad(e.to_string()))?
            .read_to_end(&mut out)
            .map_err(|e| bad(e.to_string()))?;
        Ok(out)
    } else {
        Ok(data)
    }
}

/// Find a static busybox on the host: `$MODHARNESS_BUSYBOX`, else Debian's `busybox-static`.
pub fn find_busybox() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MODHARNESS_BUSYBOX") {
        return Ok(PathBuf::from(path));
    }
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Other(
                "no busybox found: install it (`apt-get install busybox-static`) or set \
                 MODHARNESS_BUSYBOX"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::newc::entries;

    #[test]
    fn cpio_entries_read_back_with_parents_first() {
        let mut cpio = Cpio::new();
        cpio.file("/modharness/modules/a.ko", b"abcde", 0o644);
        cpio.symlink("bin/sh", "busybox");
        cpio.char_device("dev/console", 5, 1);
        let got = entries(&cpio.finish());
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "modharness",
                "modharness/modules",
                "modharness/modules/a.ko",
                "bin",
                "bin/sh",
                "dev",
                "dev/console"
            ]
        );
        assert_eq!(got[2].2, b"abcde");
        assert_eq!(got[2].1, S_IFREG | 0o644);
        assert_eq!(got[4].2, b"busybox");
        assert_eq!(got[6].1, S_IFCHR | 0o600);
    }

    #[test]
    fn an_archive_taken_in_pieces_equals_the_whole() {
        let mut whole = Cpio::new();
        whole.file("a/b.ko", b"abcde", 0o644);
        whole.file("a/c.ko", b"xy", 0o644);
        let mut pieces = Cpio::new();
        pieces.file("a/b.ko", b"abcde", 0o644);
        let mut bytes = pieces.take();
        pieces.file("a/c.ko", b"xy", 0o644);
        bytes.extend(pieces.take());
        bytes.extend(pieces.finish());
        assert_eq!(bytes, whole.finish());
    }

    #[test]
    fn compressed_modules_are_decompressed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ko.xz");
        let mut packed = Vec::new();
        lzma_rs::xz_compress(&mut &b"\x7fELF module"[..], &mut packed).unwrap();
        fs::write(&path, packed).unwrap();
        assert_eq!(module_bytes(&path).unwrap(), b"\x7fELF module");
    }
}
