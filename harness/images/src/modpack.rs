//! A kernel's whole modules tree as a cpio archive, for a mass probe in the guest.
//!
//! The archive holds `lib/modules/RELEASE` with every module decompressed and its signature
//! stripped (Debian signs its modules, and checking a signature under emulation is slow; the
//! kernel does not force signatures, so an unsigned module loads and taints it once), and the text
//! indexes with their paths renamed to match. It ends with its own trailer, so it can be appended
//! to any initramfs: the kernel unpacks concatenated archives one after the other.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::initramfs::{module_bytes, Cpio};
use crate::kernel::Kernel;
use crate::modbuild::hex_digest;
use crate::{cache, parallel, Error, Result};

/// A kernel's modules tree as a newc cpio archive to append to an initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModPack {
    /// The archive, in the cache.
    pub cpio: PathBuf,
    /// The kernel release whose modules it holds.
    pub release: String,
    /// How many modules it holds.
    pub modules: usize,
    /// Its size in bytes.
    pub bytes: u64,
    /// How many of its modules had a signature stripped.
    pub stripped: usize,
}

/// What the pack's bytes depend on besides the modules tree; bump it when the layout changes.
const FORMAT: &str = "modpack-1";
const ARCHIVE: &str = "modules.cpio";
const MANIFEST: &str = "modpack.json";

/// The indexes the guest reads, copied with their module paths renamed to `.ko`.
const INDEXES: [&str; 6] = [
    "modules.dep",
    "modules.order",
    "modules.alias",
    "modules.softdep",
    "modules.builtin",
    "modules.builtin.modinfo",
];

/// Compressed module suffixes, each decompressed into a plain `.ko`.
const COMPRESSED: [&str; 2] = [".ko.xz", ".ko.zst"];

/// What the cache entry records beside the archive.
#[derive(Serialize, Deserialize)]
struct Manifest {
    release: String,
    modules: usize,
    stripped: usize,
}

/// The pack of `kernel`'s modules tree, built into the cache under `cache_root` unless it is
/// there already. It is rebuilt only when `modules.dep` (which depmod rewrites whenever the tree
/// changes) or the pack's format changes.
pub fn build(kernel: &Kernel, cache_root: &Path) -> Result<ModPack> {
    let dir = kernel.modules_dir.as_deref().ok_or_else(|| {
        Error::Other(format!(
            "{} has no modules tree to pack (a path: kernel needs modules=DIR)",
            kernel.spec
        ))
    })?;
    let dep_path = dir.join("modules.dep");
    let dep = fs::read(&dep_path).map_err(|e| {
        Error::Other(format!(
            "{}: {e} (is {} a modules tree, and has depmod run on it?)",
            dep_path.display(),
            dir.display()
        ))
    })?;
    let release = &kernel.release;
    let key = hex_digest(&[FORMAT.as_bytes(), release.as_bytes(), &dep]);
    let entry = cache_root
        .join("modpacks")
        .join(format!("{}-{}", entry_name(release), &key[..16]));
    let entry = cache::get_or_make(&entry, |tmp| write_pack(dir, release, tmp))?;
    let path = entry.join(MANIFEST);
    let text = fs::read(&path).map_err(Error::io(&path))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let cpio = entry.join(ARCHIVE);
    let bytes = fs::metadata(&cpio).map_err(Error::io(&cpio))?.len();
    Ok(ModPack {
        cpio,
        release: manifest.release,
        modules: manifest.modules,
        bytes,
        stripped: manifest.stripped,
    })
}

/// A release made safe as a file name (a local kernel's release is whatever its image says).
fn entry_name(release: &str) -> String {
    release
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write the archive and its manifest for the tree `dir` into `out`.
fn write_pack(dir: &Path, release: &str, out: &Path) -> Result<()> {
    let modules = find_modules(dir)?;
    let root = format!("lib/modules/{release}");
    let path = out.join(ARCHIVE);
    let file = File::create(&path).map_err(Error::io(&path))?;
    let mut file = BufWriter::new(file);
    let mut cpio = Cpio::new();
    cpio.dir(&root);
    let mut stripped = 0;
    parallel::map_in_order(
        &modules,
        |rel| {
            let mut bytes = module_bytes(&dir.join(rel))?;
            let kept = strip_signature(&bytes).len();
            let signed = kept < bytes.len();
            bytes.truncate(kept);
            Ok((format!("{root}/{}", plain_name(rel)), bytes, signed))
        },
        |(guest, bytes, signed)| {
            stripped += usize::from(signed);
            cpio.file(&guest, &bytes, 0o644);
            file.write_all(&cpio.take()).map_err(Error::io(&path))
        },
    )?;
    for index in INDEXES {
        let from = dir.join(index);
        match fs::read(&from) {
            Ok(text) => cpio.file(&format!("{root}/{index}"), &rename_modules(&text), 0o644),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&from)(e)),
        }
    }
    file.write_all(&cpio.finish()).map_err(Error::io(&path))?;
    let file = file
        .into_inner()
        .map_err(|e| Error::io(&path)(e.into_error()))?;
    // The entry is published by a rename right after: its data must be on disk first.
    file.sync_all().map_err(Error::io(&path))?;
    let manifest = Manifest {
        release: release.to_string(),
        modules: modules.len(),
        stripped,
    };
    let path = out.join(MANIFEST);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&manifest).expect("serializable"),
    )
    .map_err(Error::io(&path))
}

/// Every module file under `dir`, as sorted relative paths. Symbolic links (`build`, `source`)
/// are not followed.
fn find_modules(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let here = dir.join(rel);
        for entry in fs::read_dir(&here).map_err(Error::io(&here))? {
            let entry = entry.map_err(Error::io(&here))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let kind = entry.file_type().map_err(Error::io(entry.path()))?;
            if kind.is_dir() {
                walk(dir, &rel, out)?;
            } else if kind.is_file() && name.ends_with(".ko.gz") {
                return Err(Error::Other(format!(
                    "{}: gzip-compressed modules are not supported (xz and zstd are)",
                    dir.join(&rel).display()
                )));
            } else if kind.is_file() && (name.ends_with(".ko") || plain_name(&name) != name) {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// A module path with a compressed suffix replaced by `.ko`.
fn plain_name(path: &str) -> String {
    COMPRESSED
        .iter()
        .find_map(|ext| path.strip_suffix(ext))
        .map_or_else(|| path.to_string(), |stem| format!("{stem}.ko"))
}

/// An index's text with every compressed module suffix that ends a path (before `:`, white
/// space, a NUL or the end) replaced by `.ko`.
fn rename_modules(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut at = 0;
    'bytes: while at < text.len() {
        for ext in COMPRESSED {
            let ext = ext.as_bytes();
            if text[at..].starts_with(ext) {
                let after = text.get(at + ext.len());
                if after.is_none_or(|b| b":\0".contains(b) || b.is_ascii_whitespace()) {
                    out.extend_from_slice(b".ko");
                    at += ext.len();
                    continue 'bytes;
                }
            }
        }
        out.push(text[at]);
        at += 1;
    }
    out
}

/// The marker that ends a signed module.
const SIG_MAGIC: &[u8] = b"~Module signature appended~\n";
/// `struct module_signature`: algo, hash, id_type, signer_len, key_id_len, 3 pad bytes, then
/// the big-endian length of the PKCS#7 message before it.
const SIG_INFO_LEN: usize = 12;
const PKEY_ID_PKCS7: u8 = 2;

/// The module without its appended signature: the marker, the signature info and the PKCS#7
/// message before it. A module without the marker, or whose signature info the kernel would
/// reject, is returned whole.
pub fn strip_signature(module: &[u8]) -> &[u8] {
    let Some(signed) = module.strip_suffix(SIG_MAGIC) else {
        return module;
    };
    let Some(info_at) = signed.len().checked_sub(SIG_INFO_LEN) else {
        return module;
    };
    let info = &signed[info_at..];
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    // The kernel's own checks (mod_check_sig): PKCS#7, no other parameters, a module left over.
    let well_formed =
        info[2] == PKEY_ID_PKCS7 && info[..8].iter().enumerate().all(|(i, &b)| i == 2 || b == 0);
    match info_at.checked_sub(sig_len) {
        Some(end) if well_formed && end > 0 => &module[..end],
        _ => module,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::newc::entries;

    const RELEASE: &str = "9.9.9-test";

    /// `body` signed the way the kernel's sign-file does, with `sig` for a PKCS#7 message.
    fn signed(body: &[u8], sig: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(sig);
        out.extend_from_slice(&[0, 0, PKEY_ID_PKCS7, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&(sig.len() as u32).to_be_bytes());
        out.extend_from_slice(SIG_MAGIC);
        out
    }

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lzma_rs::xz_compress(&mut &data[..], &mut out).unwrap();
        out
    }

    fn write(path: &Path, data: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    /// A small modules tree: a plain module, a signed xz one, a signed plain one, their indexes,
    /// and a `build` link to a directory holding a module that is not the tree's.
    fn fake_tree(root: &Path) -> Kernel {
        let dir = root.join("lib/modules").join(RELEASE);
        write(&dir.join("kernel/a/plain.ko"), b"\x7fELF plain");
        write(
            &dir.join("kernel/b/packed.ko.xz"),
            &xz(&signed(b"\x7fELF packed", &[0x30; 300])),
        );
        write(
            &dir.join("kernel/c/signed.ko"),
            &signed(b"\x7fELF signed", &[0x30; 40]),
        );
        write(
            &dir.join("modules.dep"),
            b"kernel/a/plain.ko:\nkernel/b/packed.ko.xz: kernel/a/plain.ko\n\
              kernel/c/signed.ko: kernel/b/packed.ko.xz kernel/a/plain.ko\n",
        );
        write(
            &dir.join("modules.order"),
            b"kernel/a/plain.ko\nkernel/b/packed.ko\nkernel/c/signed.ko\n",
        );
        write(&dir.join("modules.alias"), b"alias pci:v1234d* packed\n");
        write(&dir.join("modules.dep.bin"), b"binary");
        write(&root.join("headers/stray.ko"), b"not the tree's");
        std::os::unix::fs::symlink(root.join("headers"), dir.join("build")).unwrap();
        Kernel {
            spec: "test".into(),
            release: RELEASE.into(),
            boot_image: PathBuf::new(),
            headers: None,
            modules_dir: Some(dir),
            config: None,
        }
    }

    fn file<'a>(got: &'a [crate::newc::Entry], name: &str) -> &'a [u8] {
        let path = format!("lib/modules/{RELEASE}/{name}");
        &got.iter()
            .find(|e| e.0 == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .2
    }

    #[test]
    fn a_pack_holds_every_module_decompressed_and_unsigned_under_a_plain_name() {
        let tmp = tempfile::tempdir().unwrap();
        let pack = build(&fake_tree(tmp.path()), &tmp.path().join("cache")).unwrap();
        assert_eq!((pack.modules, pack.stripped), (3, 2));
        assert_eq!(pack.release, RELEASE);
        let bytes = fs::read(&pack.cpio).unwrap();
        assert_eq!(pack.bytes, bytes.len() as u64);
        let got = entries(&bytes);
        assert_eq!(file(&got, "kernel/a/plain.ko"), b"\x7fELF plain");
        assert_eq!(file(&got, "kernel/b/packed.ko"), b"\x7fELF packed");
        assert_eq!(file(&got, "kernel/c/signed.ko"), b"\x7fELF signed");
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert!(!names
            .iter()
            .any(|n| n.contains("stray") || n.ends_with(".bin")));
        // Every parent comes before what it holds.
        for (i, name) in names.iter().enumerate() {
            if let Some((parent, _)) = name.rsplit_once('/') {
                assert!(names[..i].contains(&parent), "{name} before {parent}");
            }
        }
    }

    #[test]
    fn the_indexes_name_the_plain_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let pack = build(&fake_tree(tmp.path()), &tmp.path().join("cache")).unwrap();
        let got = entries(&fs::read(&pack.cpio).unwrap());
        assert_eq!(
            file(&got, "modules.dep"),
            b"kernel/a/plain.ko:\nkernel/b/packed.ko: kernel/a/plain.ko\n\
              kernel/c/signed.ko: kernel/b/packed.ko kernel/a/plain.ko\n"
        );
        assert_eq!(file(&got, "modules.alias"), b"alias pci:v1234d* packed\n");
        assert!(got.iter().all(|e| !e.0.ends_with("modules.softdep")));
    }

    #[test]
    fn a_pack_appended_to_an_initramfs_unpacks_with_it() {
        let tmp = tempfile::tempdir().unwrap();
        let pack = build(&fake_tree(tmp.path()), &tmp.path().join("cache")).unwrap();
        let mut small = Cpio::new();
        small.file("init", b"#!agent", 0o755);
        small.file("lib/firmware/x.bin", b"fw", 0o644);
        let mut both = small.finish();
        both.extend(fs::read(&pack.cpio).unwrap());
        let got = entries(&both);
        assert!(got.iter().any(|e| e.0 == "init" && e.2 == b"#!agent"));
        assert_eq!(file(&got, "kernel/b/packed.ko"), b"\x7fELF packed");
    }

    #[test]
    fn an_unchanged_tree_is_not_packed_again() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = fake_tree(tmp.path());
        let cache = tmp.path().join("cache");
        let first = build(&kernel, &cache).unwrap();
        let made = fs::metadata(&first.cpio).unwrap().modified().unwrap();
        // Were it packed again, the missing module would fail the build.
        fs::remove_file(
            kernel
                .modules_dir
                .as_ref()
                .unwrap()
                .join("kernel/a/plain.ko"),
        )
        .unwrap();
        let second = build(&kernel, &cache).unwrap();
        assert_eq!(first, second);
        assert_eq!(
            fs::metadata(&second.cpio).unwrap().modified().unwrap(),
            made
        );
    }

    #[test]
    fn a_new_modules_dep_makes_a_new_pack() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = fake_tree(tmp.path());
        let cache = tmp.path().join("cache");
        let first = build(&kernel, &cache).unwrap();
        let dir = kernel.modules_dir.as_ref().unwrap();
        write(&dir.join("kernel/d/new.ko"), b"\x7fELF new");
        fs::write(dir.join("modules.dep"), b"kernel/d/new.ko:\n").unwrap();
        let second = build(&kernel, &cache).unwrap();
        assert_ne!(first.cpio, second.cpio);
        assert_eq!(second.modules, 4);
    }

    #[test]
    fn a_failed_pack_leaves_no_entry_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = fake_tree(tmp.path());
        let dir = kernel.modules_dir.as_ref().unwrap();
        // Sorted last, so the archive is half written when it fails.
        write(&dir.join("kernel/z/broken.ko.xz"), b"not xz");
        let cache = tmp.path().join("cache");
        let err = build(&kernel, &cache).unwrap_err().to_string();
        assert!(err.contains("broken.ko.xz"), "{err}");
        let left: Vec<_> = fs::read_dir(cache.join("modpacks"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_kernel_without_a_modules_tree_is_refused_with_a_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let mut kernel = fake_tree(tmp.path());
        let dir = kernel.modules_dir.take().unwrap();
        let err = build(&kernel, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("no modules tree"), "{err}");
        fs::remove_file(dir.join("modules.dep")).unwrap();
        kernel.modules_dir = Some(dir);
        let err = build(&kernel, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("depmod"), "{err}");
    }

    #[test]
    fn a_signature_is_stripped_whole() {
        let module = signed(b"\x7fELF body", b"pkcs7");
        assert_eq!(strip_signature(&module), b"\x7fELF body");
    }

    #[test]
    fn a_module_without_a_well_formed_signature_is_kept_whole() {
        let (body, sig) = (b"\x7fELF body", b"pkcs7");
        let info_at = body.len() + sig.len();
        let unsigned = body.to_vec();
        let mut not_pkcs7 = signed(body, sig);
        not_pkcs7[info_at + 2] = 1;
        let mut with_params = signed(body, sig);
        with_params[info_at + 1] = 4;
        let too_long = signed(b"", b"pkcs7");
        let mut truncated = SIG_MAGIC.to_vec();
        truncated.insert(0, 7);
        for module in [unsigned, not_pkcs7, with_params, too_long, truncated] {
            assert_eq!(strip_signature(&module), module);
        }
    }

    #[test]
    fn only_suffixes_that_end_a_path_are_renamed() {
        assert_eq!(
            rename_modules(b"a.ko.xz:\tb.ko.zst c.ko.xzz\0d.ko.xz"),
            b"a.ko:\tb.ko c.ko.xzz\0d.ko"
        );
    }
}
