//! Kernel build recipes: config fragments kept in the project's top-level `images/` directory.
//!
//! A recipe is `images/NAME.config`: a kernel config fragment whose `#:` lines say where the
//! configuration starts (`#: base x86_64_defconfig kvm_guest.config`, make targets of the
//! kernel tree), which other fragments of the same directory come first
//! (`#: include guest.config`), and roughly how many objects a build compiles
//! (`#: objects 3000`, for the progress percentage). Fragments that are not recipes have no
//! `base` line. After the kernel's own `olddefconfig` every option a fragment sets is checked:
//! one the kernel did not take is an error naming the fragment's line, so a recipe never
//! silently builds something else than it says.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A recipe, read and resolved.
#[derive(Clone, Debug)]
pub struct Recipe {
    /// The recipe's name: `debug` for `images/debug.config`.
    pub name: String,
    /// Make targets that produce the starting configuration, in order.
    pub base: Vec<String>,
    /// Fragment files in merge order: includes first (depth first), the recipe itself last.
    pub fragments: Vec<PathBuf>,
    /// The expected number of compiled objects, when the recipe says.
    pub objects: Option<u32>,
    /// Every option the fragments set, the last setting winning.
    pub options: BTreeMap<String, Setting>,
}

/// One option as a fragment sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// `y`, `m`, `n`, a number or a quoted string, as written.
    pub value: String,
    /// Where: `images/debug.config:12`.
    pub at: String,
}

/// What checking a built configuration against a recipe found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Check {
    /// Options the kernel's configuration did not take: (option, wanted, what it got).
    pub unmet: Vec<(String, Setting, String)>,
    /// Options this kernel's Kconfig does not define (fine across versions: said, not fatal).
    pub unknown: Vec<(String, Setting)>,
}

/// The recipes in `dir` (files with a `#: base` line), by name.
pub fn names(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".config")?.to_string();
            let text = fs::read_to_string(e.path()).ok()?;
            text.lines()
                .any(|l| directive(l).is_some_and(|(key, _)| key == "base"))
                .then_some(name)
        })
        .collect();
    names.sort();
    names
}

/// Whether `name` can name a recipe: lower-case letters, digits and `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Read recipe `name` from `dir`.
pub fn load(dir: &Path, name: &str) -> Result<Recipe> {
    if !is_valid_name(name) {
        return Err(Error::BadSpec {
            spec: name.into(),
            why: "a recipe name holds only a-z, 0-9 and -".into(),
        });
    }
    let file = dir.join(format!("{name}.config"));
    if !file.is_file() {
        let known = names(dir);
        return Err(Error::BadSpec {
            spec: name.into(),
            why: format!(
                "no recipe {} (recipes: {})",
                file.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        });
    }
    let mut recipe = Recipe {
        name: name.into(),
        base: Vec::new(),
        fragments: Vec::new(),
        objects: None,
        options: BTreeMap::new(),
    };
    read_fragment(dir, &file, true, &mut Vec::new(), &mut recipe)?;
    if recipe.base.is_empty() {
        return Err(bad_line(
            &file,
            1,
            "a recipe needs a `#: base TARGET...` line",
        ));
    }
    Ok(recipe)
}

fn read_fragment(
    dir: &Path,
    file: &Path,
    is_recipe: bool,
    stack: &mut Vec<PathBuf>,
    recipe: &mut Recipe,
) -> Result<()> {
    let text = fs::read_to_string(file).map_err(Error::io(file))?;
    stack.push(file.to_path_buf());
    let mut settings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if let Some((key, args)) = directive(line) {
            match key {
                "base" if is_recipe => recipe.base.extend(args.iter().map(|s| s.to_string())),
                "objects" if is_recipe => {
                    recipe.objects =
                        Some(args.first().and_then(|n| n.parse().ok()).ok_or_else(|| {
                            bad_line(file, number, "`#: objects` takes one number")
                        })?)
                }
                "include" => {
                    for name in args {
                        let included = include_path(dir, name).ok_or_else(|| {
                            bad_line(
                                file,
                                number,
                                &format!(
                                    "`{name}`: an include names a .config file beside the recipe"
                                ),
                            )
                        })?;
                        if stack.contains(&included) {
                            return Err(bad_line(
                                file,
                                number,
                                &format!("`{name}` includes itself"),
                            ));
                        }
                        if !included.is_file() {
                            return Err(bad_line(
                                file,
                                number,
                                &format!("no fragment `{name}` in {}", dir.display()),
                            ));
                        }
                        read_fragment(dir, &included, false, stack, recipe)?;
                    }
                }
                other => {
                    return Err(bad_line(
                        file,
                        number,
                        &format!(
                            "unknown directive `#: {other}`; expected {}",
                            if is_recipe {
                                "base, include or objects"
                            } else {
                                "include (base and objects belong in the recipe)"
                            }
                        ),
                    ))
                }
            }
            continue;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (option, value) = parse_setting(line).ok_or_else(|| {
            bad_line(
                file,
                number,
                "expected CONFIG_NAME=VALUE (y, m, n, a number or \"text\")",
            )
        })?;
        settings.push((
            option.to_string(),
            Setting {
                value: value.to_string(),
                at: format!("{}:{number}", display_path(file)),
            },
        ));
    }
    stack.pop();
    recipe.fragments.push(file.to_path_buf());
    recipe.options.extend(settings);
    Ok(())
}

/// `#: key args…` → `(key, args)`.
fn directive(line: &str) -> Option<(&str, Vec<&str>)> {
    let mut words = line.strip_prefix("#:")?.split_whitespace();
    Some((words.next()?, words.collect()))
}

fn include_path(dir: &Path, name: &str) -> Option<PathBuf> {
    let stem = name.strip_suffix(".config")?;
    is_valid_name(stem).then(|| dir.join(name))
}

fn parse_setting(line: &str) -> Option<(&str, &str)> {
    let (option, value) = line.split_once('=')?;
    let name = option.strip_prefix("CONFIG_")?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    let value_ok = matches!(value, "y" | "m" | "n")
        || value.parse::<i64>().is_ok()
        || (value.starts_with("0x") && u64::from_str_radix(&value[2..], 16).is_ok())
        || (value.len() >= 2
            && value.starts_with('"')
            && value.ends_with('"')
            && !value[1..value.len() - 1].contains(['"', '\\']));
    (name_ok && value_ok).then_some((option, value))
}

fn bad_line(file: &Path, line: usize, why: &str) -> Error {
    Error::BadInput(format!("{}:{line}: {why}", display_path(file)))
}

/// `images/debug.config` rather than an absolute path, when the file is in a directory named
/// `images`.
fn display_path(file: &Path) -> String {
    match (file.parent().and_then(Path::file_name), file.file_name()) {
        (Some(dir), Some(name)) => format!("{}/{}", dir.to_string_lossy(), name.to_string_lossy()),
        _ => file.display().to_string(),
    }
}

impl Recipe {
    /// The recipe's identity for the cache: the base targets and the options it sets, so that
    /// comments and the `objects` estimate can change without a rebuild.
    pub fn digest(&self) -> String {
        let mut text = self.base.join(" ");
        for (option, setting) in &self.options {
            text.push_str(&format!("\n{option}={}", setting.value));
        }
        crate::modbuild::hex_digest(&[text.as_bytes()])
    }

    /// Compare a finished `.config` with what the fragments asked; `known` is every option the
    /// kernel's Kconfig defines (without `CONFIG_`).
    pub fn check(&self, config: &str, known: &HashSet<String>) -> Check {
        let mut got: BTreeMap<&str, &str> = BTreeMap::new();
        for line in config.lines() {
            if let Some((option, value)) = line.split_once('=') {
                got.insert(option, value);
            } else if let Some(option) = line
                .strip_prefix("# ")
                .and_then(|l| l.strip_suffix(" is not set"))
            {
                got.insert(option, "n");
            }
        }
        let mut check = Check::default();
        for (option, setting) in &self.options {
            if !known.contains(&option["CONFIG_".len()..]) {
                check.unknown.push((option.clone(), setting.clone()));
                continue;
            }
            let actual = got.get(option.as_str()).copied().unwrap_or("n");
            if actual != setting.value {
                check
                    .unmet
                    .push((option.clone(), setting.clone(), actual.to_string()));
            }
        }
        check
    }
}

/// Every option a kernel tree's Kconfig files define (`config FOO` / `menuconfig FOO`).
pub fn kconfig_symbols(source: &Path) -> Result<HashSet<String>> {
    let mut symbols = HashSet::new();
    let mut dirs = vec![source.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let entry = entry.map_err(Error::io(&dir))?;
            let path = entry.path();
            let file_type = entry.file_type().map_err(Error::io(&path))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if file_type.is_dir() && !name.starts_with('.') && name != "Documentation" {
                dirs.push(path);
            } else if file_type.is_file() && name.starts_with("Kconfig") {
                let text = fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines() {
                    let mut words = line.split_whitespace();
                    if let (Some("config" | "menuconfig"), Some(symbol)) =
                        (words.next(), words.next())
                    {
                        symbols.insert(symbol.to_string());
                    }
                }
            }
        }
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_recipe_resolves_includes_first_and_its_own_settings_win() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "guest.config", "CONFIG_A=y\nCONFIG_B=m\n");
        write(
            dir.path(),
            "debug.config",
            "# about\n#: base x86_64_defconfig kvm_guest.config\n#: include guest.config\n#: objects 1200\nCONFIG_B=y\nCONFIG_S=\"-x\"\n",
        );
        write(dir.path(), "lonely.config", "CONFIG_C=y\n");
        let recipe = load(dir.path(), "debug").unwrap();
        assert_eq!(recipe.base, ["x86_64_defconfig", "kvm_guest.config"]);
        assert_eq!(recipe.objects, Some(1200));
        assert_eq!(recipe.fragments.len(), 2);
        assert!(recipe.fragments[0].ends_with("guest.config"));
        assert_eq!(recipe.options["CONFIG_B"].value, "y");
        assert!(
            recipe.options["CONFIG_B"].at.ends_with("debug.config:5"),
            "{:?}",
            recipe.options
        );
        assert_eq!(names(dir.path()), ["debug"]);
        let digest = recipe.digest();
        write(dir.path(), "debug.config", "# other words\n#: base x86_64_defconfig kvm_guest.config\n#: include guest.config\n#: objects 1300\nCONFIG_B=y\nCONFIG_S=\"-x\"\n");
        assert_eq!(
            load(dir.path(), "debug").unwrap().digest(),
            digest,
            "comments change nothing"
        );
        write(dir.path(), "debug.config", "#: base x86_64_defconfig kvm_guest.config\n#: include guest.config\nCONFIG_B=m\nCONFIG_S=\"-x\"\n");
        assert_ne!(load(dir.path(), "debug").unwrap().digest(), digest);
    }

    #[test]
    fn recipe_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        for (text, line, says) in [
            (
                "#: base allnoconfig\nCONFIG_X = y\n",
                2,
                "expected CONFIG_NAME=VALUE",
            ),
            (
                "#: base allnoconfig\n#: include ../etc/passwd\n",
                2,
                "beside the recipe",
            ),
            (
                "#: base allnoconfig\n#: include none.config\n",
                2,
                "no fragment",
            ),
            (
                "#: base allnoconfig\n#: frobnicate\n",
                2,
                "unknown directive",
            ),
            (
                "#: base allnoconfig\n#: include r.config\n",
                2,
                "includes itself",
            ),
            ("CONFIG_X=y\n", 1, "needs a `#: base"),
            (
                "#: base allnoconfig\nCONFIG_X=\"a\"b\"\n",
                2,
                "expected CONFIG_NAME=VALUE",
            ),
        ] {
            write(dir.path(), "r.config", text);
            let err = load(dir.path(), "r").unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{name}/r.config:{line}: ")),
                "{err}"
            );
            assert!(err.contains(says), "{err}");
        }
        let err = load(dir.path(), "Nope/../x").unwrap_err().to_string();
        assert!(err.contains("a-z, 0-9"), "{err}");
        let err = load(dir.path(), "absent").unwrap_err().to_string();
        assert!(err.contains("recipes: r"), "{err}");
    }

    #[test]
    fn the_check_reports_what_the_kernel_did_not_take() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.config",
            "#: base allnoconfig\nCONFIG_A=y\nCONFIG_B=n\nCONFIG_C=m\nCONFIG_GONE=y\nCONFIG_D=n\n",
        );
        let recipe = load(dir.path(), "r").unwrap();
        let known: HashSet<String> = ["A", "B", "C", "D"].map(String::from).into();
        let config = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n";
        let check = recipe.check(config, &known);
        let unmet: Vec<_> = check
            .unmet
            .iter()
            .map(|(o, s, got)| (o.as_str(), s.value.as_str(), got.as_str()))
            .collect();
        assert_eq!(unmet, [("CONFIG_B", "n", "y"), ("CONFIG_C", "m", "n")]);
        assert_eq!(check.unknown.len(), 1);
        assert_eq!(check.unknown[0].0, "CONFIG_GONE");
    }

    #[test]
    fn the_bundled_recipes_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images");
        let found = names(&dir);
        assert!(found.contains(&"debug".to_string()), "{found:?}");
        for name in found {
            let recipe = load(&dir, &name).unwrap();
            assert!(recipe.options.contains_key("CONFIG_KASAN"), "{name}");
            assert!(
                recipe.options.contains_key("CONFIG_DEBUG_KMEMLEAK"),
                "{name}"
            );
        }
    }
}
