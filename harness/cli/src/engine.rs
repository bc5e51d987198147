//! `modharness run`: kernels × scenarios, each scenario in a fresh VM.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use modharness_images::{initramfs, kernel, kernel::Kernel};
use modharness_protocol::{Event as AgentEvent, Plan, Step, PLAN_PATH};
use modharness_report as report;
use modharness_scenario::{self as scenario, FoundFinding, Scenario};
use modharness_triage::{Finding, Symbolizer, Triage};
use modharness_vm::ivshmem::DoorbellServer;
use modharness_vm::{self as vm, Accel, Machine, VmConfig, VmEvent};
use tokio::sync::{mpsc, watch};

use crate::catalog::{self, Catalog};
use crate::error::{Failure, Result};
use crate::memory;

/// How long the guest may take to connect its serial ports after QEMU starts.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep reading the console after the plan is done, for the lines still in flight.
/// Watching longer for a late crash is the scenario's choice: a `sleep` step after the unload.
const SETTLE: Duration = Duration::from_millis(100);
/// Time to finish reading a crash report that has started, or the console after a panic.
const DRAIN: Duration = Duration::from_secs(3);
/// A console quiet this long has finished its current report: hand out what the triage holds.
const QUIET: Duration = Duration::from_millis(300);
/// Findings kept per scenario: a kernel that oopses in a loop must not drown the report.
const MAX_FINDINGS: usize = 50;

/// Which accelerator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when it really runs guests (probed with a timeout), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Scenario files, in order.
    pub scenarios: Vec<PathBuf>,
    /// Kernel specs, in order.
    pub kernels: Vec<String>,
    /// Users' module source directories.
    pub module_dirs: Vec<PathBuf>,
    /// Where report.json, junit.xml and logs/ go.
    pub out_dir: PathBuf,
    pub accel: AccelChoice,
    /// Scenarios run at once (each in its own VM).
    pub jobs: usize,
    /// The project directory holding `guest-modules/`.
    pub home: PathBuf,
    pub cache_root: PathBuf,
    pub qemu: PathBuf,
    pub agent: PathBuf,
}

/// What the engine tells its audience while it works.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A kernel is ready.
    Kernel { spec: String, release: String },
    /// The accelerator was chosen.
    Accel(String),
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

/// Run every scenario on every kernel; the report covers what ran even when `cancel` fires.
pub async fn run(
    opts: &RunOptions,
    progress: mpsc::UnboundedSender<Progress>,
    cancel: watch::Receiver<bool>,
) -> Result<report::Report> {
    let started = SystemTime::now();
    let clock = Instant::now();
    let scenarios = load_scenarios(&opts.scenarios)?;
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
    for spec in &opts.kernels {
        let cache_root = opts.cache_root.clone();
        let spec_owned = spec.clone();
        let kernel = tokio::task::spawn_blocking(move || kernel::acquire(&spec_owned, &cache_root))
            .await
            .map_err(Failure::infra)??;
        for (parsed, text) in &scenarios {
            parsed.check_modules(text, |name| {
                catalog::is_known(&catalog, Some(&kernel), name)
            })?;
        }
        let _ = progress.send(Progress::Kernel {
            spec: kernel.spec.clone(),
            release: kernel.release.clone(),
        });
        kernels.push(kernel);
    }

    let accel = choose_accel(opts).await;
    let _ = progress.send(Progress::Accel(accel_name(accel).into()));
    let mut out = report::Report::new(
        started,
        report::Host {
            qemu: vm::qemu_version(&opts.qemu).await,
            accel: accel_name(accel).into(),
        },
    );

    'kernels: for kernel in &kernels {
        let mut run = report::Run {
            kernel: report::KernelInfo {
                spec: kernel.spec.clone(),
                release: kernel.release.clone(),
            },
            scenarios: Vec::new(),
        };
        let names: BTreeSet<String> = scenarios
            .iter()
            .flat_map(|(s, _)| s.module_names())
            .collect();
        let resolved = {
            let (catalog, kernel, cache) =
                (catalog.clone(), kernel.clone(), opts.cache_root.clone());
            tokio::task::spawn_blocking(move || catalog::resolve(&catalog, &names, &kernel, &cache))
                .await
                .map_err(Failure::infra)??
        };
        // Scenarios run `jobs` at a time; results keep the scenarios' order.
        let (resolved, agent, busybox) = (&resolved, agent.as_path(), busybox.as_path());
        let runs = scenarios.iter().map(|(parsed, _)| {
            let mut cancel = cancel.clone();
            let progress = progress.clone();
            async move {
                if *cancel.borrow() {
                    return None;
                }
                let _ = progress.send(Progress::ScenarioStarted {
                    kernel: kernel.spec.clone(),
                    scenario: parsed.name.clone(),
                });
                let job = ScenarioJob {
                    scenario: parsed,
                    kernel,
                    resolved,
                    accel,
                    opts,
                    agent,
                    busybox,
                };
                let result = job.run(&progress, &mut cancel).await;
                let _ = progress.send(Progress::ScenarioFinished {
                    kernel: kernel.spec.clone(),
                    result: Box::new(result.clone()),
                });
                Some(result)
            }
        });
        let results: Vec<_> = futures::stream::iter(runs)
            .buffered(opts.jobs.max(1))
            .collect()
            .await;
        run.scenarios.extend(results.into_iter().flatten());
        if *cancel.borrow() {
            out.runs.push(run);
            break 'kernels;
        }
        out.runs.push(run);
    }
    out.duration_s = clock.elapsed().as_secs_f64();
    Ok(out)
}

fn accel_name(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    }
}

async fn choose_accel(opts: &RunOptions) -> Accel {
    match opts.accel {
        AccelChoice::Kvm => Accel::Kvm,
        AccelChoice::Tcg => Accel::Tcg,
        AccelChoice::Auto => {
            let works = vm::probe_accel(
                &opts.qemu,
                Accel::Kvm,
                &std::env::temp_dir(),
                Duration::from_secs(3),
            )
            .await;
            if works {
                Accel::Kvm
            } else {
                Accel::Tcg
            }
        }
    }
}

/// Whether any step, at any depth, satisfies `wanted`.
fn any_step(steps: &[Step], wanted: &impl Fn(&Step) -> bool) -> bool {
    steps.iter().any(|step| {
        wanted(step)
            || match step {
                Step::Repeat { steps, .. } => any_step(steps, wanted),
                Step::Parallel { branches } => branches.iter().any(|b| any_step(b, wanted)),
                _ => false,
            }
    })
}

/// Whether the plan storms `device`.
fn storms(steps: &[Step], device: &str) -> bool {
    any_step(
        steps,
        &|s| matches!(s, Step::IrqStorm { device: d, .. } if d == device),
    )
}

/// The scenario's devices, plus those its storms need.
fn vm_devices(scenario: &Scenario) -> Vec<String> {
    let mut devices = scenario.vm.devices.clone();
    if storms(&scenario.steps, "edu") && !devices.iter().any(|d| d == "edu") {
        devices.push("edu".into());
    }
    devices
}

/// The kernel command line: the scenario's, plus `iomem=relaxed` for a guest-driven storm (the
/// agent maps the BAR of a device whose driver holds it).
fn guest_cmdline(scenario: &Scenario) -> String {
    let mut extra = scenario.vm.cmdline.clone();
    if storms(&scenario.steps, "edu") {
        extra.push_str(" iomem=relaxed");
    }
    vm::argv::kernel_cmdline(&extra)
}

/// A finding the harness makes itself (`hang`, `vm_crash`, `leak`), not the kernel.
fn own_finding(kind: &str, title: String, module: Option<String>) -> report::FindingEntry {
    report::FindingEntry {
        kind: kind.into(),
        title,
        module,
        ..Default::default()
    }
}

/// Totals over a scenario's storms, for the report.
fn storm_totals(storms: &[(String, u64, u64, f64)]) -> Option<report::IrqResult> {
    if storms.is_empty() {
        return None;
    }
    let mut devices: Vec<&str> = storms.iter().map(|s| s.0.as_str()).collect();
    devices.dedup();
    let delivered: u64 = storms.iter().map(|s| s.2).sum();
    let seconds: f64 = storms.iter().map(|s| s.3).sum();
    Some(report::IrqResult {
        device: devices.join("+"),
        delivered,
        per_second: if seconds > 0.0 {
            delivered as f64 / seconds
        } else {
            0.0
        },
        raised: storms.iter().map(|s| s.1).sum(),
    })
}

/// A file-name-safe form of a kernel release (a local image may say anything).
pub fn safe_component(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        "_".into()
    } else {
        cleaned
    }
}

struct ScenarioJob<'a> {
    scenario: &'a Scenario,
    kernel: &'a Kernel,
    resolved: &'a catalog::Resolved,
    accel: Accel,
    opts: &'a RunOptions,
    agent: &'a Path,
    busybox: &'a Path,
}

/// What one VM run produced, before judging.
#[derive(Default)]
struct Observed {
    findings: Vec<Finding>,
    /// Findings the harness itself makes: `hang`, `vm_crash`, `leak`.
    own: Vec<report::FindingEntry>,
    steps: report::StepStats,
    step_failures: Vec<String>,
    memory: Vec<(u32, i64)>,
    load_unload_ms: f64,
    unloads_ok: u32,
    /// IRQ storms: (device, raised, delivered, seconds).
    storms: Vec<(String, u64, u64, f64)>,
    /// The agent said it was up.
    ready: bool,
    interrupted: bool,
}

impl ScenarioJob<'_> {
    async fn run(
        &self,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut watch::Receiver<bool>,
    ) -> report::ScenarioResult {
        let clock = Instant::now();
        let log_rel = format!(
            "logs/{}/{}.console.log",
            safe_component(&self.kernel.release),
            self.scenario.name
        );
        let mut result = report::ScenarioResult {
            name: self.scenario.name.clone(),
            file: self.scenario.file.display().to_string(),
            status: report::Status::Error,
            duration_s: 0.0,
            findings: Vec::new(),
            memory: None,
            console_log: log_rel.clone(),
            error: None,
            failures: Vec::new(),
            steps: report::StepStats::default(),
            irq: None,
            notes: Vec::new(),
        };
        let log_path = self.opts.out_dir.join(&log_rel);
        let mut outcome = self.boot_and_watch(&log_path, progress, cancel).await;
        if let Some(why) = outcome.as_ref().ok().and_then(Observed::boot_failure) {
            // Nothing of the scenario ran yet, so this is not its doing (multi-threaded TCG now and
            // then crashes a kernel patching its own text at boot): boot once more, keeping the
            // first console log beside the second.
            let first_log = log_path.with_extension("boot1.log");
            let _ = std::fs::rename(&log_path, &first_log);
            result.notes.push(format!(
                "the first boot failed before any step ran ({why}); booted again (its console: {})",
                first_log.file_name().unwrap_or_default().to_string_lossy()
            ));
            outcome = self.boot_and_watch(&log_path, progress, cancel).await;
        }
        match outcome {
            Ok(observed) => {
                let boot_failure = observed.boot_failure();
                self.judge(observed, &mut result);
                if let Some(why) = boot_failure {
                    result.status = report::Status::Error;
                    result.error = Some(format!(
                        "the guest failed twice while booting, before any step ran: {why}"
                    ));
                }
            }
            Err(e) => result.error = Some(e.message),
        }
        result.duration_s = clock.elapsed().as_secs_f64();
        result
    }

    fn plan(&self) -> Plan {
        let names = self.scenario.module_names();
        Plan {
            steps: self.scenario.steps.clone(),
            modules: self
                .resolved
                .plan_modules
                .iter()
                .filter(|(name, _)| names.contains(*name))
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect(),
            sample_memory: self
                .scenario
                .steps
                .iter()
                .any(|s| matches!(s, Step::Repeat { .. })),
        }
    }

    /// Boot the scenario's VM, run its plan, and collect what happened.
    async fn boot_and_watch(
        &self,
        log_path: &Path,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Result<Observed> {
        let work = WorkDir::new()?;
        let plan = self.plan();
        let files: Vec<(String, PathBuf)> = self
            .resolved
            .files
            .iter()
            .filter(|(guest, _)| plan.modules.values().flatten().any(|p| p == guest))
            .cloned()
            .collect();
        let initrd = self.write_initrd(&work, &plan, &files)?;
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::infra(format!("{}: {e}", parent.display())))?;
        }
        let log = std::fs::File::create(log_path)
            .map_err(|e| Failure::infra(format!("{}: {e}", log_path.display())))?;
        let config = self.vm_config(&work, initrd);
        let (machine, doorbell) = self.start(&config).await?;
        let mut seen = self.watch(machine, doorbell, log, progress, cancel).await;
        self.symbolize(&files, &mut seen.findings);
        // A hang with a kernel explanation (hung task, lockup) is that explanation, not a hang.
        if !seen.findings.is_empty() {
            seen.own.retain(|f| f.kind != "hang");
        }
        Ok(seen)
    }

    /// The initramfs: agent, plan, modules, and busybox when the plan runs shell commands.
    fn write_initrd(
        &self,
        work: &WorkDir,
        plan: &Plan,
        files: &[(String, PathBuf)],
    ) -> Result<PathBuf> {
        let plan_json = serde_json::to_vec(plan).expect("plans serialize");
        let image = initramfs::build(&initramfs::Contents {
            agent: self.agent,
            busybox: any_step(&plan.steps, &|s| matches!(s, Step::Shell { .. }))
                .then_some(self.busybox),
            plan_json: &plan_json,
            plan_path: PLAN_PATH,
            modules: files,
        })?;
        let initrd = work.path.join("initrd.cpio");
        std::fs::write(&initrd, image)
            .map_err(|e| Failure::infra(format!("{}: {e}", initrd.display())))?;
        Ok(initrd)
    }

    fn vm_config(&self, work: &WorkDir, initrd: PathBuf) -> VmConfig {
        let settings = &self.scenario.vm;
        let devices = vm_devices(self.scenario);
        let host_storm = storms(&self.scenario.steps, "ivshmem");
        VmConfig {
            qemu: self.opts.qemu.clone(),
            accel: self.accel,
            machine: if devices.is_empty() && !host_storm {
                Machine::Microvm
            } else {
                Machine::Pc
            },
            cpus: settings.cpus,
            memory_mib: settings.memory_mib,
            kernel: self.kernel.boot_image.clone(),
            initrd,
            cmdline: guest_cmdline(self.scenario),
            console_socket: work.path.join("console.sock"),
            control_socket: work.path.join("control.sock"),
            qmp_socket: work.path.join("qmp.sock"),
            // The scenario validated every name against the device list.
            devices: devices.iter().filter_map(|d| vm::Device::from_name(d)).collect(),
            doorbell: host_storm.then(|| work.path.join("ivshmem.sock")),
        }
    }

    /// Start QEMU, and the doorbell server of a host-raised storm beside it.
    async fn start(&self, config: &VmConfig) -> Result<(vm::Vm, Option<Arc<DoorbellServer>>)> {
        // QEMU waits for the doorbell server's handshake while it builds the machine, so the
        // server must already be accepting when QEMU starts.
        let doorbell = match &config.doorbell {
            Some(socket) => {
                let mut server = DoorbellServer::bind(socket, vm::argv::DOORBELL_VECTORS, 1 << 20)
                    .map_err(|e| Failure::infra(format!("{}: {e}", socket.display())))?;
                Some(tokio::spawn(async move {
                    tokio::time::timeout(START_TIMEOUT, server.accept()).await??;
                    std::io::Result::Ok(Arc::new(server))
                }))
            }
            None => None,
        };
        let machine = vm::launch(config, START_TIMEOUT)
            .await
            .map_err(|e| Failure::infra(format!("{}: {e}", self.scenario.name)))?;
        let doorbell = match doorbell {
            Some(task) => Some(
                task.await
                    .map_err(Failure::infra)?
                    .map_err(|e| Failure::infra(format!("ivshmem doorbell: {e}")))?,
            ),
            None => None,
        };
        Ok((machine, doorbell))
    }

    /// Follow the running VM until the plan is done and the console has settled, the kernel
    /// panicked, QEMU exited, the timeout passed or the run was cancelled; then end QEMU.
    async fn watch(
        &self,
        mut machine: vm::Vm,
        doorbell: Option<Arc<DoorbellServer>>,
        mut log: std::fs::File,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut watch::Receiver<bool>,
    ) -> Observed {
        let settings = &self.scenario.vm;
        let mut seen = Observed::default();
        let mut triage = Triage::new();
        let deadline = tokio::time::Instant::now() + settings.timeout;
        // Once set, the run ends at this instant (extended while a crash report is being read).
        let mut ending: Option<tokio::time::Instant> = None;
        let mut guest_down = false;
        let mut qemu_exit: Option<(Option<i32>, String)> = None;
        let mut done = false;
        let mut last_console = tokio::time::Instant::now();
        let mut settled = true;
        loop {
            let until = ending.map_or(deadline, |e| e.min(deadline));
            let quiet_at = last_console + QUIET;
            tokio::select! {
                _ = tokio::time::sleep_until(quiet_at), if !settled => {
                    settled = true;
                    let found = triage.settle();
                    seen.take(found, &self.scenario.name, progress);
                }
                event = machine.events.recv() => {
                    let Some(event) = event else { break };
                    match event {
                        VmEvent::Console(bytes) => {
                            let _ = log.write_all(&bytes);
                            last_console = tokio::time::Instant::now();
                            settled = false;
                            let found = triage.feed(&bytes);
                            seen.take(found, &self.scenario.name, progress);
                            if let Some(at) = ending {
                                if triage.in_report() {
                                    ending = Some(at.max(tokio::time::Instant::now() + DRAIN));
                                }
                            }
                        }
                        VmEvent::Control(line) => {
                            if let Some(event) = AgentEvent::parse_line(&line) {
                                if let (AgentEvent::HostStorm { rate, duration_ms, .. }, Some(server)) = (&event, &doorbell) {
                                    let (server, rate, duration) = (server.clone(), *rate, Duration::from_millis(*duration_ms));
                                    tokio::spawn(async move { server.storm(0, rate, duration).await });
                                }
                                if let AgentEvent::Done { .. } = event {
                                    done = true;
                                    ending = Some(tokio::time::Instant::now() + SETTLE);
                                }
                                seen.record(event);
                            }
                        }
                        VmEvent::GuestPanicked | VmEvent::Shutdown(_) => {
                            guest_down = true;
                            ending = Some(tokio::time::Instant::now() + DRAIN);
                        }
                        VmEvent::Exited { code, stderr } => {
                            qemu_exit = Some((code, stderr));
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    let reached_deadline = ending.is_none_or(|end| end >= deadline);
                    if reached_deadline && !done && !guest_down {
                        seen.own.push(own_finding("hang", format!("guest stopped answering: no result within {:?}", settings.timeout), None));
                    }
                    break;
                }
                _ = cancel.changed() => {
                    seen.interrupted = true;
                    break;
                }
            }
            // A panicked kernel has nothing more to say; where its reboot does not end QEMU it
            // would boot again, and panic again.
            if seen.findings.iter().any(|f| f.panicked) || seen.findings.len() >= MAX_FINDINGS {
                let soon = tokio::time::Instant::now() + DRAIN;
                ending = Some(ending.map_or(soon, |e| e.min(soon)));
                guest_down = true;
            }
        }
        machine.shutdown(Duration::from_millis(500)).await;
        // Whatever is still buffered belongs to the log and the triage.
        let found = triage.finish();
        seen.take(found, &self.scenario.name, progress);
        if let Some((code, stderr)) = qemu_exit {
            let explained = guest_down || done || !seen.findings.is_empty();
            if !explained {
                let title = format!(
                    "QEMU exited ({}) before the plan finished: {}",
                    code.map_or("killed by a signal".into(), |c| format!("status {c}")),
                    stderr.lines().next().unwrap_or("no message")
                );
                seen.own.push(own_finding("vm_crash", title, None));
            }
        }
        let _ = log.flush();
        seen
    }

    /// Source lines for frames in the modules this run built (they carry debug info), and in
    /// the kernel when its debug vmlinux was fetched (`images fetch --debug-symbols`).
    fn symbolize(&self, files: &[(String, PathBuf)], findings: &mut [Finding]) {
        let mut symbolizer = Symbolizer::new();
        if let Some(vmlinux) = kernel::cached_debug_vmlinux(self.kernel, &self.opts.cache_root) {
            symbolizer.set_vmlinux(&vmlinux);
        }
        for (guest, host) in files {
            if let Some(name) = guest
                .strip_prefix("/modharness/modules/")
                .and_then(|f| f.strip_suffix(".ko"))
            {
                symbolizer.add_module(name, host);
            }
        }
        for finding in findings {
            symbolizer.symbolize(finding);
        }
    }

    fn judge(&self, mut seen: Observed, result: &mut report::ScenarioResult) {
        let bound = self
            .scenario
            .expect
            .memory
            .as_ref()
            .map_or(memory::DEFAULT_MAX_LEAK_BYTES_PER_CYCLE, |m| {
                m.max_leak_bytes_per_cycle
            });
        if seen.memory.len() > 1 {
            let verdict = memory::judge(&seen.memory, bound);
            if verdict.verdict == "leak" {
                let loaded: Vec<String> = self.scenario.module_names().into_iter().collect();
                let title = format!(
                    "memory leak of {} bytes per cycle over {} cycles",
                    verdict.bytes_per_cycle, verdict.cycles
                );
                let module = (loaded.len() == 1).then(|| loaded[0].clone());
                seen.own.push(own_finding("leak", title, module));
            }
            result.memory = Some(report::MemoryResult {
                cycles: verdict.cycles,
                leak_bytes_per_cycle: verdict.bytes_per_cycle,
                verdict: verdict.verdict.into(),
            });
        }
        let mut entries: Vec<report::FindingEntry> = seen
            .findings
            .iter()
            .map(|f| report::FindingEntry {
                kind: f.kind.as_str().into(),
                title: f.title.clone(),
                module: f.module.clone(),
                expected: false,
                time_s: f.time_s,
                panicked: f.panicked,
                corrupted: f.corrupted,
                frames: f.frames.iter().map(ToString::to_string).collect(),
            })
            .collect();
        entries.append(&mut seen.own);
        let found: Vec<FoundFinding<'_>> = entries
            .iter()
            .map(|f| FoundFinding {
                kind: &f.kind,
                module: f.module.as_deref(),
                title: &f.title,
            })
            .collect();
        let judgement = scenario::judge(&self.scenario.expect, &found);
        let mut failures = Vec::new();
        for (entry, expected) in entries.iter().zip(&judgement.expected) {
            if !expected {
                failures.push(format!(
                    "unexpected {}: {}{}",
                    entry.kind,
                    entry.title,
                    entry
                        .module
                        .as_ref()
                        .map_or(String::new(), |m| format!(" (module {m})"))
                ));
            }
        }
        for &missing in &judgement.missing {
            let want = &self.scenario.expect.findings[missing];
            failures.push(format!(
                "expected {}{} did not appear",
                want.kind,
                want.module
                    .as_ref()
                    .map_or(String::new(), |m| format!(" from module {m}"))
            ));
        }
        // When a crash is expected, steps after it failing is the crash's doing.
        if self.scenario.expect.findings.is_empty() {
            failures.extend(seen.step_failures.iter().take(5).cloned());
        }
        for (entry, expected) in entries.iter_mut().zip(judgement.expected) {
            entry.expected = expected;
        }
        if seen.unloads_ok > 0 && seen.load_unload_ms > 0.0 {
            seen.steps.load_unload_per_s =
                Some(seen.unloads_ok as f64 / (seen.load_unload_ms / 1000.0));
        }
        result.findings = entries;
        result.steps = seen.steps;
        result.irq = storm_totals(&seen.storms);
        result.status = if seen.interrupted {
            result.error = Some("interrupted".into());
            report::Status::Error
        } else if failures.is_empty() {
            report::Status::Passed
        } else {
            report::Status::Failed
        };
        result.failures = failures;
    }
}

impl Observed {
    /// Why the guest never got to the plan, when it crashed, hung or died before the agent was up.
    fn boot_failure(&self) -> Option<String> {
        if self.ready || self.interrupted {
            return None;
        }
        let titles: Vec<&str> = self
            .findings
            .iter()
            .map(|f| f.title.as_str())
            .chain(self.own.iter().map(|f| f.title.as_str()))
            .collect();
        (!titles.is_empty()).then(|| titles.join("; "))
    }

    /// Keep findings (up to [`MAX_FINDINGS`]) and tell the audience.
    fn take(
        &mut self,
        found: Vec<Finding>,
        scenario: &str,
        progress: &mpsc::UnboundedSender<Progress>,
    ) {
        for finding in found {
            if self.findings.len() >= MAX_FINDINGS {
                return;
            }
            let _ = progress.send(Progress::Finding {
                scenario: scenario.to_string(),
                kind: finding.kind.as_str().into(),
                title: finding.title.clone(),
                module: finding.module.clone(),
            });
            self.findings.push(finding);
        }
    }

    fn record(&mut self, event: AgentEvent) {
        match event {
            AgentEvent::Step {
                id,
                op,
                module,
                ok,
                error,
                ms,
                ..
            } => {
                self.steps.total += 1;
                if op == "load" || op == "unload" {
                    self.load_unload_ms += ms;
                    if ok && op == "unload" {
                        self.unloads_ok += 1;
                    }
                }
                if !ok {
                    self.steps.failed += 1;
                    self.step_failures.push(format!(
                        "step {id} {op}{} failed: {}",
                        module.map_or(String::new(), |m| format!(" {m}")),
                        error.unwrap_or_default()
                    ));
                }
            }
            AgentEvent::Memory { cycle, meminfo, .. } => {
                if let Some(bytes) = memory::tracked_bytes(&meminfo) {
                    self.memory.push((cycle, bytes));
                }
            }
            AgentEvent::IrqStorm {
                device,
                raised,
                delivered,
                seconds,
                ..
            } => self.storms.push((device, raised, delivered, seconds)),
            AgentEvent::Ready { .. } => self.ready = true,
            AgentEvent::Done { .. } | AgentEvent::HostStorm { .. } => {}
        }
    }
}

/// A private scratch directory (sockets, initrd), removed when dropped. Kept under the system's
/// temp dir: unix socket paths must stay short.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new() -> Result<WorkDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "modharness-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| Failure::infra(format!("{}: {e}", path.display())))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

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
