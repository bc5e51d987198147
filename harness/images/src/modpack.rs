//! A kernel's whole modules tree as one cpio archive, for a mass probe: appended to a scenario's
//! initramfs (the kernel unpacks concatenated newc archives into one rootfs), built once per
//! tree and cached.
//!
//! Every module is decompressed on the host, so the guest spends no emulated cycles on xz, and
//! its signature is stripped: each signed load makes the guest verify a PKCS#7 signature under
//! emulation, and Debian's kernels do not force signatures (an unsigned module loads and taints
//! the kernel with `E` once). The text indexes name the files as `.ko`.

use std::fs;
use std::path::{Path, PathBuf};

use crate::initramfs::{module_bytes, Cpio};
use crate::kernel::Kernel;
use crate::{cache, Error, Result};

/// Bumped when the archive's layout changes, so that old packs are not trusted.
const FORMAT: &str = "modpack-1";
/// The string a signed module ends with.
const SIGNATURE_MARKER: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`: algo, hash, id_type, signer_len, key_id_len, 3 pad, be32 sig_len.
const SIGNATURE_INFO_LEN: usize = 12;
/// The text files of the tree the guest agent reads.
const INDEXES: &[&str] = &[
    "modules.dep",
    "modules.order",
    "modules.alias",
    "modules.softdep",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// A kernel's modules tree as a newc cpio archive to append to an initramfs.
#[derive(Clone, Debug)]
pub struct ModPack {
    /// The archive.
    pub cpio: PathBuf,
    /// Modules in it.
    pub modules: usize,
    /// Modules whose signature was stripped.
    pub unsigned: usize,
}

/// The pack of `kernel`'s modules tree, built on first use and cached by the tree's
/// `modules.dep` and the pack format.
pub fn build(kernel: &Kernel, cache_root: &Path) -> Result<ModPack> {
    let dir = kernel.modules_dir.as_deref().ok_or_else(|| {
        Error::Other(format!(
            "kernel {} has no modules tree to probe; give one with path:IMAGE,modules=DIR",
            kernel.spec
        ))
    })?;
    let dep_path = dir.join("modules.dep");
    let dep = fs::read(&dep_path).map_err(Error::io(&dep_path))?;
    let digest = crate::modbuild::hex_digest(&[FORMAT.as_bytes(), kernel.release.as_bytes(), &dep]);
    let entry = cache_root.join("modpacks").join(&digest[..24]);
    let release = kernel.release.clone();
    let made = cache::get_or_make(&entry, |tmp| {
        let counts = write_pack(dir, &release, &tmp.join("modules.cpio"))?;
        let summary = format!("{} {}\n", counts.0, counts.1);
        fs::write(tmp.join("counts"), summary).map_err(Error::io(tmp))
    })?;
    let counts = fs::read_to_string(made.join("counts")).unwrap_or_default();
    let mut numbers = counts.split_whitespace().map(|n| n.parse().unwrap_or(0));
    Ok(ModPack {
        cpio: made.join("modules.cpio"),
        modules: numbers.next().unwrap_or(0),
        unsigned: numbers.next().unwrap_or(0),
    })
}

/// The module without its appended signature; a module without one, or with a trailer that
/// does not add up, is returned whole.
pub fn strip_signature(module: &[u8]) -> &[u8] {
    let Some(body) = module.strip_suffix(SIGNATURE_MARKER) else {
        return module;
    };
    let Some(info_at) = body.len().checked_sub(SIGNATURE_INFO_LEN) else {
        return module;
    };
    let info = &body[info_at..];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    let trailer = SIGNATURE_INFO_LEN + sig_len + info[3] as usize + info[4] as usize;
    match body.len().checked_sub(trailer) {
        Some(end) => &body[..end],
        None => module,
    }
}

/// The tree file `rel` as the pack names it: compressed modules lose their suffix.
fn packed_name(rel: &str) -> &str {
    [".xz", ".zst", ".gz"]
        .iter()
        .find_map(|ext| rel.strip_suffix(ext))
        .unwrap_or(rel)
}

/// Write the archive of `dir`; (modules, modules whose signature was stripped).
fn write_pack(dir: &Path, release: &str, out: &Path) -> Result<(usize, usize)> {
    let dep_path = dir.join("modules.dep");
    let dep = fs::read_to_string(&dep_path).map_err(Error::io(&dep_path))?;
    let files: Vec<&str> = dep
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, _)| module.trim())
        .collect();
    let modules = decompress_all(dir, &files)?;
    let root = format!("lib/modules/{release}");
    let mut cpio = Cpio::new();
    let mut unsigned = 0;
    for (rel, bytes) in files.iter().zip(&modules) {
        let stripped = strip_signature(bytes);
        unsigned += usize::from(stripped.len() != bytes.len());
        cpio.file(&format!("{root}/{}", packed_name(rel)), stripped, 0o644);
    }
    for index in INDEXES {
        if let Ok(text) = fs::read_to_string(dir.join(index)) {
            let text = text
                .replace(".ko.xz", ".ko")
                .replace(".ko.zst", ".ko")
                .replace(".ko.gz", ".ko");
            cpio.file(&format!("{root}/{index}"), text.as_bytes(), 0o644);
        }
    }
    fs::write(out, cpio.finish()).map_err(Error::io(out))?;
    Ok((files.len(), unsigned))
}

/// Every module of `files` (relative to `dir`) decompressed, on all cores.
fn decompress_all(dir: &Path, files: &[&str]) -> Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|rel| module_bytes(&dir.join(rel)))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(files.len());
        for worker in workers {
            let part = worker
                .join()
                .map_err(|_| Error::Other("a decompression thread panicked".into()))??;
            all.extend(part);
        }
        Ok(all)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(body: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut module = body.to_vec();
        module.extend_from_slice(signature);
        let mut info = [0u8; SIGNATURE_INFO_LEN];
        info[2] = 2; // PKEY_ID_PKCS7
        info[8..].copy_from_slice(&(signature.len() as u32).to_be_bytes());
        module.extend_from_slice(&info);
        module.extend_from_slice(SIGNATURE_MARKER);
        module
    }

    #[test]
    fn a_signed_module_loses_exactly_its_signature() {
        let module = signed(b"\x7fELF body", &[0x30; 700]);
        assert_eq!(strip_signature(&module), b"\x7fELF body");
    }

    #[test]
    fn unsigned_or_damaged_modules_are_kept_whole() {
        assert_eq!(strip_signature(b"\x7fELF plain"), b"\x7fELF plain");
        let mut lying = signed(b"x", &[1; 8]);
        let len_at = lying.len() - SIGNATURE_MARKER.len() - 4;
        lying[len_at..len_at + 4].copy_from_slice(&1_000_000u32.to_be_bytes());
        assert_eq!(strip_signature(&lying), &lying[..]);
    }

    #[test]
    fn compressed_names_lose_their_suffix() {
        assert_eq!(packed_name("kernel/a/b.ko.xz"), "kernel/a/b.ko");
        assert_eq!(packed_name("kernel/a/b.ko"), "kernel/a/b.ko");
    }

    /// The paths of a newc archive, in order.
    fn names(archive: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut at = 0;
        while at + 110 <= archive.len() {
            let field = |i: usize| {
                let text = std::str::from_utf8(&archive[at + 6 + i * 8..at + 14 + i * 8]).unwrap();
                usize::from_str_radix(text, 16).unwrap()
            };
            let (size, name_len) = (field(6), field(11));
            let name = &archive[at + 110..at + 110 + name_len - 1];
            names.push(String::from_utf8_lossy(name).into_owned());
            at = ((at + 110 + name_len + 3) & !3) + size;
            at = (at + 3) & !3;
        }
        names
    }

    fn tree(dir: &Path) -> Kernel {
        let modules = dir.join("root/lib/modules/6.12.0-test");
        fs::create_dir_all(modules.join("kernel/drivers")).unwrap();
        fs::write(
            modules.join("kernel/drivers/a.ko"),
            signed(b"\x7fELF a", &[7; 40]),
        )
        .unwrap();
        fs::write(modules.join("kernel/drivers/b.ko"), b"\x7fELF b").unwrap();
        fs::write(
            modules.join("modules.dep"),
            "kernel/drivers/a.ko: kernel/drivers/b.ko\nkernel/drivers/b.ko:\n",
        )
        .unwrap();
        fs::write(modules.join("modules.alias"), "alias pci:v00001234* a\n").unwrap();
        Kernel {
            spec: "test".into(),
            release: "6.12.0-test".into(),
            boot_image: dir.join("vmlinux"),
            headers: None,
            modules_dir: Some(modules),
        }
    }

    #[test]
    fn the_pack_appends_to_an_initramfs_and_is_built_once() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = tree(dir.path());
        let cache = dir.path().join("cache");
        let pack = build(&kernel, &cache).unwrap();
        assert_eq!((pack.modules, pack.unsigned), (2, 1));
        let mut initramfs = Cpio::new();
        initramfs.file("init", b"agent", 0o755);
        let mut both = initramfs.finish();
        both.extend(fs::read(&pack.cpio).unwrap());
        let all = names(&both);
        for wanted in [
            "init",
            "lib/modules/6.12.0-test/kernel/drivers/a.ko",
            "lib/modules/6.12.0-test/modules.dep",
            "lib/modules/6.12.0-test/modules.alias",
        ] {
            assert!(all.iter().any(|n| n == wanted), "{wanted} in {all:?}");
        }
        assert_eq!(all.iter().filter(|n| *n == "TRAILER!!!").count(), 2);
        let stamp = fs::metadata(&pack.cpio).unwrap().modified().unwrap();
        let again = build(&kernel, &cache).unwrap();
        assert_eq!(
            fs::metadata(&again.cpio).unwrap().modified().unwrap(),
            stamp
        );
    }

    #[test]
    fn a_tree_whose_module_is_missing_leaves_no_pack_behind() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = tree(dir.path());
        let modules = kernel.modules_dir.clone().unwrap();
        fs::remove_file(modules.join("kernel/drivers/b.ko")).unwrap();
        let cache = dir.path().join("cache");
        assert!(build(&kernel, &cache).is_err());
        // Only the entry's lock file may stay: no pack, no half-written directory.
        let left: Vec<_> = fs::read_dir(cache.join("modpacks"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_none_or(|ext| ext != "lock"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
