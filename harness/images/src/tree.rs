//! `tree:DIR`: a kernel tree the user built, in place or as an `O=` output directory.
//!
//! The tree itself is the headers (kbuild builds out-of-tree modules against it with
//! `make -C DIR M=…`). Its modules are copied, as `modules.order` lists them, into a cache entry
//! laid out like `/lib/modules/RELEASE` and indexed with `depmod`, so the tree is only read,
//! never written. The entry is keyed by the release and the size and time of every module, so
//! a rebuilt module is picked up.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernel::Kernel;
use crate::{cache, run, Error, Result};

/// The kernel of the built tree `dir`.
pub fn kernel(spec: &str, dir: &Path, cache_root: &Path) -> Result<Kernel> {
    let bad = |why: String| Error::BadSpec {
        spec: spec.to_string(),
        why,
    };
    let release_file = dir.join("include/config/kernel.release");
    let release = fs::read_to_string(&release_file)
        .map(|r| r.trim().to_string())
        .map_err(|_| {
            bad(format!(
                "{} is not a built kernel tree (no include/config/kernel.release): run make there first",
                dir.display()
            ))
        })?;
    if release.is_empty() || !release.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(bad(format!(
            "{}: a release kbuild never writes",
            release_file.display()
        )));
    }
    let config = fs::read_to_string(dir.join(".config")).unwrap_or_default();
    // QEMU boots a vmlinux only through its PVH entry; without one, the compressed image.
    let vmlinux = dir.join("vmlinux");
    let bzimage = dir.join("arch/x86/boot/bzImage");
    let boot_image = if vmlinux.is_file() && config.lines().any(|l| l == "CONFIG_PVH=y") {
        vmlinux
    } else if bzimage.is_file() {
        bzimage
    } else {
        return Err(bad(format!(
            "{} has neither a vmlinux with CONFIG_PVH=y nor arch/x86/boot/bzImage: build the kernel first",
            dir.display()
        )));
    };
    let modules_dir = match fs::read_to_string(dir.join("modules.order")) {
        Ok(order) if !order.trim().is_empty() => {
            Some(install_modules(dir, &order, &release, cache_root)?)
        }
        _ => None,
    };
    let headers = dir
        .join("Module.symvers")
        .is_file()
        .then(|| dir.to_path_buf());
    Ok(Kernel {
        spec: spec.to_string(),
        release,
        boot_image,
        headers,
        modules_dir,
        config: Some(dir.join(".config")).filter(|c| c.is_file()),
    })
}

/// The tree's modules in a cache entry `…/lib/modules/RELEASE`, made when missing.
fn install_modules(dir: &Path, order: &str, release: &str, cache_root: &Path) -> Result<PathBuf> {
    // modules.order names objects (`drivers/x/y.o`, 6.2 and later) or modules (`kernel/…/y.ko`).
    let modules: Vec<PathBuf> = order
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .map(|l| {
            let l = l.strip_prefix("kernel/").unwrap_or(l);
            PathBuf::from(
                l.strip_suffix(".o")
                    .map_or(l.to_string(), |s| format!("{s}.ko")),
            )
        })
        .collect();
    let mut parts = vec![release.as_bytes().to_vec(), order.as_bytes().to_vec()];
    for module in &modules {
        let meta = fs::metadata(dir.join(module)).map_err(Error::io(dir.join(module)))?;
        parts.push(
            format!(
                "{} {} {}",
                module.display(),
                meta.len(),
                meta.mtime_nsec() + meta.mtime() * 1_000_000_000
            )
            .into_bytes(),
        );
    }
    let digest = crate::modbuild::hex_digest(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let entry = cache_root
        .join("kernels")
        .join(format!("tree-{}", &digest[..16]));
    let entry = cache::get_or_make(&entry, |tmp| {
        let target = tmp.join("lib/modules").join(release);
        let mut listed = String::new();
        for module in &modules {
            let to = target.join("kernel").join(module);
            fs::create_dir_all(to.parent().expect("a file")).map_err(Error::io(&to))?;
            fs::copy(dir.join(module), &to).map_err(Error::io(dir.join(module)))?;
            listed.push_str(&format!("kernel/{}\n", module.display()));
        }
        fs::write(target.join("modules.order"), listed).map_err(Error::io(&target))?;
        for extra in ["modules.builtin", "modules.builtin.modinfo"] {
            if dir.join(extra).is_file() {
                fs::copy(dir.join(extra), target.join(extra))
                    .map_err(Error::io(dir.join(extra)))?;
            }
        }
        let mut depmod = Command::new("depmod");
        depmod.arg("-b").arg(tmp);
        if dir.join("System.map").is_file() {
            depmod.arg("-F").arg(dir.join("System.map"));
        }
        run(depmod.arg(release), "depmod")?;
        Ok(())
    })?;
    Ok(entry.join("lib/modules").join(release))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn a_tree_that_was_never_built_is_refused_with_what_to_do() {
        let cache = tempfile::tempdir().unwrap();
        let dir = tree(&[("Makefile", "")]);
        let err = kernel("tree:x", dir.path(), cache.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("run make there first"), "{err}");
        let dir = tree(&[("include/config/kernel.release", "6.18.0\n")]);
        let err = kernel("tree:x", dir.path(), cache.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("build the kernel first"), "{err}");
    }

    #[test]
    fn a_built_tree_boots_its_pvh_vmlinux_and_its_modules_are_indexed() {
        let cache = tempfile::tempdir().unwrap();
        let dir = tree(&[
            ("include/config/kernel.release", "6.18.0-mine\n"),
            (".config", "CONFIG_PVH=y\n"),
            ("vmlinux", "ELF"),
            ("Module.symvers", ""),
            ("modules.order", "drivers/a/alpha.o\n"),
            ("drivers/a/alpha.ko", "not really a module"),
        ]);
        let k = kernel("tree:x", dir.path(), cache.path()).unwrap();
        assert_eq!(k.release, "6.18.0-mine");
        assert_eq!(k.boot_image, dir.path().join("vmlinux"));
        assert_eq!(k.headers.as_deref(), Some(dir.path()));
        let modules = k.modules_dir.unwrap();
        assert!(modules.join("kernel/drivers/a/alpha.ko").is_file());
        assert_eq!(
            fs::read_to_string(modules.join("modules.order")).unwrap(),
            "kernel/drivers/a/alpha.ko\n"
        );
        assert!(modules.join("modules.dep").is_file());
    }
}
