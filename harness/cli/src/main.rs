//! The `modharness` command line: a thin layer over the engine in this crate's library.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use modharness::engine::{self, AccelChoice, Progress, RunOptions};
use modharness::error::{Failure, EXIT_INFRA};
use modharness::{build_view, catalog, home, matrix};
use modharness_images::{cache, kernel};
use modharness_report as report;

#[derive(Parser)]
#[command(
    name = "modharness",
    version,
    about = "Boot real kernels in QEMU, load and unload modules under stress, report oopses, hangs and leaks.",
    after_help = "Examples:\n  modharness run                          # the default suite on the newest Debian kernel\n  modharness run smoke --kernel debian:6.1.0-54-amd64\n  modharness run my.yaml --modules ~/src/mydriver\n  modharness triage console.log --json\n\nExit codes: 0 all expectations met, 1 a scenario failed, 2 bad usage or input, 3 infrastructure error."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios on kernels and write report.json, junit.xml, report.html and console logs.
    #[command(
        after_help = "Examples:\n  modharness run                                   # every scenario in scenarios/, newest Debian kernel\n  modharness run smoke timer-race --kernel debian:latest --kernel debian:6.1.0-54-amd64\n  modharness run my.yaml --modules ~/src/mydriver --out /tmp/r\n  modharness run smoke --kernel path:arch/x86/boot/bzImage,headers=.,modules=/tmp/modroot"
    )]
    Run(RunArgs),
    /// Run a kernel matrix (kernels × scenarios, ci/matrix.yaml by default), or one shard of it,
    /// and compare it with a baseline report.
    #[command(
        after_help = "Examples:\n  modharness matrix                                   # every cell of ci/matrix.yaml\n  modharness matrix --shard 2/4 --out shard2          # this CI job's quarter\n  modharness matrix --baseline last-night/report.json # label bugs new / still / fixed\n\nExit codes: 0 nothing new failed, 1 a new failure (with --baseline: a scenario that did not fail in the baseline, or a new unexpected bug; without: any failed scenario), 2 bad input, 3 infrastructure error."
    )]
    Matrix(MatrixArgs),
    /// Find crashes in console logs (files, or - for standard input).
    #[command(
        after_help = "Examples:\n  modharness triage modharness-out/latest/logs/*/*.console.log\n  dmesg | modharness triage - --json\n\nExit 0 when nothing was found, 1 when something was."
    )]
    Triage {
        /// Log files; - reads standard input.
        #[arg(default_value = "-")]
        logs: Vec<PathBuf>,
        /// Print {"findings": [...]} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check scenario files without running anything.
    #[command(
        after_help = "Examples:\n  modharness validate scenarios/*.yaml\n  modharness validate smoke"
    )]
    Validate {
        /// Scenario files or names.
        #[arg(required = true)]
        scenarios: Vec<String>,
        /// Module source directories whose modules the scenarios may name.
        #[arg(long = "modules", value_name = "DIR")]
        module_dirs: Vec<PathBuf>,
    },
    /// List bundled scenarios, cached kernels or available modules.
    #[command(
        after_help = "Examples:\n  modharness list\n  modharness list kernels\n  modharness list modules --modules ~/src/mydriver"
    )]
    List {
        #[arg(value_enum, default_value = "scenarios")]
        what: ListWhat,
        #[arg(long = "modules", value_name = "DIR")]
        module_dirs: Vec<PathBuf>,
    },
    /// Fetch and list kernels in the cache.
    #[command(subcommand)]
    Images(ImagesCommand),
    /// Combine reports (e.g. CI shards or kernels run separately).
    #[command(subcommand)]
    Report(ReportCommand),
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Merge report.json files into one report.json, junit.xml and report.html.
    #[command(
        after_help = "Examples:\n  modharness report merge --out all shard1/report.json shard2/report.json"
    )]
    Merge {
        /// Where the merged report goes.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The reports to merge.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// A previous night's report.json: label bugs new, still or fixed; the exit code then
        /// follows `matrix`'s rule (1 only for new failures).
        #[arg(long, value_name = "REPORT_JSON")]
        baseline: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ListWhat {
    Scenarios,
    Kernels,
    Modules,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Fetch a kernel into the cache.
    #[command(
        after_help = "Examples:\n  modharness images fetch debian:latest\n  modharness images fetch debian:6.1.0-54-amd64\n  modharness images fetch debian:latest-rt-amd64\n  modharness images fetch debian:latest --debug-symbols   # + file:line on kernel frames"
    )]
    Fetch {
        spec: String,
        /// Also fetch the kernel's debug vmlinux (Debian's -dbg package, ~1 GB download), so
        /// findings get file:line on kernel frames too.
        #[arg(long)]
        debug_symbols: bool,
    },
    /// Build a kernel from a recipe of images/ (debug: KASAN, kmemleak, lockdep, ODEBUG) and
    /// Debian's linux-source of a release; it becomes the kernel spec RECIPE:latest or
    /// RECIPE:RELEASE. Tens of minutes; an interrupted build resumes.
    #[command(
        after_help = "Examples:\n  modharness images build debug                      # debug:latest\n  modharness images build debug --from debian:6.1.0-54-amd64\n  modharness images build debug-mini                 # the small recipe CI builds"
    )]
    Build {
        /// The recipe: images/RECIPE.config.
        recipe: String,
        /// Whose source to build: a debian: spec (default debian:latest).
        #[arg(long, value_name = "SPEC", default_value = kernel::DEFAULT_SPEC)]
        from: String,
    },
    /// List the cached kernels, and the recipes images build knows.
    List,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Scenario files or names from scenarios/; none runs the default suite (all of them).
    scenarios: Vec<String>,
    /// Kernel spec: debian:latest (default), debian:latest-FLAVOUR, debian:RELEASE,
    /// debug:latest, debug:RELEASE (built first when missing: see `images build`),
    /// path:VMLINUZ[,headers=DIR][,modules=DIR], tree:DIR. Repeat for several kernels.
    #[arg(long = "kernel", value_name = "SPEC")]
    kernels: Vec<String>,
    /// A module source directory (Kbuild or Makefile with obj-m); its modules become loadable
    /// by name. Repeatable.
    #[arg(long = "modules", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
    /// Output directory (default: a new directory under ./modharness-out/, linked as latest).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Accelerator: auto boots the kernel under KVM and TCG at once and keeps KVM only when its
    /// agent is up first (remembered for a day); a KVM guest that does not boot falls back to TCG.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
    /// Scenarios to run at once, each in its own VM (each VM takes its `cpus` host threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

#[derive(clap::Args)]
struct MatrixArgs {
    /// The matrix file (default: ci/matrix.yaml of the project).
    #[arg(long, value_name = "FILE")]
    matrix: Option<PathBuf>,
    /// Run only shard I of N, split evenly by expected cost (the same split in every job).
    #[arg(long, value_name = "I/N", value_parser = matrix::parse_shard)]
    shard: Option<(u32, u32)>,
    /// VMs at once, over all kernels (bounded by the host's cores and memory).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Output directory (default: a new directory under ./modharness-out/, linked as latest).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// A previous night's report.json: bugs are labelled new, still or fixed, and the exit code
    /// counts only new failures.
    #[arg(long, value_name = "REPORT_JSON")]
    baseline: Option<PathBuf>,
    /// A module source directory whose modules the scenarios may load. Repeatable.
    #[arg(long = "modules", value_name = "DIR")]
    module_dirs: Vec<PathBuf>,
    /// Accelerator, as for `run`.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

impl From<AccelArg> for AccelChoice {
    fn from(arg: AccelArg) -> AccelChoice {
        match arg {
            AccelArg::Auto => AccelChoice::Auto,
            AccelArg::Kvm => AccelChoice::Kvm,
            AccelArg::Tcg => AccelChoice::Tcg,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Run(args) => run(args),
        Command::Matrix(args) => run_matrix(args),
        Command::Triage { logs, json } => triage(&logs, json),
        Command::Validate {
            scenarios,
            module_dirs,
        } => validate(&scenarios, &module_dirs),
        Command::List { what, module_dirs } => list(what, &module_dirs),
        Command::Images(command) => images(command),
        Command::Report(ReportCommand::Merge {
            out,
            reports,
            baseline,
        }) => merge_reports(&out, &reports, baseline.as_deref()),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("modharness: {failure}");
            ExitCode::from(failure.code as u8)
        }
    }
}

fn scenario_files(args: &[String], home: &Path) -> Result<Vec<PathBuf>, Failure> {
    let dir = home.join("scenarios");
    if args.is_empty() {
        // The default suite leaves out the long scenarios; naming one runs it.
        return matrix::default_suite(home);
    }
    args.iter()
        .map(|a| modharness_scenario::find_scenario(a, &dir).map_err(Failure::from))
        .collect()
}

/// `YYYYmmdd-HHMMSS` in UTC, plus the pid so two runs in one second differ.
fn chrono_like_stamp() -> String {
    let now = report::rfc3339_utc(std::time::SystemTime::now());
    let digits: String = now
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit())
        .collect();
    format!("{}-{}-{}", &digits[..8], &digits[8..], std::process::id())
}

fn run(args: RunArgs) -> Result<u8, Failure> {
    let home = home::project_home();
    let scenarios = scenario_files(&args.scenarios, &home)?;
    // Validate before creating anything.
    engine::load_scenarios(&scenarios)?;
    let kernels = if args.kernels.is_empty() {
        vec![kernel::DEFAULT_SPEC.to_string()]
    } else {
        args.kernels
    };
    for spec in &kernels {
        kernel::KernelSpec::parse(spec)?;
    }
    // Created by the engine once every input checked out: bad input writes nothing.
    let opts = run_options(
        RunOptions::every_pair(&kernels, &scenarios),
        args.module_dirs,
        args.out,
        args.accel,
        args.jobs,
    );
    let out_dir = opts.out_dir.clone();
    let mut report = execute(&opts)?;
    report.collect_bugs();
    report
        .write_all(&out_dir)
        .map_err(|e| Failure::infra(format!("{}: {e}", out_dir.display())))?;
    println!("{}", report.summary());
    println!("report: {}", out_dir.join(report::REPORT_JSON).display());
    let statuses: Vec<report::Status> = report
        .runs
        .iter()
        .flat_map(|r| r.scenarios.iter().map(|s| s.status))
        .collect();
    Ok(exit_code(&statuses))
}

/// The engine's options for `cells`, from the flags `run` and `matrix` share. Without `--out`,
/// a new directory under ./modharness-out/, linked as `latest`.
fn run_options(
    cells: Vec<modharness_scenario::KernelCells>,
    module_dirs: Vec<PathBuf>,
    out: Option<PathBuf>,
    accel: AccelArg,
    jobs: u16,
) -> RunOptions {
    let link_latest = out.is_none();
    RunOptions {
        cells,
        module_dirs,
        out_dir: out.unwrap_or_else(|| PathBuf::from("modharness-out").join(chrono_like_stamp())),
        link_latest,
        accel: accel.into(),
        jobs: usize::from(jobs),
        home: home::project_home(),
        cache_root: cache::default_root(),
        qemu: home::qemu_binary(),
        agent: home::agent_binary(),
        kvm_device: home::kvm_device(),
    }
}

/// Runs the engine with progress on stderr; the first Ctrl-C (or SIGTERM) stops it and keeps
/// what ran, the second kills every VM at once.
fn execute(opts: &RunOptions) -> Result<report::Report, Failure> {
    let runtime = tokio::runtime::Runtime::new().map_err(Failure::infra)?;
    runtime.block_on(async move {
        let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel();
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("signal handler");
            for round in 0.. {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                if round == 0 {
                    eprintln!("modharness: stopping; the report of what ran will be written (again to kill at once)");
                    let _ = cancel_tx.send(true);
                } else {
                    modharness_vm::kill_all();
                    std::process::exit(130);
                }
            }
        });
        let printer = tokio::spawn(async move {
            while let Some(event) = progress_rx.recv().await {
                print_progress(&event);
            }
        });
        let outcome = engine::run(opts, progress_tx, cancel_rx).await;
        let _ = printer.await;
        outcome
    })
}

fn run_matrix(args: MatrixArgs) -> Result<u8, Failure> {
    let home = home::project_home();
    let baseline = args
        .baseline
        .as_deref()
        .map(|path| report::Report::load(path).map_err(Failure::usage))
        .transpose()?;
    let file = args.matrix.unwrap_or_else(|| matrix::default_matrix(&home));
    let cells = matrix::cells(&file, &home, args.shard, baseline.as_ref())?;
    let opts = run_options(cells, args.module_dirs, args.out, args.accel, args.jobs);
    let out_dir = opts.out_dir.clone();
    // Through the merge: a shard's report is in the canonical order that merged shards have.
    let mut report = report::Report::merge(vec![execute(&opts)?]);
    if let Some(baseline) = &baseline {
        report.compare_with(baseline);
    }
    report
        .write_all(&out_dir)
        .map_err(|e| Failure::infra(format!("{}: {e}", out_dir.display())))?;
    if let Some(news) = report.comparison_text() {
        println!("{news}");
    }
    println!("{}", report.summary());
    println!("report: {}", out_dir.join(report::REPORT_JSON).display());
    Ok(matrix::exit_code(&report))
}

/// The exit code of a run: a failed scenario (1) is news about the modules under test and wins
/// over an infrastructure error (3) elsewhere, which a CI job might retry and so hide it; an
/// interrupted run's scenarios are errors, so it exits 3.
fn exit_code(statuses: &[report::Status]) -> u8 {
    if statuses.contains(&report::Status::Failed) {
        1
    } else if statuses.contains(&report::Status::Error) {
        EXIT_INFRA as u8
    } else {
        0
    }
}

fn print_progress(event: &Progress) {
    match event {
        Progress::KernelBuild {
            spec,
            stage,
            elapsed,
        } => build_view::show(spec, stage, *elapsed),
        Progress::Kernel { spec, release } => eprintln!("kernel {spec}: {release}"),
        Progress::Accel { kernel, accel, why } => {
            eprintln!("[{kernel}] accelerator: {accel} ({why})")
        }
        Progress::AccelFallback { scenario, why } => {
            eprintln!("  {scenario}: under kvm the guest did not boot ({why}); tcg from now on")
        }
        Progress::Probe {
            scenario,
            round,
            shard,
            done,
            total,
            per_s,
        } => {
            let share = shard.map_or(String::new(), |(i, n)| format!(" (shard {i}/{n})"));
            let eta = if *per_s > 0.0 {
                let left = total.saturating_sub(*done) as f64 / per_s;
                format!(
                    ", ETA {}m{:02}s",
                    (left / 60.0) as u64,
                    (left % 60.0) as u64
                )
            } else {
                String::new()
            };
            eprintln!(
                "  {scenario}: round {round}{share}: {done}/{total} modules, {per_s:.1}/s{eta}"
            )
        }
        Progress::ScenarioStarted { kernel, scenario } => {
            eprintln!("[{kernel}] {scenario}: booting")
        }
        Progress::Finding {
            scenario,
            kind,
            title,
            module,
        } => eprintln!(
            "  {scenario}: {kind}: {title}{}",
            module.as_ref().map_or(String::new(), |m| format!(" [{m}]"))
        ),
        Progress::ScenarioFinished { kernel, result } => eprintln!(
            "[{kernel}] {}: {} in {:.1}s{}",
            result.name,
            result.status.label(),
            result.duration_s,
            result
                .failures
                .first()
                .or(result.error.as_ref())
                .map_or(String::new(), |f| format!(" — {f}"))
        ),
    }
}

fn triage(logs: &[PathBuf], json: bool) -> Result<u8, Failure> {
    let mut all = Vec::new();
    for log in logs {
        let bytes = if log.as_os_str() == "-" {
            if std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "triage: give a log file, or pipe a log into `modharness triage -`",
                ));
            }
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| Failure::usage(format!("stdin: {e}")))?;
            buf
        } else {
            std::fs::read(log)
                .map_err(|e| Failure::usage(format!("{}: cannot read: {e}", log.display())))?
        };
        all.extend(modharness_triage::triage(&bytes));
    }
    if json {
        println!("{}", serde_json::json!({ "findings": all }));
    } else if all.is_empty() {
        println!("no findings");
    } else {
        for f in &all {
            println!(
                "{}: {}{}{}",
                f.kind.as_str(),
                f.title,
                f.module
                    .as_ref()
                    .map_or(String::new(), |m| format!(" [module {m}]")),
                if f.corrupted {
                    " (corrupted report)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(if all.is_empty() { 0 } else { 1 })
}

fn validate(args: &[String], module_dirs: &[PathBuf]) -> Result<u8, Failure> {
    let home = home::project_home();
    let files = scenario_files(args, &home)?;
    let scenarios = engine::load_scenarios(&files)?;
    let catalog = catalog::Catalog::discover(&home.join("guest-modules"), module_dirs)?;
    let cached = kernel::cached(&cache::default_root());
    for (scenario, text) in &scenarios {
        // Modules of the kernel's own tree count when any cached kernel has them.
        scenario.check_modules(text, |name| {
            catalog::is_known(&catalog, None, name)
                || cached
                    .iter()
                    .any(|k| catalog::is_known(&catalog, Some(k), name))
        })?;
        println!("{}: ok", scenario.file.display());
    }
    Ok(0)
}

fn list(what: ListWhat, module_dirs: &[PathBuf]) -> Result<u8, Failure> {
    let home = home::project_home();
    match what {
        ListWhat::Scenarios => {
            let dir = home.join("scenarios");
            for name in modharness_scenario::bundled_scenarios(&dir) {
                let file = dir.join(format!("{name}.yaml"));
                let (scenario, _) = engine::load_scenarios(&[file])?.remove(0);
                let long = if scenario.long {
                    " (long: run by name)"
                } else {
                    ""
                };
                println!("{:<24} {}{long}", scenario.name, scenario.description);
            }
        }
        ListWhat::Kernels => {
            for k in kernel::cached(&cache::default_root()) {
                println!("{:<32} {}", k.release, k.spec);
            }
        }
        ListWhat::Modules => {
            let catalog = catalog::Catalog::discover(&home.join("guest-modules"), module_dirs)?;
            for source in &catalog.sources {
                for name in &source.names {
                    println!("{:<28} {}", name, source.dir.display());
                }
            }
        }
    }
    Ok(0)
}

fn merge_reports(out: &Path, inputs: &[PathBuf], baseline: Option<&Path>) -> Result<u8, Failure> {
    let baseline = baseline
        .map(|path| report::Report::load(path).map_err(Failure::usage))
        .transpose()?;
    let mut reports = Vec::new();
    for input in inputs {
        let mut report = report::Report::load(input).map_err(Failure::usage)?;
        // Console logs stay where they are: point at them from wherever the merge is written.
        let dir = input.parent().unwrap_or(Path::new("."));
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        report.rebase_console_logs(&dir);
        reports.push(report);
    }
    let mut merged = report::Report::merge(reports);
    if let Some(baseline) = &baseline {
        merged.compare_with(baseline);
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Failure::usage(format!("--out {}: {e}", out.display())))?;
    merged
        .write_all(out)
        .map_err(|e| Failure::infra(format!("{}: {e}", out.display())))?;
    if let Some(news) = merged.comparison_text() {
        println!("{news}");
    }
    println!("{}", merged.summary());
    Ok(if baseline.is_some() {
        matrix::exit_code(&merged)
    } else {
        0
    })
}

fn images(command: ImagesCommand) -> Result<u8, Failure> {
    let root = cache::default_root();
    let recipes = home::project_home().join("images");
    match command {
        ImagesCommand::Fetch {
            spec,
            debug_symbols,
        } => {
            let k = acquire_shown(&spec, &root, &recipes)?;
            println!("{} {} {}", k.spec, k.release, k.boot_image.display());
            if debug_symbols {
                let vmlinux = modharness_images::debug_symbols::fetch_debug_vmlinux(&k, &root)?;
                println!("debug symbols: {}", vmlinux.display());
            }
        }
        ImagesCommand::Build { recipe, from } => {
            let spec = recipe_spec(&recipe, &from, &root)?;
            let k = acquire_shown(&spec, &root, &recipes)?;
            println!("{} {} {}", k.spec, k.release, k.boot_image.display());
        }
        ImagesCommand::List => {
            for k in kernel::cached(&root) {
                println!("{:<32} {}", k.release, k.spec);
            }
            let names = modharness_images::recipe::names(&recipes);
            println!("recipes ({}): {}", recipes.display(), names.join(", "));
        }
    }
    Ok(0)
}

/// Acquire a kernel, showing a recipe build's progress on the terminal.
fn acquire_shown(spec: &str, root: &Path, recipes: &Path) -> Result<kernel::Kernel, Failure> {
    let observe = |stage: &_, elapsed| build_view::show(spec, stage, elapsed);
    let sources = kernel::Sources {
        cache_root: root,
        recipes,
        observe: &observe,
    };
    Ok(kernel::acquire(spec, &sources)?)
}

/// The kernel spec `images build RECIPE --from SPEC` makes: `RECIPE:RELEASE`.
fn recipe_spec(recipe: &str, from: &str, root: &Path) -> Result<String, Failure> {
    let release = match kernel::KernelSpec::parse(from)? {
        kernel::KernelSpec::Debian { release } => release,
        kernel::KernelSpec::DebianNewest { flavour, rank } => {
            kernel::newest_debian_release(&flavour, rank, root)?
        }
        _ => {
            return Err(Failure::usage(format!(
            "--from {from}: a recipe builds Debian's linux-source, so --from takes a debian: spec"
        )))
        }
    };
    let spec = format!("{recipe}:{release}");
    match kernel::KernelSpec::parse(&spec) {
        Ok(kernel::KernelSpec::Recipe { .. }) => Ok(spec),
        _ => Err(Failure::usage(format!(
            "`{recipe}`: a recipe's name is debug or debug-NAME (a-z, 0-9, -), for images/RECIPE.config"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use report::Status::{Error, Failed, Passed};

    #[test]
    fn a_failed_scenario_is_not_masked_by_an_infrastructure_error_elsewhere() {
        assert_eq!(exit_code(&[Passed, Error, Failed]), 1);
        assert_eq!(exit_code(&[Passed, Error]), 3);
        assert_eq!(exit_code(&[Passed, Passed]), 0);
        assert_eq!(exit_code(&[]), 0);
    }
}
