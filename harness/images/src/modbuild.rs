//! Out-of-tree module builds with kbuild, cached by content.
//!
//! A module directory (a `Kbuild` or `Makefile` with `obj-m`) is copied into a cache entry keyed by
//! the hash of its files and the kernel release, and built there with
//! `make -C HEADERS M=DIR modules`: the user's source tree never receives build products, and an
//! unchanged directory is never built twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::{cache, run, Error, Result};

/// A module built for one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltModule {
    /// The module's name as the kernel knows it (`-` become `_`).
    pub name: String,
    /// The `.ko` file.
    pub path: PathBuf,
}

/// Hex SHA-256 of the concatenated parts, each prefixed by its length so parts cannot run into
/// each other.
pub fn hex_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Files of a module source directory that matter to its build (sorted, relative paths), leaving
/// out what a previous in-tree build may have left behind.
fn source_files(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        let here = root.join(rel);
        for entry in fs::read_dir(&here).map_err(Error::io(&here))? {
            let entry = entry.map_err(Error::io(&here))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let rel = rel.join(&*name);
            let kind = entry.file_type().map_err(Error::io(entry.path()))?;
            if kind.is_dir() {
                if !name.starts_with('.') {
                    walk(root, &rel, out)?;
                }
            } else if kind.is_file() && !is_build_product(&name) {
                out.push(rel);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, Path::new(""), &mut files)?;
    files.sort();
    Ok(files)
}

fn is_build_product(name: &str) -> bool {
    name.starts_with('.')
        || [
            ".o", ".ko", ".mod", ".mod.c", ".mod.o", ".symvers", ".order",
        ]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Build the modules of `src` against `headers` (a kbuild-ready tree for `release`), or take
/// them from the cache. Compiler errors come back verbatim in [`Error::Command`].
pub fn build(
    src: &Path,
    release: &str,
    headers: &Path,
    cache_root: &Path,
) -> Result<Vec<BuiltModule>> {
    let files = source_files(src)?;
    if !files
        .iter()
        .any(|f| f == Path::new("Kbuild") || f == Path::new("Makefile"))
    {
        return Err(Error::Other(format!(
            "{}: not a module directory (it needs a Kbuild or Makefile with obj-m)",
            src.display()
        )));
    }
    // The source directory is part of the key: debug info names it (see below).
    let src = fs::canonicalize(src).map_err(Error::io(src))?;
    let src = src.as_path();
    let mut parts: Vec<Vec<u8>> = vec![
        release.as_bytes().to_vec(),
        src.to_string_lossy().as_bytes().to_vec(),
    ];
    for file in &files {
        parts.push(file.to_string_lossy().as_bytes().to_vec());
        parts.push(fs::read(src.join(file)).map_err(Error::io(src.join(file)))?);
    }
    let digest = hex_digest(&parts.iter().map(Vec::as_slice).collect::<Vec<_>>());
    // The entry's name goes onto make's command line (M=): only plain characters.
    let dir_name = cache::safe_component(
        &src.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "module".into()),
    );
    let entry = cache_root
        .join("modules")
        .join(release)
        .join(format!("{dir_name}-{}", &digest[..16]));
    let entry = cache::get_or_make(&entry, |tmp| {
        let build_dir = tmp.join("src");
        for file in &files {
            let to = build_dir.join(file);
            fs::create_dir_all(to.parent().expect("joined path")).map_err(Error::io(&to))?;
            fs::copy(src.join(file), &to).map_err(Error::io(&to))?;
        }
        let mut make = Command::new("make");
        make.arg("-C")
            .arg(headers)
            .arg(format!("M={}", build_dir.display()))
            // BTF for modules needs pahole and buys nothing here.
            .arg("CONFIG_DEBUG_INFO_BTF_MODULES=");
        // Debug info and __FILE__ name the user's files, not this temporary copy, so symbolized
        // frames point at the source the developer edits. make and the shell would split or
        // expand a path with spaces or `$(...)`, so such a path is left out: the build still
        // works, and the compiler's messages are mapped back below.
        if is_make_safe(src) {
            make.arg(format!(
                "KCFLAGS=-ffile-prefix-map={}={}",
                build_dir.display(),
                src.display()
            ));
        }
        make.arg("modules");
        run(
            &mut make,
            &format!("building {} against {release}", src.display()),
        )
        .map_err(|error| match error {
            // The compiler names the temporary copy: name the user's files instead.
            Error::Command { what, output } => Error::Command {
                what,
                output: output.replace(
                    &format!("{}/", build_dir.display()),
                    &format!("{}/", src.display()),
                ),
            },
            other => other,
        })?;
        for ko in find_kos(&build_dir)? {
            let to = tmp.join(ko.file_name().expect("a file"));
            fs::rename(&ko, &to).map_err(Error::io(&to))?;
        }
        fs::remove_dir_all(&build_dir).map_err(Error::io(&build_dir))
    })?;
    let mut modules: Vec<BuiltModule> = find_kos(&entry)?
        .into_iter()
        .map(|path| BuiltModule {
            name: module_name(&path),
            path,
        })
        .collect();
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    if modules.is_empty() {
        return Err(Error::Other(format!(
            "{}: the build produced no .ko file",
            src.display()
        )));
    }
    Ok(modules)
}

/// Whether `path` passes through make's command line and the shell it runs unchanged.
fn is_make_safe(path: &Path) -> bool {
    path.to_str().is_some_and(|p| {
        p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-,@".contains(c))
    })
}

fn find_kos(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.is_dir() {
            out.extend(find_kos(&path)?);
        } else if path.extension().is_some_and(|e| e == "ko") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The kernel's name for a module file: `kernel/drivers/foo-bar.ko.xz` is `foo_bar`.
pub fn module_name(path: &Path) -> String {
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    let stem = file.split(".ko").next().unwrap_or_default();
    stem.replace('-', "_")
}

/// A module of the kernel's own tree and what it depends on, in load order (dependencies first),
/// from `modules.dep` in `modules_dir`.
pub fn tree_module(modules_dir: &Path, name: &str) -> Option<Vec<PathBuf>> {
    let dep = fs::read_to_string(modules_dir.join("modules.dep")).ok()?;
    let wanted = name.replace('-', "_");
    let line = dep.lines().find(|line| {
        line.split(':')
            .next()
            .is_some_and(|path| module_name(Path::new(path)) == wanted)
    })?;
    let (path, deps) = line.split_once(':')?;
    // modules.dep lists dependencies so that the last must be loaded first.
    let mut order: Vec<PathBuf> = deps
        .split_whitespace()
        .rev()
        .map(|d| modules_dir.join(d))
        .collect();
    order.push(modules_dir.join(path));
    Some(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_follow_the_kernel() {
        assert_eq!(module_name(Path::new("kernel/a/foo-bar.ko.xz")), "foo_bar");
        assert_eq!(module_name(Path::new("/x/mh_trivial.ko")), "mh_trivial");
    }

    #[test]
    fn tree_modules_come_with_their_dependencies_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/a/edu-drv.ko.xz: kernel/b/mid.ko.xz kernel/c/base.ko.xz\nkernel/c/base.ko.xz:\n",
        )
        .unwrap();
        let order = tree_module(dir.path(), "edu_drv").unwrap();
        let rel: Vec<_> = order
            .iter()
            .map(|p| {
                p.strip_prefix(dir.path())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            rel,
            [
                "kernel/c/base.ko.xz",
                "kernel/b/mid.ko.xz",
                "kernel/a/edu-drv.ko.xz"
            ]
        );
        assert_eq!(tree_module(dir.path(), "missing"), None);
    }

    #[test]
    fn only_plain_paths_go_onto_makes_command_line() {
        assert!(is_make_safe(Path::new("/home/me/src/my_driver-2.0")));
        assert!(!is_make_safe(Path::new("/home/me/src/my driver")));
        assert!(!is_make_safe(Path::new("/tmp/m$(touch X)")));
    }

    #[test]
    fn digest_parts_cannot_run_into_each_other() {
        assert_ne!(hex_digest(&[b"ab", b"c"]), hex_digest(&[b"a", b"bc"]));
    }

    #[test]
    fn a_directory_without_kbuild_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.c"), "int x;").unwrap();
        let err = build(dir.path(), "r", Path::new("/nonexistent"), dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a module directory"), "{err}");
    }
}
