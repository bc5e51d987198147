//! Kernel specs and their acquisition.
//!
//! `debian:RELEASE`, `debian:latest[-FLAVOUR]` and `debian:previous[-FLAVOUR]` (the release
//! before the newest, so a matrix covers the two newest ABIs) come from Debian's packages:
//! `apt-get download` of the unsigned image, the headers and what the headers depend on (their
//! `-common` package and `linux-kbuild-*`), unpacked with `dpkg-deb -x`. `debug:latest`,
//! `debug:RELEASE` (and `debug-NAME:…` for other recipes) are built here from Debian's
//! linux-source and a recipe of `images/` ([`crate::kbuild`]). `path:VMLINUZ[,…]` and `tree:DIR`
//! are kernels the user built. Either way the result is a [`Kernel`]: something QEMU can boot,
//! and optionally headers to build modules against and a modules tree to take modules from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::{cache, run, Error, Result};

/// The default kernel spec: the newest Debian amd64 kernel apt knows.
pub const DEFAULT_SPEC: &str = "debian:latest";

/// A parsed kernel spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSpec {
    /// The newest Debian kernel of a flavour (`amd64`, `cloud-amd64`, `rt-amd64`) when `rank`
    /// is 0 (`debian:latest`), the one before it when 1 (`debian:previous`).
    DebianNewest { flavour: String, rank: usize },
    /// One Debian kernel release, e.g. `6.1.0-54-amd64`.
    Debian { release: String },
    /// A local kernel image, with optional headers (a kbuild-ready tree) and modules tree
    /// (a directory holding `lib/modules/RELEASE`).
    Path {
        image: PathBuf,
        headers: Option<PathBuf>,
        modules: Option<PathBuf>,
    },
    /// A kernel built from recipe `recipe` (`images/RECIPE.config`) and the linux-source of a
    /// Debian release (`None`: the newest amd64 one).
    Recipe {
        recipe: String,
        release: Option<String>,
    },
    /// A kernel tree the user built, in place or with `O=`: its vmlinux (or bzImage), its
    /// modules, and the tree itself as headers.
    Tree { dir: PathBuf },
}

/// Where kernels come from besides apt: the cache, the recipes, and who hears about builds.
pub struct Sources<'a> {
    /// The cache root ([`cache::default_root`]).
    pub cache_root: &'a Path,
    /// The project's `images/` directory, holding the recipes.
    pub recipes: &'a Path,
    /// Told how a recipe build is going (builds take tens of minutes).
    pub observe: crate::kbuild::Observer<'a>,
}

impl KernelSpec {
    /// Parse `debian:…` or `path:…`.
    pub fn parse(spec: &str) -> Result<KernelSpec> {
        let bad = |why: &str| Error::BadSpec {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = spec.strip_prefix("debian:") {
            for (rank, word) in ["latest", "previous"].into_iter().enumerate() {
                let Some(after) = rest.strip_prefix(word) else {
                    continue;
                };
                let flavour = match after.strip_prefix('-') {
                    None if after.is_empty() => "amd64",
                    Some(flavour) if is_safe_name(flavour) => flavour,
                    Some(_) => return Err(bad("the flavour may hold only letters, digits and -")),
                    None => continue,
                };
                return Ok(KernelSpec::DebianNewest {
                    flavour: flavour.to_string(),
                    rank,
                });
            }
            if parse_release(rest).is_none() {
                return Err(bad(
                    "expected debian:latest[-FLAVOUR], debian:previous[-FLAVOUR] or \
                     debian:RELEASE (e.g. debian:6.1.0-54-amd64)",
                ));
            }
            return Ok(KernelSpec::Debian {
                release: rest.to_string(),
            });
        }
        if let Some(rest) = spec.strip_prefix("path:") {
            let mut parts = rest.split(',');
            let image = PathBuf::from(parts.next().unwrap_or_default());
            if image.as_os_str().is_empty() {
                return Err(bad(
                    "path: needs a kernel image, e.g. path:arch/x86/boot/bzImage",
                ));
            }
            let (mut headers, mut modules) = (None, None);
            for part in parts {
                match part.split_once('=') {
                    Some(("headers", dir)) => headers = Some(PathBuf::from(dir)),
                    Some(("modules", dir)) => modules = Some(PathBuf::from(dir)),
                    _ => return Err(bad("after the image, only headers=DIR and modules=DIR")),
                }
            }
            return Ok(KernelSpec::Path {
                image,
                headers,
                modules,
            });
        }
        if let Some(rest) = spec.strip_prefix("tree:") {
            if rest.is_empty() {
                return Err(bad("tree: needs the directory of a built kernel tree"));
            }
            return Ok(KernelSpec::Tree {
                dir: PathBuf::from(rest),
            });
        }
        if let Some((recipe, from)) = spec.split_once(':') {
            if recipe == "debug" || recipe.starts_with("debug-") {
                if !crate::recipe::is_valid_name(recipe) {
                    return Err(bad("a recipe name holds only a-z, 0-9 and -"));
                }
                let release = match from {
                    "latest" => None,
                    release if parse_release(release).is_some() => Some(release.to_string()),
                    _ => {
                        return Err(bad(
                            "expected debug:latest or debug:RELEASE (a Debian release, e.g. \
                             debug:6.12.117+deb12-amd64)",
                        ))
                    }
                };
                return Ok(KernelSpec::Recipe {
                    recipe: recipe.to_string(),
                    release,
                });
            }
        }
        Err(bad("expected debian:…, debug:…, path:… or tree:…"))
    }
}

/// A Debian kernel release split into its ABI and flavour: `6.1.0-54-cloud-amd64` is ABI
/// `6.1.0-54`, flavour `cloud-amd64`; `6.12.117+deb12-amd64` is `6.12.117+deb12`, `amd64`.
pub fn parse_release(release: &str) -> Option<(&str, &str)> {
    let bytes = release.as_bytes();
    // The ABI is digits and dots, then either `-N` or `+debN`.
    let mut i = bytes
        .iter()
        .position(|b| !(b.is_ascii_digit() || *b == b'.'))?;
    if i == 0 {
        return None;
    }
    let tail = &release[i..];
    if let Some(rest) = tail.strip_prefix('+') {
        i += 1 + rest.find('-')?;
    } else {
        let rest = tail.strip_prefix('-')?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        i += 1 + digits;
    }
    let flavour = release[i..].strip_prefix('-')?;
    if !is_safe_name(flavour)
        || !release[..i]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-".contains(&b))
    {
        return None;
    }
    Some((&release[..i], flavour))
}

fn is_safe_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Compare two releases the way a person would: runs of digits as numbers.
pub fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => x
                .parse::<u64>()
                .unwrap_or(0)
                .cmp(&y.parse::<u64>().unwrap_or(0)),
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The `rank`-th newest release of `flavour` among `package_names` (as `apt-cache pkgnames`
/// lists them): 0 is the newest, 1 the one before it.
pub fn newest_release<'a>(
    package_names: impl IntoIterator<Item = &'a str>,
    flavour: &str,
    rank: usize,
) -> Option<String> {
    let mut releases: Vec<&str> = package_names
        .into_iter()
        .filter_map(|name| name.strip_prefix("linux-image-")?.strip_suffix("-unsigned"))
        .filter(|release| parse_release(release).is_some_and(|(_, f)| f == flavour))
        .collect();
    releases.sort_by(|a, b| compare_releases(b, a));
    releases.dedup();
    releases.get(rank).map(|release| release.to_string())
}

/// A kernel ready to boot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Kernel {
    /// The spec it came from, as the user wrote it.
    pub spec: String,
    /// `uname -r` of the kernel.
    pub release: String,
    /// What to give QEMU's `-kernel`: the uncompressed vmlinux when it could be extracted
    /// (booted through its PVH entry, seconds faster under TCG), else the bzImage.
    pub boot_image: PathBuf,
    /// A kbuild-ready headers tree, for out-of-tree module builds.
    pub headers: Option<PathBuf>,
    /// The kernel's modules, `…/lib/modules/RELEASE` (with `modules.dep`).
    pub modules_dir: Option<PathBuf>,
    /// The kernel's `.config`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
}

impl Kernel {
    /// Whether the kernel's configuration sets `option` (e.g. `CONFIG_KASAN`) to `y`; `false`
    /// when the configuration is unknown.
    pub fn has_config(&self, option: &str) -> bool {
        self.config_value(option).as_deref() == Some("y")
    }

    /// The value the kernel's configuration gives `option` (`CONFIG_HZ` → `250`); `None` when
    /// it is unset or the configuration unknown.
    pub fn config_value(&self, option: &str) -> Option<String> {
        let text = fs::read_to_string(self.config.as_ref()?).ok()?;
        let prefix = format!("{option}=");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .map(|value| value.trim_matches('"').to_string())
    }
}

const MANIFEST: &str = "kernel.json";

/// Get the kernel for `spec`, fetching or building it into the cache when needed.
pub fn acquire(spec_text: &str, sources: &Sources) -> Result<Kernel> {
    let cache_root = sources.cache_root;
    match KernelSpec::parse(spec_text)? {
        KernelSpec::DebianNewest { flavour, rank } => {
            let release = newest_debian_release(&flavour, rank, cache_root)?;
            fetch_debian(spec_text, &release, cache_root)
        }
        KernelSpec::Debian { release } => fetch_debian(spec_text, &release, cache_root),
        KernelSpec::Path {
            image,
            headers,
            modules,
        } => crate::local::kernel(spec_text, &image, headers, modules, cache_root),
        KernelSpec::Recipe { recipe, release } => {
            let recipe = crate::recipe::load(sources.recipes, &recipe)?;
            let release = match release {
                Some(release) => release,
                None => newest_debian_release("amd64", 0, cache_root)?,
            };
            let source = crate::kbuild::source_for_release(&release)?;
            crate::kbuild::acquire(spec_text, &recipe, &source, cache_root, sources.observe)
        }
        KernelSpec::Tree { dir } => crate::tree::kernel(spec_text, &dir, cache_root),
    }
}

/// Ask apt which is the `rank`-th newest kernel release of `flavour` (0: the newest). Asking
/// takes most of a second, so the answer is kept until apt's package lists change
/// (`apt-get update`).
pub fn newest_debian_release(flavour: &str, rank: usize, cache_root: &Path) -> Result<String> {
    let lists_stamp = fs::metadata("/var/lib/apt/lists")
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos().to_string());
    let memo = cache_root.join(format!("newest{rank}-{flavour}.txt"));
    if let (Some(stamp), Ok(text)) = (&lists_stamp, fs::read_to_string(&memo)) {
        if let Some((seen, release)) = text.trim().split_once(' ') {
            if seen == stamp && parse_release(release).is_some() {
                return Ok(release.to_string());
            }
        }
    }
    let release = ask_apt_newest(flavour, rank)?;
    if let Some(stamp) = lists_stamp {
        let _ = fs::create_dir_all(cache_root);
        let tmp = memo.with_extension(format!("tmp{}", std::process::id()));
        if fs::write(&tmp, format!("{stamp} {release}\n")).is_ok() {
            let _ = fs::rename(&tmp, &memo);
        }
    }
    Ok(release)
}

fn ask_apt_newest(flavour: &str, rank: usize) -> Result<String> {
    let names = run(
        Command::new("apt-cache").args(["pkgnames", "linux-image-"]),
        "apt-cache pkgnames linux-image-",
    )?;
    newest_release(names.lines(), flavour, rank).ok_or_else(|| {
        let wanted = if rank == 0 { "no" } else { "fewer than two" };
        Error::Other(format!(
            "apt knows {wanted} linux-image-*-{flavour}-unsigned package; run `apt-get update` \
             (or check the flavour)"
        ))
    })
}

/// The kernels already in the cache.
pub fn cached(cache_root: &Path) -> Vec<Kernel> {
    let Ok(entries) = fs::read_dir(cache_root.join("kernels")) else {
        return Vec::new();
    };
    let mut kernels: Vec<Kernel> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read(e.path().join(MANIFEST)).ok())
        .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
        .collect();
    kernels.sort_by(|a, b| compare_releases(&a.release, &b.release));
    kernels
}

fn fetch_debian(spec: &str, release: &str, cache_root: &Path) -> Result<Kernel> {
    if parse_release(release).is_none() {
        return Err(Error::BadSpec {
            spec: spec.into(),
            why: format!("`{release}` is not a Debian kernel release"),
        });
    }
    let entry = cache_root.join("kernels").join(format!("debian-{release}"));
    let dir = cache::get_or_make(&entry, |tmp| unpack_debian(release, tmp))?;
    let mut kernel = debian_kernel(release, &dir);
    kernel.spec = spec.to_string();
    Ok(kernel)
}

/// Where things are in an unpacked Debian kernel entry.
fn debian_kernel(release: &str, dir: &Path) -> Kernel {
    let root = dir.join("root");
    let vmlinux = dir.join("vmlinux");
    Kernel {
        spec: format!("debian:{release}"),
        release: release.to_string(),
        boot_image: if vmlinux.is_file() {
            vmlinux
        } else {
            root.join(format!("boot/vmlinuz-{release}"))
        },
        headers: Some(root.join(format!("usr/src/linux-headers-{release}"))),
        modules_dir: Some(root.join(format!("lib/modules/{release}"))),
        config: Some(root.join(format!("boot/config-{release}"))),
    }
}

fn unpack_debian(release: &str, tmp: &Path) -> Result<()> {
    let debs = tmp.join("debs");
    fs::create_dir_all(&debs).map_err(Error::io(&debs))?;
    let headers_pkg = format!("linux-headers-{release}");
    let mut packages = vec![
        format!("linux-image-{release}-unsigned"),
        headers_pkg.clone(),
    ];
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", &headers_pkg]),
        &format!("apt-cache show {headers_pkg} (is `{release}` a release apt knows? try `apt-get update`)"),
    )?;
    packages.extend(header_dependencies(&show));
    run(
        Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .args(&packages)
            .current_dir(&debs),
        &format!("apt-get download {}", packages.join(" ")),
    )?;
    let root = tmp.join("root");
    for deb in fs::read_dir(&debs).map_err(Error::io(&debs))? {
        let deb = deb.map_err(Error::io(&debs))?.path();
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
            &format!("dpkg-deb -x {}", deb.display()),
        )?;
    }
    fs::remove_dir_all(&debs).map_err(Error::io(&debs))?;
    make_headers_relocatable(&root.join(format!("usr/src/linux-headers-{release}")))?;
    run(
        Command::new("depmod").arg("-b").arg(&root).arg(release),
        "depmod",
    )?;
    let bzimage = root.join(format!("boot/vmlinuz-{release}"));
    if let Some(vmlinux) = crate::local::extract_vmlinux(&bzimage)? {
        let path = tmp.join("vmlinux");
        fs::write(&path, vmlinux).map_err(Error::io(&path))?;
    }
    let kernel = debian_kernel(release, tmp);
    let manifest = Kernel {
        boot_image: PathBuf::new(),
        headers: None,
        modules_dir: None,
        config: None,
        ..kernel
    };
    let path = tmp.join(MANIFEST);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&manifest).expect("serializable"),
    )
    .map_err(Error::io(&path))
}

/// The packages a Debian headers package needs for kbuild, from its `apt-cache show` text:
/// `linux-headers-*-common*` and `linux-kbuild-*`.
pub fn header_dependencies(show: &str) -> Vec<String> {
    let Some(depends) = show.lines().find_map(|l| l.strip_prefix("Depends:")) else {
        return Vec::new();
    };
    depends
        .split([',', '|'])
        .filter_map(|dep| dep.split_whitespace().next())
        .filter(|name| {
            (name.starts_with("linux-headers-") && name.contains("-common"))
                || name.starts_with("linux-kbuild-")
        })
        .map(str::to_string)
        .collect()
}

/// Debian's headers `Makefile` includes the `-common` tree by absolute path
/// (`/usr/src/…`); make it relative, so the unpacked copy works wherever the cache is.
fn make_headers_relocatable(headers: &Path) -> Result<()> {
    let makefile = headers.join("Makefile");
    let text = fs::read_to_string(&makefile).map_err(Error::io(&makefile))?;
    let fixed = text.replace("include /usr/src/", "include ../");
    fs::write(&makefile, fixed).map_err(Error::io(&makefile))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_split_into_abi_and_flavour() {
        assert_eq!(parse_release("6.1.0-54-amd64"), Some(("6.1.0-54", "amd64")));
        assert_eq!(
            parse_release("6.1.0-54-cloud-amd64"),
            Some(("6.1.0-54", "cloud-amd64"))
        );
        assert_eq!(
            parse_release("6.12.117+deb12-rt-amd64"),
            Some(("6.12.117+deb12", "rt-amd64"))
        );
        assert_eq!(parse_release("amd64"), None);
        assert_eq!(parse_release("6.1.0-54"), None);
        assert_eq!(parse_release("6.1.0-54-../../x"), None);
    }

    #[test]
    fn newest_release_orders_numerically_and_keeps_to_the_flavour() {
        let names = [
            "linux-image-6.1.0-9-amd64-unsigned",
            "linux-image-6.1.0-56-amd64-unsigned",
            "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.9+deb12-amd64-unsigned",
            "linux-image-6.12.117+deb12-amd64-unsigned",
            "linux-image-6.12.117+deb12-amd64",
            "linux-image-amd64",
        ];
        assert_eq!(
            newest_release(names, "amd64", 0).as_deref(),
            Some("6.12.117+deb12-amd64")
        );
        assert_eq!(
            newest_release(names, "cloud-amd64", 0).as_deref(),
            Some("6.12.117+deb12-cloud-amd64")
        );
        assert_eq!(newest_release(names, "rt-amd64", 0), None);
    }

    #[test]
    fn previous_release_is_the_second_newest_of_its_flavour() {
        let names = [
            "linux-image-6.12.118+deb12-amd64-unsigned",
            "linux-image-6.12.118+deb12-cloud-amd64-unsigned",
            "linux-image-6.1.0-48-amd64-unsigned",
            "linux-image-6.12.117+deb12-amd64-unsigned",
            "linux-image-6.12.117+deb12-amd64-unsigned",
        ];
        assert_eq!(
            newest_release(names, "amd64", 1).as_deref(),
            Some("6.12.117+deb12-amd64")
        );
        assert_eq!(
            newest_release(names, "amd64", 2).as_deref(),
            Some("6.1.0-48-amd64")
        );
        assert_eq!(newest_release(names, "cloud-amd64", 1), None);
    }

    #[test]
    fn specs_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!(
            KernelSpec::parse("debian:latest").unwrap(),
            KernelSpec::DebianNewest {
                flavour: "amd64".into(),
                rank: 0
            }
        );
        assert_eq!(
            KernelSpec::parse("debian:previous-cloud-amd64").unwrap(),
            KernelSpec::DebianNewest {
                flavour: "cloud-amd64".into(),
                rank: 1
            }
        );
        assert_eq!(
            KernelSpec::parse("debian:latest-rt-amd64").unwrap(),
            KernelSpec::DebianNewest {
                flavour: "rt-amd64".into(),
                rank: 0
            }
        );
        assert_eq!(
            KernelSpec::parse("debian:6.1.0-54-amd64").unwrap(),
            KernelSpec::Debian {
                release: "6.1.0-54-amd64".into()
            }
        );
        assert_eq!(
            KernelSpec::parse("path:/k/bzImage,headers=/h").unwrap(),
            KernelSpec::Path {
                image: "/k/bzImage".into(),
                headers: Some("/h".into()),
                modules: None
            }
        );
        assert_eq!(
            KernelSpec::parse("debug:latest").unwrap(),
            KernelSpec::Recipe {
                recipe: "debug".into(),
                release: None
            }
        );
        assert_eq!(
            KernelSpec::parse("debug-mini:6.12.117+deb12-amd64").unwrap(),
            KernelSpec::Recipe {
                recipe: "debug-mini".into(),
                release: Some("6.12.117+deb12-amd64".into())
            }
        );
        assert_eq!(
            KernelSpec::parse("tree:/src/linux").unwrap(),
            KernelSpec::Tree {
                dir: "/src/linux".into()
            }
        );
        for bad in [
            "ubuntu:22.04",
            "debian:6.1",
            "debian:latest-a/b",
            "debian:previousamd64",
            "debian:previous-",
            "path:",
            "path:x,y=z",
            "tree:",
            "debug:6.12",
            "debug-Big:latest",
        ] {
            let err = KernelSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn header_dependencies_come_from_the_depends_line() {
        let show = "Package: linux-headers-6.1.0-56-rt-amd64\nDepends: linux-headers-6.1.0-56-common-rt (= 6.1.192-2), linux-kbuild-6.1 (>= 6.1.192-2), linux-compiler-gcc-12-x86\n";
        assert_eq!(
            header_dependencies(show),
            ["linux-headers-6.1.0-56-common-rt", "linux-kbuild-6.1"]
        );
    }
}
