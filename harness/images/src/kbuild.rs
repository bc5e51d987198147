//! Kernels built here from Debian's `linux-source` and a recipe of `images/` (the debug kernel).
//!
//! A build takes tens of minutes, so it works in a directory of its own under `builds/` that
//! survives an interrupted or failed run: the next run finds the source unpacked and the objects
//! compiled, and make carries on. Only a finished build becomes a kernel entry (published with
//! one rename, like every cache entry); the work directory is removed then. The entry holds the
//! vmlinux (booted through PVH), the modules tree, a kbuild-ready headers tree made by the
//! kernel's own `install-extmod-build`, System.map, the configuration and the full build log.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::kernel::{parse_release, Kernel};
use crate::recipe::{self, Recipe};
use crate::{cache, run, Error, Result};

/// Debian's source package of a kernel release: `linux-source-6.12` at `6.12.117-1~deb12u1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePackage {
    /// The binary package holding the source tarball.
    pub name: String,
    /// Its version, the same as the kernel image's.
    pub version: String,
}

/// Where a build is, for a progress display.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// Downloading the source package.
    Fetching { package: String },
    /// Unpacking the source tarball.
    Unpacking,
    /// Making the configuration and checking it against the recipe.
    Configuring,
    /// Compiling: objects compiled so far (this run and earlier ones), and how many a build
    /// of this recipe compiled last time (or the recipe's estimate).
    Compiling { done: u32, expected: Option<u32> },
    /// Installing modules and headers into the entry.
    Installing,
}

/// What a build reports as it goes.
pub type Observer<'a> = &'a (dyn Fn(&Stage, Duration) + Sync);

const SOURCE_MARK: &str = ".modharness-unpacked";
const CONFIG_MARK: &str = ".modharness-recipe";
const MANIFEST: &str = "kernel.json";
/// The kernel's own script that copies what out-of-tree module builds need.
const EXTMOD_HEADERS: &str = "scripts/package/install-extmod-build";

/// The source package for a Debian kernel release, as apt knows it.
pub fn source_for_release(release: &str) -> Result<SourcePackage> {
    let (abi, _) = parse_release(release).ok_or_else(|| Error::BadSpec {
        spec: release.into(),
        why: "not a Debian kernel release".into(),
    })?;
    let series: Vec<&str> = abi.split(['.', '-', '+']).take(2).collect();
    let name = format!("linux-source-{}", series.join("."));
    let image = format!("linux-image-{release}-unsigned");
    let show = run(
        Command::new("apt-cache").args(["show", "--no-all-versions", &image]),
        &format!(
            "apt-cache show {image} (is `{release}` a release apt knows? try `apt-get update`)"
        ),
    )?;
    let version = show
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| Error::Other(format!("apt-cache show {image} names no version")))?;
    let wanted = format!("{name}={version}");
    let madison = run(
        Command::new("apt-cache").args(["madison", &name]),
        &format!("apt-cache madison {name}"),
    )?;
    if !madison
        .lines()
        .any(|l| l.split('|').nth(1).is_some_and(|v| v.trim() == version))
    {
        let offered: Vec<&str> = madison
            .lines()
            .filter_map(|l| l.split('|').nth(1).map(str::trim))
            .collect();
        return Err(Error::Other(format!(
            "apt offers no {wanted} to build {release} from (it has: {}); pick a release whose \
             source is there, or run `apt-get update`",
            if offered.is_empty() {
                "none".into()
            } else {
                offered.join(", ")
            }
        )));
    }
    Ok(SourcePackage { name, version })
}

/// The cache entry name of a recipe build: recipe, source version and a digest of everything
/// that changes the result (recipe files, source version, compiler).
pub fn entry_name(recipe: &Recipe, source: &SourcePackage) -> Result<String> {
    let compiler = run(Command::new("gcc").arg("--version"), "gcc --version")?;
    let digest = crate::modbuild::hex_digest(&[
        recipe.digest().as_bytes(),
        source.name.as_bytes(),
        source.version.as_bytes(),
        compiler.lines().next().unwrap_or_default().as_bytes(),
    ]);
    let version = cache::safe_component(&source.version);
    Ok(format!("{}-{version}-{}", recipe.name, &digest[..12]))
}

/// The kernel built from `recipe` and `source`, built first when the cache lacks it.
pub fn acquire(
    spec: &str,
    recipe: &Recipe,
    source: &SourcePackage,
    cache_root: &Path,
    observe: Observer,
) -> Result<Kernel> {
    let name = entry_name(recipe, source)?;
    let entry = cache_root.join("kernels").join(&name);
    let work = cache_root.join("builds").join(&name);
    let dir = cache::get_or_make(&entry, |tmp| {
        sweep_superseded(cache_root, &recipe.name, &name);
        let started = Instant::now();
        let tell = |stage: &Stage| observe(stage, started.elapsed());
        let src = unpack_source(&work, source, &tell)?;
        // Checked before a build of many minutes, not after it.
        if !src.join(EXTMOD_HEADERS).is_file() {
            return Err(Error::Other(format!(
                "{}={} has no {EXTMOD_HEADERS}, with which newer kernels make the headers \
                 tree --modules builds need: build a newer release (e.g. --from debian:latest)",
                source.name, source.version
            )));
        }
        let out = work.join("out");
        configure(&src, &out, recipe, &name, &work, &tell)?;
        let compiled = compile(&src, &out, recipe, &work, cache_root, &tell)?;
        // Written by the build (`make kernelrelease` before it ignores CONFIG_LOCALVERSION).
        let release_file = out.join("include/config/kernel.release");
        let release = fs::read_to_string(&release_file).map_err(Error::io(&release_file))?;
        let release = release.trim();
        tell(&Stage::Installing);
        install(&src, &out, &work, tmp, release)?;
        write_manifest(tmp, spec, release)?;
        let _ = fs::write(objects_memo(cache_root, &recipe.name), compiled.to_string());
        Ok(())
    })?;
    // The work directory is the size of a kernel build; a finished entry no longer needs it.
    let _ = fs::remove_dir_all(&work);
    let mut kernel = entry_kernel(&dir)?;
    kernel.spec = spec.to_string();
    Ok(kernel)
}

/// Remove the work directories of this recipe's earlier versions (a recipe or source changed
/// since): each is a kernel build's size, and no later run would resume it. One that another
/// run is building (its entry locked) is left alone.
fn sweep_superseded(cache_root: &Path, recipe: &str, current: &str) {
    let builds = cache_root.join("builds");
    let Ok(entries) = fs::read_dir(&builds) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let same_recipe = name
            .strip_prefix(recipe)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        if name == current || !same_recipe || !entry.path().is_dir() {
            continue;
        }
        if let Ok(Some(_held)) = cache::try_lock(&cache_root.join("kernels").join(&name)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The kernel of a finished entry.
fn entry_kernel(dir: &Path) -> Result<Kernel> {
    let path = dir.join(MANIFEST);
    let bytes = fs::read(&path).map_err(Error::io(&path))?;
    let manifest: Kernel = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    Ok(Kernel {
        boot_image: dir.join("vmlinux"),
        headers: Some(dir.join("headers")),
        modules_dir: Some(dir.join("root/lib/modules").join(&manifest.release)),
        config: Some(dir.join("config")),
        ..manifest
    })
}

fn write_manifest(dir: &Path, spec: &str, release: &str) -> Result<()> {
    let manifest = Kernel {
        spec: spec.to_string(),
        release: release.to_string(),
        boot_image: PathBuf::new(),
        headers: None,
        modules_dir: None,
        config: None,
    };
    let path = dir.join(MANIFEST);
    fs::write(
        &path,
        serde_json::to_vec_pretty(&manifest).expect("serializable"),
    )
    .map_err(Error::io(&path))
}

fn objects_memo(cache_root: &Path, recipe: &str) -> PathBuf {
    cache_root.join("builds").join(format!("{recipe}.objects"))
}

/// `work/src`, unpacked from the source package unless an earlier run finished that.
fn unpack_source(work: &Path, source: &SourcePackage, tell: &dyn Fn(&Stage)) -> Result<PathBuf> {
    let src = work.join("src");
    if src.join(SOURCE_MARK).is_file() {
        return Ok(src);
    }
    let download = work.join("download");
    for dir in [&src, &download] {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    tell(&Stage::Fetching {
        package: format!("{}={}", source.name, source.version),
    });
    run(
        Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .arg(format!("{}={}", source.name, source.version))
            .current_dir(&download),
        &format!("apt-get download {}={}", source.name, source.version),
    )?;
    let deb = fs::read_dir(&download)
        .map_err(Error::io(&download))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| Error::Other(format!("apt-get download {} left no .deb", source.name)))?;
    tell(&Stage::Unpacking);
    let tarball = format!("./usr/src/{}.tar.xz", source.name);
    run(
        Command::new("bash")
            .arg("-c")
            .arg(
                "set -o pipefail; dpkg-deb --fsys-tarfile \"$1\" | tar -x -O \"$2\" \
                 | xz -d -T0 | tar -x -C \"$3\" --strip-components=1",
            )
            .arg("bash")
            .arg(&deb)
            .arg(&tarball)
            .arg(&src),
        &format!("unpacking {tarball} from {}", deb.display()),
    )?;
    if !src.join("Makefile").is_file() {
        return Err(Error::Other(format!(
            "{} held no kernel tree",
            deb.display()
        )));
    }
    fs::remove_dir_all(&download).map_err(Error::io(&download))?;
    fs::write(src.join(SOURCE_MARK), &source.version).map_err(Error::io(&src))?;
    Ok(src)
}

fn make(src: &Path, out: &Path) -> Command {
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(src)
        .arg(format!("O={}", out.display()))
        .arg("ARCH=x86_64");
    make
}

/// Configure `out` from the recipe unless it already is (a resumed build), and check every
/// option took. The release gets the recipe's name and digest, so two recipes never share
/// module builds.
fn configure(
    src: &Path,
    out: &Path,
    recipe: &Recipe,
    entry: &str,
    work: &Path,
    tell: &dyn Fn(&Stage),
) -> Result<()> {
    tell(&Stage::Configuring);
    let mark = out.join(CONFIG_MARK);
    if fs::read_to_string(&mark).ok().as_deref() != Some(entry) {
        fs::create_dir_all(out).map_err(Error::io(out))?;
        run(
            make(src, out).args(&recipe.base),
            &format!("make {}", recipe.base.join(" ")),
        )?;
        let suffix = entry.rsplit('-').next().unwrap_or_default();
        let local = work.join("localversion.config");
        fs::write(
            &local,
            format!(
                "CONFIG_LOCALVERSION=\"-{}-{suffix}\"\nCONFIG_LOCALVERSION_AUTO=n\n",
                recipe.name
            ),
        )
        .map_err(Error::io(&local))?;
        run(
            Command::new(src.join("scripts/kconfig/merge_config.sh"))
                .arg("-m")
                .arg("-O")
                .arg(out)
                .arg(out.join(".config"))
                .args(&recipe.fragments)
                .arg(&local)
                .current_dir(src),
            "merging the recipe's fragments",
        )?;
        run(make(src, out).arg("olddefconfig"), "make olddefconfig")?;
        let config_path = out.join(".config");
        let config = fs::read_to_string(&config_path).map_err(Error::io(&config_path))?;
        let check = recipe.check(&config, &recipe::kconfig_symbols(src)?);
        if !check.unmet.is_empty() {
            let lines: Vec<String> = check
                .unmet
                .iter()
                .map(|(option, want, got)| {
                    format!("{}: {option}={} did not take (the kernel chose {got}: a dependency is missing)", want.at, want.value)
                })
                .collect();
            return Err(Error::BadInput(lines.join("\n")));
        }
        let mut log = open_log(work)?;
        for (option, setting) in &check.unknown {
            let _ = writeln!(
                log,
                "{}: {option} is not in this kernel's Kconfig (ignored)",
                setting.at
            );
        }
        fs::write(&mark, entry).map_err(Error::io(&mark))?;
    }
    Ok(())
}

fn open_log(work: &Path) -> Result<File> {
    let path = work.join("build.log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(Error::io(&path))
}

/// `make bzImage modules` with every line in the work directory's build.log; returns how many
/// objects the build compiled in all.
fn compile(
    src: &Path,
    out: &Path,
    recipe: &Recipe,
    work: &Path,
    cache_root: &Path,
    tell: &dyn Fn(&Stage),
) -> Result<u32> {
    let expected = fs::read_to_string(objects_memo(cache_root, &recipe.name))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .or(recipe.objects);
    // A resumed build starts from what earlier runs compiled.
    let mut done = count_objects(out);
    tell(&Stage::Compiling { done, expected });
    let log_path = work.join("build.log");
    let mut log = open_log(work)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut child = make(src, out)
        .arg(format!("-j{jobs}"))
        .args(["bzImage", "modules"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log.try_clone().map_err(Error::io(&log_path))?)
        .spawn()
        .map_err(|e| Error::Other(format!("could not start make: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let mut last_told = Instant::now();
    for line in BufReader::new(stdout).split(b'\n') {
        let line = line.map_err(Error::io(&log_path))?;
        let _ = log.write_all(&line);
        let _ = log.write_all(b"\n");
        if is_compile_line(&line) {
            done += 1;
            if last_told.elapsed() >= Duration::from_millis(500) {
                tell(&Stage::Compiling { done, expected });
                last_told = Instant::now();
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| Error::Other(format!("make: {e}")))?;
    if !status.success() {
        return Err(Error::Command {
            what: format!("building recipe {} ({status})", recipe.name),
            output: format!(
                "{}\n(the full log: {}; run again to resume the build)",
                tail(&log_path, 40),
                log_path.display()
            ),
        });
    }
    Ok(done)
}

/// A kbuild line that compiles or assembles one object: `  CC      kernel/fork.o`,
/// `  CC [M]  drivers/net/e1000/e1000_main.o`, `  AS      arch/x86/entry/entry_64.o`.
fn is_compile_line(line: &[u8]) -> bool {
    line.starts_with(b"  CC ") || line.starts_with(b"  AS ")
}

/// How many objects an output tree holds already (for a resumed build's progress).
fn count_objects(out: &Path) -> u32 {
    let mut count = 0;
    let mut dirs = vec![out.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            match entry.file_type() {
                Ok(t) if t.is_dir() && name != "scripts" && name != "tools" => {
                    dirs.push(entry.path())
                }
                Ok(t) if t.is_file() && name.ends_with(".o") && !name.ends_with(".mod.o") => {
                    count += 1
                }
                _ => {}
            }
        }
    }
    count
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Fill the entry `tmp`: vmlinux, bzImage, System.map, config, modules, headers, build.log.
fn install(src: &Path, out: &Path, work: &Path, tmp: &Path, release: &str) -> Result<()> {
    for (from, to) in [
        ("vmlinux", "vmlinux"),
        ("arch/x86/boot/bzImage", "bzImage"),
        ("System.map", "System.map"),
        (".config", "config"),
    ] {
        let from = out.join(from);
        fs::copy(&from, tmp.join(to)).map_err(Error::io(&from))?;
    }
    let root = tmp.join("root");
    run(
        make(src, out)
            .arg("modules_install")
            .arg(format!("INSTALL_MOD_PATH={}", root.display()))
            .arg("INSTALL_MOD_STRIP=1"),
        "make modules_install",
    )?;
    // `build` and `source` point into the work directory, which goes away.
    let modules = root.join("lib/modules").join(release);
    for link in ["build", "source"] {
        let _ = fs::remove_file(modules.join(link));
    }
    let headers = tmp.join("headers");
    run(
        Command::new("sh")
            .arg(src.join(EXTMOD_HEADERS))
            .arg(&headers)
            .current_dir(out)
            .env("srctree", src)
            .env("SRCARCH", "x86")
            .env("CC", "gcc")
            .env("HOSTCC", "gcc")
            .env("MAKE", "make"),
        "install-extmod-build (the headers tree for out-of-tree modules)",
    )?;
    let log = work.join("build.log");
    fs::copy(&log, tmp.join("build.log")).map_err(Error::io(&log))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_recipes_earlier_builds_are_swept() {
        let cache = tempfile::tempdir().unwrap();
        let builds = cache.path().join("builds");
        for name in [
            "debug-6.12.1-aaa",
            "debug-6.12.1-bbb",
            "debug-mini-6.12.1-ccc",
            "debug-6.12.1-held",
        ] {
            fs::create_dir_all(builds.join(name)).unwrap();
        }
        let _held = cache::lock(&cache.path().join("kernels/debug-6.12.1-held")).unwrap();
        let cache_root = cache.path().to_path_buf();
        std::thread::spawn(move || sweep_superseded(&cache_root, "debug", "debug-6.12.1-bbb"))
            .join()
            .unwrap();
        let left: std::collections::BTreeSet<String> = fs::read_dir(&builds)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            [
                "debug-6.12.1-bbb",
                "debug-6.12.1-held",
                "debug-mini-6.12.1-ccc"
            ]
            .map(String::from)
            .into()
        );
    }

    #[test]
    fn compile_lines_are_objects_and_nothing_else() {
        assert!(is_compile_line(b"  CC      kernel/fork.o"));
        assert!(is_compile_line(b"  CC [M]  drivers/net/e1000/e1000_main.o"));
        assert!(is_compile_line(b"  AS      arch/x86/entry/entry_64.o"));
        assert!(!is_compile_line(b"  HOSTCC  scripts/basic/fixdep"));
        assert!(!is_compile_line(b"  LD [M]  drivers/net/e1000/e1000.ko"));
        assert!(!is_compile_line(b"make[2]: Entering directory"));
    }

    #[test]
    fn a_resumed_build_counts_the_objects_already_there() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "kernel/fork.o",
            "kernel/x.mod.o",
            "scripts/mod/modpost.o",
            "mm/slub.o",
            "mm/slub.c",
        ] {
            let path = dir.path().join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
        assert_eq!(count_objects(dir.path()), 2);
    }
}
