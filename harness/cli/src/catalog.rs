//! Which modules a scenario can load, and where each comes from: a module directory under
//! `guest-modules/`, a user's `--modules DIR`, or the kernel's own tree.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use modharness_images::{kernel::Kernel, modbuild};

use crate::error::{Failure, Result};

/// A module source directory and the modules its kbuild file declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleSource {
    pub dir: PathBuf,
    pub names: Vec<String>,
}

/// Every module source directory known to this run.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub sources: Vec<ModuleSource>,
}

/// Module names a `Kbuild`/`Makefile` declares with `obj-m` (or `obj-$(CONFIG_…)`).
pub fn declared_modules(kbuild: &str) -> Vec<String> {
    let re = regex::Regex::new(r"^\s*obj-(?:m|\$\([A-Za-z0-9_]+\))\s*[:+]?=(.*)$").expect("valid");
    let mut names: Vec<String> = kbuild
        .lines()
        .filter_map(|line| re.captures(line))
        .flat_map(|caps| {
            caps[1]
                .split_whitespace()
                .filter_map(|w| w.strip_suffix(".o"))
                .map(|n| n.replace('-', "_"))
                .collect::<Vec<_>>()
        })
        .collect();
    names.dedup();
    names
}

fn module_source(dir: &Path) -> Option<ModuleSource> {
    let text = ["Kbuild", "Makefile"]
        .iter()
        .filter_map(|f| fs::read_to_string(dir.join(f)).ok())
        .collect::<Vec<_>>()
        .join("\n");
    let names = declared_modules(&text);
    (!names.is_empty()).then(|| ModuleSource {
        dir: dir.to_path_buf(),
        names,
    })
}

impl Catalog {
    /// Find module sources: each subdirectory of `guest_modules`, and each user directory (a
    /// module directory itself, or a directory of module directories).
    pub fn discover(guest_modules: &Path, user_dirs: &[PathBuf]) -> Result<Catalog> {
        let mut sources = subdirectory_sources(guest_modules);
        for dir in user_dirs {
            if !dir.is_dir() {
                return Err(Failure::usage(format!(
                    "--modules {}: not a directory; expected a module source directory \
                     (with a Kbuild or Makefile that sets obj-m)",
                    dir.display()
                )));
            }
            let found = match module_source(dir) {
                Some(source) => vec![source],
                None => subdirectory_sources(dir),
            };
            if found.is_empty() {
                return Err(Failure::usage(format!(
                    "--modules {}: no Kbuild or Makefile with obj-m here or in its \
                     subdirectories",
                    dir.display()
                )));
            }
            sources.extend(found);
        }
        Ok(Catalog { sources })
    }

    /// The source directory that builds `name`; a user's directory wins over `guest-modules/`.
    pub fn source_of(&self, name: &str) -> Option<&ModuleSource> {
        self.sources
            .iter()
            .rev()
            .find(|s| s.names.iter().any(|n| n == name))
    }

    /// All module names, sorted.
    pub fn names(&self) -> BTreeSet<String> {
        self.sources.iter().flat_map(|s| s.names.clone()).collect()
    }
}

fn subdirectory_sources(dir: &Path) -> Vec<ModuleSource> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.iter().filter_map(|d| module_source(d)).collect()
}

/// Modules made ready for one kernel: what the plan names and what goes into the initramfs.
#[derive(Debug, Default)]
pub struct Resolved {
    /// For the plan: module name → guest paths, dependencies first.
    pub plan_modules: BTreeMap<String, Vec<String>>,
    /// For the initramfs: (guest path, host file).
    pub files: Vec<(String, PathBuf)>,
}

/// Whether `name` exists for this kernel: in the catalog or in the kernel's own modules.
pub fn is_known(catalog: &Catalog, kernel: Option<&Kernel>, name: &str) -> bool {
    catalog.source_of(name).is_some()
        || kernel
            .and_then(|k| k.modules_dir.as_deref())
            .is_some_and(|dir| modbuild::tree_module(dir, name).is_some())
}

/// Build (or take from the cache) every module in `names` for `kernel`.
pub fn resolve(
    catalog: &Catalog,
    names: &BTreeSet<String>,
    kernel: &Kernel,
    cache_root: &Path,
) -> Result<Resolved> {
    let mut resolved = Resolved::default();
    let mut built_dirs: BTreeMap<PathBuf, Vec<modbuild::BuiltModule>> = BTreeMap::new();
    let mut seen_files = BTreeSet::new();
    for name in names {
        if let Some(source) = catalog.source_of(name) {
            if !built_dirs.contains_key(&source.dir) {
                let headers = kernel.headers.as_deref().ok_or_else(|| {
                    Failure::usage(format!(
                        "kernel {} has no headers to build {name} against; give them with \
                         path:IMAGE,headers=DIR",
                        kernel.spec
                    ))
                })?;
                let built = modbuild::build(&source.dir, &kernel.release, headers, cache_root)?;
                built_dirs.insert(source.dir.clone(), built);
            }
            let built = built_dirs[&source.dir]
                .iter()
                .find(|m| &m.name == name)
                .ok_or_else(|| {
                    Failure::infra(format!(
                        "{}: the build did not produce {name}.ko",
                        source.dir.display()
                    ))
                })?;
            let guest = format!("/modharness/modules/{name}.ko");
            resolved.files.push((guest.clone(), built.path.clone()));
            resolved.plan_modules.insert(name.clone(), vec![guest]);
            continue;
        }
        let tree = kernel
            .modules_dir
            .as_deref()
            .and_then(|dir| Some((dir, modbuild::tree_module(dir, name)?)));
        let Some((dir, files)) = tree else {
            return Err(Failure::usage(format!(
                "no module `{name}` in guest-modules/, --modules dirs or kernel {}",
                kernel.release
            )));
        };
        let mut guest_paths = Vec::new();
        for file in files {
            let rel = file.strip_prefix(dir).unwrap_or(&file).to_string_lossy();
            let rel = rel
                .trim_end_matches(".xz")
                .trim_end_matches(".zst")
                .trim_end_matches(".gz")
                .to_string();
            let guest = format!("/lib/modules/{}/{rel}", kernel.release);
            if seen_files.insert(guest.clone()) {
                resolved.files.push((guest.clone(), file.clone()));
            }
            guest_paths.push(guest);
        }
        resolved.plan_modules.insert(name.clone(), guest_paths);
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn obj_m_lines_declare_modules() {
        let kbuild =
            "obj-m += race_timer_buggy.o\nobj-$(CONFIG_FOO) := a-b.o c.o\nccflags-y := -DX\n";
        assert_eq!(declared_modules(kbuild), ["race_timer_buggy", "a_b", "c"]);
    }

    #[test]
    fn a_user_directory_wins_over_guest_modules() {
        let catalog = Catalog {
            sources: vec![
                ModuleSource {
                    dir: "/g/x".into(),
                    names: vec!["x".into()],
                },
                ModuleSource {
                    dir: "/u/x".into(),
                    names: vec!["x".into()],
                },
            ],
        };
        assert_eq!(catalog.source_of("x").unwrap().dir, Path::new("/u/x"));
    }

    #[test]
    fn a_modules_dir_without_kbuild_is_bad_usage() {
        let dir = std::env::temp_dir().join(format!("mh-empty-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err =
            Catalog::discover(Path::new("/nonexistent"), std::slice::from_ref(&dir)).unwrap_err();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.code, crate::error::EXIT_USAGE);
        assert!(err.message.contains("no Kbuild"), "{}", err.message);
    }
}
