//! One scenario on one kernel: its VMs, from the first boot to the verdict.
//!
//! A guest that never reached its agent is not the scenario's doing: under KVM the run falls
//! back to TCG and boots again; under TCG (where multi-threaded emulation now and then crashes a
//! kernel patching its own text at boot) it boots once more, and a second failure is an
//! infrastructure error. A mass probe whose VM a module crashed or wedged is blamed on that
//! module and goes on in a fresh VM after it. Every earlier console is kept beside the last.

use std::path::Path;
use std::time::{Duration, Instant};

use modharness_images::kernel::Kernel;
use modharness_protocol::{ProbeResume, Step};
use modharness_report as report;
use modharness_scenario::Scenario;
use modharness_vm::Accel;
use tokio::sync::{mpsc, watch as signal};

use super::accel::{self, Selector};
use super::boot::{self, WorkDir};
use super::judge::{self, own_finding};
use super::plan::{self, Shape};
use super::probe::{self, ProbeLog};
use super::watch::{Observed, Watch};
use super::{safe_component, Progress, RunOptions};
use crate::catalog;
use crate::error::{Failure, Result};

/// A VM never gets less than this of the scenario's time, even late in a long mass probe.
const MIN_VM_TIME: Duration = Duration::from_secs(20);

/// One scenario on one kernel.
#[derive(Clone, Copy)]
pub(crate) struct ScenarioJob<'a> {
    pub scenario: &'a Scenario,
    pub kernel: &'a Kernel,
    pub resolved: &'a catalog::Resolved,
    pub accel: &'a Selector,
    pub opts: &'a RunOptions,
    pub agent: &'a Path,
    pub busybox: &'a Path,
}

/// How the scenario's VMs went, for the notes.
struct Attempts<'a> {
    log_path: &'a Path,
    notes: Vec<String>,
    retried_boot: bool,
    started: Instant,
}

impl ScenarioJob<'_> {
    /// Boot, watch and judge the scenario.
    pub async fn run(
        &self,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut signal::Receiver<bool>,
    ) -> report::ScenarioResult {
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
            accel: None,
            mass_probe: None,
        };
        let started = Instant::now();
        let shares = probe_shares(self.scenario);
        let runs = shares.iter().enumerate().map(|(share, scenario)| {
            let job = ScenarioJob { scenario, ..*self };
            let mut cancel = cancel.clone();
            let log_path = match share {
                0 => self.opts.out_dir.join(&log_rel),
                n => self
                    .opts
                    .out_dir
                    .join(&log_rel)
                    .with_extension(format!("share{}.log", n + 1)),
            };
            async move {
                let mut attempts = Attempts {
                    log_path: &log_path,
                    notes: Vec::new(),
                    retried_boot: false,
                    started,
                };
                let (outcome, accel) = job.run_vms(&mut attempts, progress, &mut cancel).await;
                (outcome, accel, attempts.notes, attempts.retried_boot)
            }
        });
        let mut outcome: Option<Result<Observed>> = None;
        let mut accel = self.accel.current();
        let mut retried_boot = false;
        for (share, (vm_outcome, vm_accel, notes, retried)) in futures::future::join_all(runs)
            .await
            .into_iter()
            .enumerate()
        {
            let prefix = if shares.len() > 1 {
                format!("VM {} of {}: ", share + 1, shares.len())
            } else {
                String::new()
            };
            result
                .notes
                .extend(notes.into_iter().map(|n| format!("{prefix}{n}")));
            accel = vm_accel;
            retried_boot |= retried;
            outcome = Some(match (outcome, vm_outcome) {
                (None, first) => first,
                (Some(Ok(mut seen)), Ok(more)) => {
                    seen.add_share(more);
                    Ok(seen)
                }
                (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
            });
        }
        let outcome = outcome.unwrap_or_else(|| Ok(Observed::default()));
        result.accel = Some(accel::name(accel).into());
        match outcome {
            Ok(mut observed) => {
                let boot_failure = observed.boot_failure();
                if boot_failure.is_some() {
                    // The harness's own verdicts (hang, vm_crash) would blame the scenario for a
                    // boot; the kernel's own words are kept.
                    observed.own.clear();
                }
                judge::judge(self.scenario, observed, &mut result);
                if let Some(why) = boot_failure {
                    result.status = report::Status::Error;
                    result.error = Some(format!(
                        "the guest failed {} while booting, before any step ran: {why}",
                        if retried_boot { "twice" } else { "under kvm" }
                    ));
                }
            }
            Err(e) => result.error = Some(e.message),
        }
        result.duration_s = started.elapsed().as_secs_f64();
        result
    }

    /// Every VM the scenario takes: one, or one more after each module that killed a mass
    /// probe's VM.
    async fn run_vms(
        &self,
        attempts: &mut Attempts<'_>,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut signal::Receiver<bool>,
    ) -> (Result<Observed>, Accel) {
        let mut total: Option<Observed> = None;
        let mut resume = None;
        loop {
            let carried = total.as_mut().map(|t| std::mem::take(&mut t.probe));
            let (outcome, accel) = self
                .boot_until_ready(
                    attempts,
                    resume.take(),
                    carried.unwrap_or_default(),
                    progress,
                    cancel,
                )
                .await;
            let mut seen = match outcome {
                Ok(seen) => seen,
                Err(e) => return (Err(e), accel),
            };
            let next = self.after_probe_vm(&mut seen, attempts);
            match total.as_mut() {
                Some(total) => total.absorb(seen),
                None => total = Some(seen),
            }
            match next {
                Some(point) if !*cancel.borrow() => resume = Some(point),
                _ => return (Ok(total.unwrap_or_default()), accel),
            }
        }
    }

    /// When a mass probe's VM ended with a module in flight: blame the module, keep the console,
    /// and say where the next VM goes on from.
    fn after_probe_vm(
        &self,
        seen: &mut Observed,
        attempts: &mut Attempts<'_>,
    ) -> Option<ProbeResume> {
        let busy = seen.probe.in_flight.clone()?;
        for finding in &mut seen.findings {
            finding.module.get_or_insert_with(|| busy.module.clone());
        }
        if seen.findings.is_empty() && seen.own.is_empty() {
            seen.own.push(own_finding(
                "hang",
                format!(
                    "mass probe: the guest stopped while {} was loading or unloading",
                    busy.module
                ),
                Some(busy.module.clone()),
            ));
        }
        let (title, culprit) = seen
            .findings
            .first()
            .map(|f| (f.title.clone(), f.module.clone()))
            .or_else(|| {
                seen.own
                    .first()
                    .map(|f| (f.title.clone(), f.module.clone()))
            })
            .unwrap_or_default();
        let (module, resume) = seen.probe.blame_in_flight(&title, culprit.as_deref())?;
        let vm = seen.probe.restarts;
        let kept = keep_log(attempts.log_path, &format!("vm{vm}.log"));
        if seen.probe.restarts > probe::MAX_RESTARTS {
            attempts.notes.push(format!(
                "the mass probe stopped after {} VMs died ({module} the last: {title}; console: {kept})",
                probe::MAX_RESTARTS
            ));
            return None;
        }
        attempts.notes.push(format!(
            "VM {vm} died while probing {module} ({title}; console: {kept}); a fresh VM goes on \
             with module {} of round {}",
            resume.index + 1,
            resume.round + 1
        ));
        Some(resume)
    }

    /// Boot one VM to its end; boots that never reached the agent are given up as the module
    /// docs say and booted again.
    async fn boot_until_ready(
        &self,
        attempts: &mut Attempts<'_>,
        resume: Option<ProbeResume>,
        mut probe: ProbeLog,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut signal::Receiver<bool>,
    ) -> (Result<Observed>, Accel) {
        loop {
            let accel = self.accel.current();
            let outcome = self
                .boot_and_watch(attempts, accel, resume.clone(), probe, progress, cancel)
                .await;
            let failed_boot = match &outcome {
                Ok(seen) => seen.boot_failure(),
                Err(e) if accel == Accel::Kvm => {
                    Some(e.message.lines().next().unwrap_or("").to_string())
                }
                Err(_) => None,
            };
            let Some(why) = failed_boot else {
                return (outcome, accel);
            };
            let log_path = attempts.log_path;
            if accel == Accel::Kvm && self.accel.fall_back(&why) {
                let kept = keep_log(log_path, "kvm.log");
                attempts.notes.push(format!(
                    "under kvm the guest did not boot ({why}); this scenario and the later ones \
                     run under tcg (its console: {kept})"
                ));
                let _ = progress.send(Progress::AccelFallback {
                    scenario: self.scenario.name.clone(),
                    why,
                });
            } else if !attempts.retried_boot && outcome.is_ok() {
                attempts.retried_boot = true;
                let kept = keep_log(log_path, "boot1.log");
                attempts.notes.push(format!(
                    "the first boot failed before any step ran ({why}); booted again (its console: {kept})"
                ));
            } else {
                return (outcome, accel);
            }
            probe = outcome.map(|seen| seen.probe).unwrap_or_default();
        }
    }

    /// Boot the scenario's VM under `accel`, run its plan, and collect what happened.
    async fn boot_and_watch(
        &self,
        attempts: &Attempts<'_>,
        accel: Accel,
        resume: Option<ProbeResume>,
        probe: ProbeLog,
        progress: &mpsc::UnboundedSender<Progress>,
        cancel: &mut signal::Receiver<bool>,
    ) -> Result<Observed> {
        let log_path = attempts.log_path;
        let work = WorkDir::new()?;
        let mut plan = plan::plan(self.scenario, self.resolved, self.kernel);
        plan.resume = resume;
        let files = plan::plan_files(&plan, self.resolved);
        let initrd = plan::write_initrd(&work, &plan, &files, self.agent, self.busybox)?;
        plan::append_modules_tree(&initrd, &plan, self.kernel, &self.opts.cache_root)?;
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::infra(format!("{}: {e}", parent.display())))?;
        }
        let log = std::fs::File::create(log_path)
            .map_err(|e| Failure::infra(format!("{}: {e}", log_path.display())))?;
        let config = Shape::of(self.scenario, plan::slowdown(plan.debug)).config(
            &self.opts.qemu,
            accel,
            self.kernel,
            &work,
            initrd,
        );
        let started = boot::start(&config)
            .await
            .map_err(|e| Failure::infra(format!("{}: {e}", self.scenario.name)))?;
        let budget = plan::time_budget(self.scenario, &plan);
        let left = budget.saturating_sub(attempts.started.elapsed());
        let shard = self.scenario.steps.iter().find_map(|s| match s {
            Step::MassProbe { shard, .. } => *shard,
            _ => None,
        });
        let watch = Watch {
            scenario: &self.scenario.name,
            shard,
            timeout: left.max(MIN_VM_TIME.min(budget)),
            ready_within: (accel == Accel::Kvm).then(|| self.accel.kvm_boot_limit()),
            progress,
            hz: self
                .kernel
                .config_value("CONFIG_HZ")
                .and_then(|hz| hz.parse().ok()),
        };
        let mut seen = watch.follow(started, log, cancel, probe).await;
        judge::symbolize(
            self.kernel,
            &self.opts.cache_root,
            &files,
            &mut seen.findings,
        );
        // A hang with a kernel explanation (hung task, lockup) is that explanation, not a hang.
        if !seen.findings.is_empty() {
            seen.own.retain(|f| f.kind != "hang");
        }
        Ok(seen)
    }
}

/// The scenario as each VM of a mass probe split across `vms` VMs runs it: the same scenario
/// with its probe cut to one share (composed with the probe's own shard); just the scenario
/// when there is nothing to split.
fn probe_shares(scenario: &Scenario) -> Vec<Scenario> {
    let vms = scenario
        .steps
        .iter()
        .find_map(|s| match s {
            Step::MassProbe { vms, .. } => Some(*vms),
            _ => None,
        })
        .unwrap_or(1);
    (0..vms.max(1))
        .map(|share| {
            let mut part = scenario.clone();
            for step in &mut part.steps {
                if let Step::MassProbe { shard, vms: n, .. } = step {
                    // Every n-th of the probe's own every-N-th: `k % (N*n) == (I-1) + N*share`.
                    if *n > 1 {
                        let (first, every) = shard.unwrap_or((1, 1));
                        *shard = Some((first + every * share, every * *n));
                        *n = 1;
                    }
                }
            }
            part
        })
        .collect()
}

/// Move a console log aside as `<name>.<suffix>`; the name it got, for the notes.
fn keep_log(log_path: &Path, suffix: &str) -> String {
    let kept = log_path.with_extension(suffix);
    let _ = std::fs::rename(log_path, &kept);
    kept.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe_shards(yaml: &str) -> Vec<Option<(u32, u32)>> {
        let scenario = modharness_scenario::parse(yaml, Path::new("p.yaml")).unwrap();
        probe_shares(&scenario)
            .iter()
            .map(|s| match &s.steps[0] {
                Step::MassProbe { shard, vms, .. } => {
                    assert_eq!(*vms, 1, "each VM probes one share");
                    *shard
                }
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_probe_split_across_vms_gives_each_an_even_share_of_its_own_shard() {
        assert_eq!(
            probe_shards("name: p\nsteps:\n  - mass_probe: { modules: all, vms: 2 }\n"),
            [Some((1, 2)), Some((2, 2))]
        );
        assert_eq!(
            probe_shards("name: p\nsteps:\n  - mass_probe: { modules: all, vms: 2, shard: 1/3 }\n"),
            [Some((1, 6)), Some((4, 6))]
        );
        assert_eq!(
            probe_shards("name: p\nsteps:\n  - mass_probe: { modules: all, shard: 2/3 }\n"),
            [Some((2, 3))],
            "one VM keeps the probe's own shard"
        );
    }
}
