//! `modharness run`: kernels × scenarios, each scenario in a fresh VM, in four stages:
//! [`plan`] (what the guest is given), [`boot`] (QEMU started), [`watch`] (the running VM
//! followed) and [`judge`] (what was seen against what was expected). [`accel`] chooses the
//! accelerator by a real boot and falls back to TCG when a KVM guest does not come up.

mod accel;
mod boot;
mod job;
mod judge;
mod plan;
mod probe;
pub mod schedule;
mod watch;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use modharness_images::{initramfs, kernel};
use modharness_report as report;
use modharness_scenario::{self as scenario, KernelCells, Scenario};
use modharness_vm as vm;
use tokio::sync::{mpsc, watch as signal};

pub use accel::AccelChoice;

use crate::catalog::{self, Catalog};
use crate::error::{Failure, Result};
use accel::Selector;
use job::ScenarioJob;
use plan::Shape;

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The kernels, in order, each with the scenario files it runs, in order.
    pub cells: Vec<KernelCells>,
    /// Users' module source directories.
    pub module_dirs: Vec<PathBuf>,
    /// Where report.json, junit.xml and logs/ go; created once every input has been checked,
    /// so that bad input leaves nothing behind.
    pub out_dir: PathBuf,
    /// Point `latest` beside `out_dir` at it once it is created (the default output place).
    pub link_latest: bool,
    /// How to choose the accelerator.
    pub accel: AccelChoice,
    /// Scenarios run at once (each in its own VM), over all kernels; bounded by the host's
    /// cores and memory (see [`schedule::HostCapacity`]).
    pub jobs: usize,
    /// The project directory holding `guest-modules/`.
    pub home: PathBuf,
    /// The cache of kernels, module builds and accelerator verdicts.
    pub cache_root: PathBuf,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The guest agent binary.
    pub agent: PathBuf,
    /// The KVM device node `auto` looks for before probing (`/dev/kvm`).
    pub kvm_device: PathBuf,
}

impl RunOptions {
    /// Every scenario file on every kernel spec: what `modharness run` asks for.
    pub fn every_pair(kernels: &[String], scenarios: &[PathBuf]) -> Vec<KernelCells> {
        kernels
            .iter()
            .map(|spec| KernelCells {
                spec: spec.clone(),
                scenarios: scenarios.to_vec(),
            })
            .collect()
    }
}

/// What the engine tells its audience while it works.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A kernel is being built from a recipe (minutes); `elapsed` since the build began.
    KernelBuild {
        spec: String,
        stage: modharness_images::kbuild::Stage,
        elapsed: std::time::Duration,
    },
    /// A kernel is ready.
    Kernel { spec: String, release: String },
    /// The accelerator for a kernel's scenarios was chosen, and why.
    Accel {
        kernel: String,
        accel: String,
        why: String,
    },
    /// A KVM guest did not come up; this scenario and the later ones run under TCG.
    AccelFallback { scenario: String, why: String },
    /// How a mass probe's round is going.
    Probe {
        scenario: String,
        /// 1-based.
        round: u32,
        /// The share `(I, N)` of the modules this VM probes, when the probe is split.
        shard: Option<(u32, u32)>,
        done: usize,
        total: usize,
        per_s: f64,
    },
    /// A scenario's VM is starting.
    ScenarioStarted { kernel: String, scenario: String },
    /// The kernel printed a crash report.
    Finding {
        scenario: String,
        kind: String,
        title: String,
        module: Option<String>,
    },
    /// A scenario ended.
    ScenarioFinished {
        kernel: String,
        result: Box<report::ScenarioResult>,
    },
}

/// Read and validate every scenario: any error ends the run before anything boots.
pub fn load_scenarios(files: &[PathBuf]) -> Result<Vec<(Scenario, String)>> {
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .map_err(|e| Failure::usage(format!("{}: cannot read: {e}", file.display())))?;
            let parsed = scenario::parse(&text, file)?;
            Ok((parsed, text))
        })
        .collect()
}

/// A kernel ready to boot: fetched or built, its modules built, its scenarios picked.
struct Prepared {
    kernel: kernel::Kernel,
    resolved: catalog::Resolved,
    /// Indices into the loaded scenarios, in the order this kernel runs them.
    picked: Vec<usize>,
}

/// Run every cell of `opts`; the report covers what ran even when `cancel` fires. Scenarios of
/// all kernels share the `jobs` VMs, the most expensive first; the report keeps their order.
pub async fn run(
    opts: &RunOptions,
    progress: mpsc::UnboundedSender<Progress>,
    cancel: signal::Receiver<bool>,
) -> Result<report::Report> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut files: Vec<PathBuf> = Vec::new();
    for file in opts.cells.iter().flat_map(|c| &c.scenarios) {
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    let scenarios = load_scenarios(&files)?;
    let catalog = Catalog::discover(&opts.home.join("guest-modules"), &opts.module_dirs)?;
    let agent = opts.agent.clone();
    if !agent.is_file() {
        return Err(Failure::infra(format!(
            "guest agent {} not found: build it with `cargo build --release` (or set \
             MODHARNESS_AGENT)",
            agent.display()
        )));
    }
    let busybox = initramfs::find_busybox()?;

    // Every kernel fetched, every module name checked, before anything boots.
    let mut kernels = Vec::new();
    for cells in &opts.cells {
        let picked: Vec<usize> = cells
            .scenarios
            .iter()
            .filter_map(|f| files.iter().position(|g| g == f))
            .collect();
        let chosen: Vec<&(Scenario, String)> = picked.iter().map(|&i| &scenarios[i]).collect();
        kernels
            .push(prepare_kernel(opts, &cells.spec, &chosen, &catalog, &progress, picked).await?);
    }
    create_out_dir(opts)?;

    let qemu_version = vm::qemu_version(&opts.qemu).await;
    let mut out = report::Report::new(
        started,
        report::Host {
            qemu: qemu_version.clone(),
            accel: String::new(),
        },
    );
    let mut selectors = Vec::new();
    for prepared in &kernels {
        let Some(&first) = prepared.picked.first() else {
            selectors.push(None);
            continue;
        };
        let selector = Selector::decide(
            opts.accel,
            &accel::Probe {
                qemu: &opts.qemu,
                kernel: &prepared.kernel,
                shape: Shape::of(&scenarios[first].0, 1).bare(),
                agent: &agent,
                busybox: &busybox,
                cache_root: &opts.cache_root,
                kvm_device: &opts.kvm_device,
                qemu_version: &qemu_version,
            },
        )
        .await;
        let _ = progress.send(Progress::Accel {
            kernel: prepared.kernel.spec.clone(),
            accel: accel::name(selector.current()).into(),
            why: selector.why(),
        });
        selectors.push(Some(selector));
    }

    let mut results = run_cells(
        opts, &kernels, &selectors, &scenarios, &agent, &busybox, &progress, &cancel,
    )
    .await;
    results.sort_by_key(|(k, pos, _)| (*k, *pos));
    for (k, (prepared, selector)) in kernels.iter().zip(&selectors).enumerate() {
        let accel_used = selector
            .as_ref()
            .map(|s| accel::name(s.current()).to_string());
        if out.host.accel.is_empty() {
            out.host.accel = accel_used.clone().unwrap_or_default();
        }
        out.runs.push(report::Run {
            kernel: report::KernelInfo {
                spec: prepared.kernel.spec.clone(),
                release: prepared.kernel.release.clone(),
            },
            accel: accel_used,
            accel_why: selector.as_ref().map(Selector::why),
            scenarios: results
                .iter()
                .filter(|(rk, _, _)| *rk == k)
                .map(|(_, _, r)| r.clone())
                .collect(),
        });
    }
    out.duration_s = clock.elapsed().as_secs_f64();
    Ok(out)
}

/// Fetch (or build) a kernel, check that it has every module `scenarios` name, and build the
/// project's and the user's modules for it.
async fn prepare_kernel(
    opts: &RunOptions,
    spec: &str,
    scenarios: &[&(Scenario, String)],
    catalog: &Catalog,
    progress: &mpsc::UnboundedSender<Progress>,
    picked: Vec<usize>,
) -> Result<Prepared> {
    let (cache_root, recipes) = (opts.cache_root.clone(), opts.home.join("images"));
    let (spec_owned, builds) = (spec.to_string(), progress.clone());
    let kernel = tokio::task::spawn_blocking(move || {
        let observe = |stage: &modharness_images::kbuild::Stage, elapsed| {
            let _ = builds.send(Progress::KernelBuild {
                spec: spec_owned.clone(),
                stage: stage.clone(),
                elapsed,
            });
        };
        let sources = kernel::Sources {
            cache_root: &cache_root,
            recipes: &recipes,
            observe: &observe,
        };
        kernel::acquire(&spec_owned, &sources)
    })
    .await
    .map_err(Failure::infra)??;
    for (parsed, text) in scenarios {
        parsed.check_modules(text, |name| catalog::is_known(catalog, Some(&kernel), name))?;
    }
    let _ = progress.send(Progress::Kernel {
        spec: kernel.spec.clone(),
        release: kernel.release.clone(),
    });
    // Modules built (or taken from the cache) for this kernel: a missing header tree is bad
    // usage, found before anything is written.
    let names: BTreeSet<String> = scenarios
        .iter()
        .flat_map(|(s, _)| s.module_names())
        .collect();
    let resolved = {
        let (catalog, kernel, cache) = (catalog.clone(), kernel.clone(), opts.cache_root.clone());
        tokio::task::spawn_blocking(move || catalog::resolve(&catalog, &names, &kernel, &cache))
            .await
            .map_err(Failure::infra)??
    };
    Ok(Prepared {
        kernel,
        resolved,
        picked,
    })
}

/// Run every picked scenario of every kernel, `jobs` VMs at a time and as many as the host's
/// memory holds, longest first. Each result comes with its kernel's index and its place there.
#[allow(clippy::too_many_arguments)]
async fn run_cells(
    opts: &RunOptions,
    kernels: &[Prepared],
    selectors: &[Option<Selector>],
    scenarios: &[(Scenario, String)],
    agent: &std::path::Path,
    busybox: &std::path::Path,
    progress: &mpsc::UnboundedSender<Progress>,
    cancel: &signal::Receiver<bool>,
) -> Vec<(usize, usize, report::ScenarioResult)> {
    let mut cells = Vec::new();
    for (k, prepared) in kernels.iter().enumerate() {
        let slowdown = plan::slowdown(plan::debug_checks(&prepared.kernel));
        for (pos, &index) in prepared.picked.iter().enumerate() {
            cells.push((
                k,
                pos,
                index,
                schedule::expected_seconds(&scenarios[index].0, slowdown),
            ));
        }
    }
    let costs: Vec<f64> = cells.iter().map(|c| c.3).collect();
    let host = schedule::HostCapacity::probe();
    let budget = host
        .vm_budget_mib()
        .min(tokio::sync::Semaphore::MAX_PERMITS as u64 / 2);
    let memory = tokio::sync::Semaphore::new(budget as usize);
    let memory = &memory;
    let runs = schedule::longest_first(&costs).into_iter().map(|c| {
        let (k, pos, index, _) = cells[c];
        let mut cancel = cancel.clone();
        let progress = progress.clone();
        async move {
            let (parsed, prepared) = (&scenarios[index].0, &kernels[k]);
            let need = schedule::vm_footprint_mib(parsed.vm.memory_mib).min(budget) as u32;
            let _room = memory.acquire_many(need).await.ok()?;
            if *cancel.borrow() {
                return None;
            }
            let selector = selectors[k].as_ref()?;
            let _ = progress.send(Progress::ScenarioStarted {
                kernel: prepared.kernel.spec.clone(),
                scenario: parsed.name.clone(),
            });
            let job = ScenarioJob {
                scenario: parsed,
                kernel: &prepared.kernel,
                resolved: &prepared.resolved,
                accel: selector,
                opts,
                agent,
                busybox,
            };
            let result = job.run(&progress, &mut cancel).await;
            let _ = progress.send(Progress::ScenarioFinished {
                kernel: prepared.kernel.spec.clone(),
                result: Box::new(result.clone()),
            });
            Some((k, pos, result))
        }
    });
    futures::stream::iter(runs)
        .buffer_unordered(host.max_jobs(opts.jobs))
        .filter_map(|r| async move { r })
        .collect()
        .await
}

/// Create the output directory (and the `latest` link beside it, when asked).
fn create_out_dir(opts: &RunOptions) -> Result<()> {
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| Failure::usage(format!("--out {}: {e}", opts.out_dir.display())))?;
    if opts.link_latest {
        if let (Some(parent), Some(name)) = (opts.out_dir.parent(), opts.out_dir.file_name()) {
            let latest = parent.join("latest");
            let _ = std::fs::remove_file(&latest);
            let _ = std::os::unix::fs::symlink(name, &latest);
        }
    }
    Ok(())
}

pub use modharness_images::cache::safe_component;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind the triage can report must be one a scenario may expect.
    #[test]
    fn scenarios_can_expect_every_kind_the_triage_reports() {
        for kind in modharness_triage::Kind::ALL {
            assert!(scenario::FINDING_KINDS.contains(&kind.as_str()), "{kind:?}");
        }
        for own in ["leak", "hang", "vm_crash"] {
            assert!(scenario::FINDING_KINDS.contains(&own), "{own}");
        }
    }

    #[test]
    fn unsafe_release_strings_cannot_leave_the_logs_directory() {
        assert_eq!(safe_component("../../etc"), ".._.._etc");
        assert_eq!(safe_component(".."), "_");
        assert_eq!(
            safe_component("6.12.117+deb12-amd64"),
            "6.12.117+deb12-amd64"
        );
    }
}
