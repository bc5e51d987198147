//! Running a plan: steps in order, one [`Event::Step`] per leaf, memory samples per cycle.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Barrier, Mutex};
use std::time::{Duration, Instant};

use modharness_memory::{
    parse_meminfo, parse_modules, parse_slabinfo, parse_slabinfo_in_use, parse_vmallocinfo,
};
use modharness_protocol::{Event, Label, Plan, Step};

use crate::channel::Channel;
use crate::debug_checks;
use crate::exit_code;
use crate::irq;
use crate::kernel::{kernel_module_name, kernel_release, module_params, uptime_s, Kernel};
use crate::probe;
use crate::shell;

/// How often a `parallel` step waiting for its branches checks that their threads still exist.
const BRANCH_WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// Run `plan` against `kernel`: send [`Event::Ready`], every step's result and the memory
/// samples, then [`Event::Done`]. Returns whether every step succeeded, or the error that kept
/// `Done` from being sent.
pub fn run_plan(plan: &Plan, kernel: &dyn Kernel, channel: &Channel) -> io::Result<bool> {
    let runner = Runner {
        plan,
        kernel,
        channel,
        last_slab: Mutex::new(BTreeMap::new()),
    };
    runner.emit(&Event::Ready {
        uptime_s: uptime_s(),
    });
    if plan.debug.kmemleak {
        debug_checks::forget_earlier_leaks(kernel);
    }
    let ok = runner.run_top_level();
    if plan.debug.kmemleak {
        runner.emit(&debug_checks::scan_for_leaks(kernel));
    }
    channel.send(&Event::Done { ok })?;
    Ok(ok)
}

struct Runner<'a> {
    plan: &'a Plan,
    kernel: &'a dyn Kernel,
    channel: &'a Channel,
    /// Slab bytes in use per cache after the last quarantine emptying (KASAN kernels).
    last_slab: Mutex<BTreeMap<String, u64>>,
}

/// The outcome of one leaf step.
struct Outcome {
    ok: bool,
    error: Option<String>,
    output: Option<String>,
}

impl Outcome {
    fn success() -> Self {
        Outcome {
            ok: true,
            error: None,
            output: None,
        }
    }

    fn failure(error: String) -> Self {
        Outcome {
            ok: false,
            error: Some(error),
            output: None,
        }
    }
}

impl Runner<'_> {
    /// Like [`Runner::run_steps`], but a `repeat` here is a leak-measuring loop: when the plan
    /// samples memory, it is sampled before the first step, before a repeat's first iteration
    /// and after each one (cycles counted across repeats), and after the last step.
    fn run_top_level(&self) -> bool {
        let sampling = self.plan.sample_memory;
        let cycles = Cell::new(0);
        if sampling {
            self.sample_memory(0, Label::Start);
        }
        let mut ok = true;
        for (index, step) in self.plan.steps.iter().enumerate() {
            let id = index.to_string();
            ok &= match step {
                Step::Repeat { times, steps } if sampling => {
                    self.sample_memory(cycles.get(), Label::Cycle);
                    self.run_repeat(&id, *times, steps, |_| {
                        cycles.set(cycles.get() + 1);
                        self.sample_memory(cycles.get(), Label::Cycle);
                    })
                }
                _ => self.run_step(&id, step),
            };
        }
        if sampling {
            self.sample_memory(cycles.get(), Label::End);
        }
        ok
    }

    /// Run `steps`, numbered under `prefix`; every step runs even after one fails.
    fn run_steps(&self, prefix: &str, steps: &[Step]) -> bool {
        let mut ok = true;
        for (index, step) in steps.iter().enumerate() {
            ok &= self.run_step(&format!("{prefix}.{index}"), step);
        }
        ok
    }

    fn run_step(&self, id: &str, step: &Step) -> bool {
        match step {
            Step::Repeat { times, steps } => self.run_repeat(id, *times, steps, |_| {}),
            Step::Parallel { branches } => self.run_parallel(id, branches),
            Step::Load { module, params } => {
                self.run_leaf(id, step, || self.load(module, &module_params(params)))
            }
            Step::Unload { module } => self.run_leaf(id, step, || self.unload(module)),
            Step::Sleep { ms } => self.run_leaf(id, step, || {
                std::thread::sleep(Duration::from_millis(*ms));
                Outcome::success()
            }),
            Step::Shell { command } => self.run_leaf(id, step, || run_shell(command)),
            Step::IrqStorm {
                device,
                rate,
                duration_ms,
            } => self.run_leaf(id, step, || {
                self.irq_storm(id, device, *rate, Duration::from_millis(*duration_ms))
            }),
            Step::MassProbe {
                modules,
                rounds,
                skip,
                shard,
                ..
            } => self.run_leaf(id, step, || {
                let request = probe::Request {
                    selection: modules,
                    rounds: *rounds,
                    skip,
                    shard: *shard,
                    resume: self.plan.resume.as_ref(),
                };
                self.mass_probe(&request)
            }),
        }
    }

    /// Probe the running kernel's own modules tree.
    fn mass_probe(&self, request: &probe::Request<'_>) -> Outcome {
        let emit = |event: &Event| self.emit(event);
        let sample = |cycle: u32| self.sample_memory(cycle, Label::Cycle);
        let loaded = |path: &Path, since: f64| self.tell_layout(path, since);
        let round_done = || {
            if self.plan.debug.kmemleak {
                self.emit(&debug_checks::scan_for_leaks(self.kernel));
            }
        };
        let probe = probe::Probe {
            kernel: self.kernel,
            modules_dir: Path::new("/lib/modules").join(kernel_release()),
            sysfs: "/sys".into(),
            procfs: "/proc".into(),
            emit: &emit,
            sample: &sample,
            loaded: &loaded,
            round_done: &round_done,
        };
        match probe.run(request) {
            Ok(()) => Outcome::success(),
            Err(err) => Outcome::failure(format!("mass_probe: {err}")),
        }
    }

    /// Storm the device's interrupts and report what was raised and delivered.
    fn irq_storm(&self, id: &str, device: &str, rate: u32, duration: Duration) -> Outcome {
        let Some((vendor, device_id)) = modharness_protocol::storm_device_ids(device) else {
            return Outcome::failure(format!("unknown storm device {device:?}"));
        };
        let Some(dir) = irq::find_pci_device(Path::new("/sys/bus/pci/devices"), vendor, device_id)
        else {
            return Outcome::failure(format!(
                "no {device} PCI device ({vendor:04x}:{device_id:04x}) in the guest"
            ));
        };
        let counter = std::sync::Mutex::new(irq::DeliveryCounter::start(&dir));
        let storming = std::sync::atomic::AtomicBool::new(true);
        let started = Instant::now();
        let raised = std::thread::scope(|scope| {
            scope.spawn(|| {
                while storming.load(Ordering::SeqCst) {
                    counter.lock().unwrap_or_else(|e| e.into_inner()).sample();
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let raised = if device == "ivshmem" {
                self.emit(&Event::HostStorm {
                    id: id.to_string(),
                    device: device.to_string(),
                    rate,
                    duration_ms: duration.as_millis() as u64,
                });
                std::thread::sleep(duration);
                Ok(0)
            } else {
                irq::raise_edu(&dir, rate, duration)
            };
            // Interrupts raised at the very end may still be in flight.
            std::thread::sleep(Duration::from_millis(20));
            storming.store(false, Ordering::SeqCst);
            raised
        });
        let mut counter = counter.into_inner().unwrap_or_else(|e| e.into_inner());
        counter.sample();
        let delivered = counter.delivered();
        match raised {
            Ok(raised) => {
                self.emit(&Event::IrqStorm {
                    id: id.to_string(),
                    device: device.to_string(),
                    raised,
                    delivered,
                    seconds: started.elapsed().as_secs_f64(),
                });
                Outcome::success()
            }
            Err(err) => Outcome::failure(format!("irq_storm {device}: {err}")),
        }
    }

    /// Run `steps` `times` times, calling `after_iteration` with the 1-based iteration count.
    fn run_repeat(
        &self,
        id: &str,
        times: u32,
        steps: &[Step],
        after_iteration: impl Fn(u32),
    ) -> bool {
        let mut ok = true;
        for iteration in 0..times {
            ok &= self.run_steps(&format!("{id}.{iteration}"), steps);
            after_iteration(iteration + 1);
        }
        ok
    }

    /// One thread per branch, released together so that the branches really race.
    fn run_parallel(&self, id: &str, branches: &[Vec<Step>]) -> bool {
        let start_line = Barrier::new(branches.len());
        let tids: Vec<AtomicI32> = branches.iter().map(|_| AtomicI32::new(0)).collect();
        let (finished_tx, finished_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let threads: Vec<_> = branches
                .iter()
                .enumerate()
                .map(|(branch, steps)| {
                    let start_line = &start_line;
                    let tid = &tids[branch];
                    let finished = FinishedSignal {
                        branch,
                        to: finished_tx.clone(),
                    };
                    scope.spawn(move || {
                        tid.store(current_tid(), Ordering::SeqCst);
                        start_line.wait();
                        let ok = self.run_steps(&format!("{id}.{branch}"), steps);
                        drop(finished);
                        ok
                    })
                })
                .collect();
            drop(finished_tx);
            if let Err(branch) = wait_for_branches(&tids, &finished_rx) {
                self.abandon_plan(&format!("{id}.{branch}"));
            }
            // Join every thread before combining: `all` would stop at the first failure.
            let results: Vec<bool> = threads
                .into_iter()
                .map(|thread| thread.join().unwrap_or(false))
                .collect();
            results.into_iter().all(|ok| ok)
        })
    }

    /// End the plan after the kernel killed a branch thread inside a syscall (an oops): that
    /// thread can never be joined, so the process cannot finish the plan.
    fn abandon_plan(&self, branch_id: &str) -> ! {
        eprintln!(
            "modharness-agent: parallel branch {branch_id} was killed inside the kernel; ending the plan"
        );
        self.emit(&Event::Done { ok: false });
        std::process::exit(exit_code::FAILED)
    }

    /// Time `action` and report it as the result of the leaf `step`.
    fn run_leaf(&self, id: &str, step: &Step, action: impl FnOnce() -> Outcome) -> bool {
        let start_s = uptime_s();
        let started = Instant::now();
        let outcome = action();
        let module = match step {
            Step::Load { module, .. } | Step::Unload { module } => Some(module.clone()),
            _ => None,
        };
        self.emit(&Event::Step {
            id: id.to_string(),
            op: step.op().to_string(),
            module,
            ok: outcome.ok,
            error: outcome.error,
            start_s,
            ms: started.elapsed().as_secs_f64() * 1000.0,
            output: outcome.output,
        });
        outcome.ok
    }

    /// Load the module's files in order; a dependency already loaded is fine, the module itself
    /// already loaded is not.
    fn load(&self, module: &str, params: &str) -> Outcome {
        let Some(paths) = self.plan.modules.get(module) else {
            return Outcome::failure(format!(
                "module {module:?} is not in the plan's module list"
            ));
        };
        let Some((own_path, dependencies)) = paths.split_last() else {
            return Outcome::failure(format!("module {module:?} has no files in the plan"));
        };
        for dependency in dependencies {
            let since = uptime_s();
            match self.kernel.load(Path::new(dependency), "") {
                Err(err) if err.raw_os_error() != Some(libc::EEXIST) => {
                    return Outcome::failure(format!("finit_module({dependency}): {err}"));
                }
                Err(_) => {}
                Ok(()) => self.tell_layout(Path::new(dependency), since),
            }
        }
        let since = uptime_s();
        match self.kernel.load(Path::new(own_path), params) {
            Ok(()) => {
                self.tell_layout(Path::new(own_path), since);
                Outcome::success()
            }
            Err(err) => Outcome::failure(format!("finit_module({own_path}): {err}")),
        }
    }

    /// Tell the host where a module just loaded lies in memory, and when its load began.
    fn tell_layout(&self, path: &Path, since: f64) {
        let debug = self.plan.debug.kmemleak || self.plan.debug.kasan;
        if let Some(event) = debug_checks::layout(self.kernel, path, debug, since) {
            self.emit(&event);
        }
    }

    fn unload(&self, module: &str) -> Outcome {
        let name = kernel_module_name(module);
        match self.kernel.unload(&name) {
            Ok(()) => Outcome::success(),
            Err(err) => Outcome::failure(format!("delete_module({name}): {err}")),
        }
    }

    /// Send one memory sample. Without `/proc/meminfo` there is none; the other files are
    /// optional (a kernel built without `SLUB_DEBUG` has no `/proc/slabinfo`).
    fn sample_memory(&self, cycle: u32, label: Label) {
        let optional = |text: io::Result<String>, parse: fn(&str) -> BTreeMap<String, u64>| {
            text.map(|text| parse(&text)).unwrap_or_default()
        };
        if self.plan.debug.kasan {
            self.empty_quarantine();
        }
        match self.kernel.meminfo() {
            Ok(text) => self.emit(&Event::Memory {
                cycle,
                uptime_s: uptime_s(),
                meminfo: parse_meminfo(&text),
                label,
                slab: optional(self.kernel.slabinfo(), parse_slabinfo),
                vmalloc: optional(self.kernel.vmallocinfo(), parse_vmallocinfo),
                modules: optional(self.kernel.modules(), parse_modules),
            }),
            Err(err) => eprintln!("modharness-agent: memory sample {cycle} skipped: {err}"),
        }
    }

    /// Take freed objects out of KASAN's quarantine, which would count them as used: every
    /// cache the first time, then the caches that grew since the last sample (shrinking one
    /// waits for an SRCU grace period, so all of them each cycle would take a second).
    fn empty_quarantine(&self) {
        let in_use = || self.kernel.slabinfo().map(|t| parse_slabinfo_in_use(&t));
        let now = in_use().unwrap_or_default();
        let mut last = self.last_slab.lock().unwrap_or_else(|e| e.into_inner());
        let grown: Vec<String> = now
            .iter()
            .filter(|(name, bytes)| last.get(*name).is_none_or(|before| *bytes > before))
            .map(|(name, _)| name.clone())
            .collect();
        let only = (!last.is_empty()).then_some(grown.as_slice());
        if let Err(err) = self.kernel.shrink_slab_caches(only) {
            eprintln!("modharness-agent: slab caches not shrunk: {err}");
        }
        *last = in_use().unwrap_or(now);
    }

    /// Send an event; a channel that fails is reported on the console, and the plan goes on so
    /// that the console still shows what the kernel did.
    fn emit(&self, event: &Event) {
        if let Err(err) = self.channel.send(event) {
            eprintln!("modharness-agent: cannot send an event: {err}");
        }
    }
}

/// Tells the waiting thread that a branch is over, when the branch returns or unwinds; a thread
/// the kernel kills runs no destructor and so never sends it.
struct FinishedSignal {
    branch: usize,
    to: mpsc::Sender<usize>,
}

impl Drop for FinishedSignal {
    fn drop(&mut self) {
        let _ = self.to.send(self.branch);
    }
}

/// Wait for every branch's [`FinishedSignal`], checking every [`BRANCH_WATCH_INTERVAL`] that
/// the unfinished ones still have a thread. `Err(branch)` names a branch whose thread is gone
/// without having finished.
fn wait_for_branches(tids: &[AtomicI32], finished: &mpsc::Receiver<usize>) -> Result<(), usize> {
    let mut done = vec![false; tids.len()];
    while done.contains(&false) {
        match finished.recv_timeout(BRANCH_WATCH_INTERVAL) {
            Ok(branch) => done[branch] = true,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let gone: Vec<usize> = (0..tids.len())
                    .filter(|&branch| {
                        !done[branch] && thread_is_gone(tids[branch].load(Ordering::SeqCst))
                    })
                    .collect();
                // A branch signals before its thread exits, so the signal of a thread that is
                // gone after finishing is already queued.
                for branch in finished.try_iter() {
                    done[branch] = true;
                }
                if let Some(branch) = gone.into_iter().find(|&branch| !done[branch]) {
                    return Err(branch);
                }
            }
        }
    }
    Ok(())
}

/// The kernel's id of the calling thread.
fn current_tid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Whether the thread `tid` of this process has exited; 0 (not started yet) is not gone.
fn thread_is_gone(tid: libc::pid_t) -> bool {
    if tid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the thread exists.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, 0) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

fn run_shell(command: &str) -> Outcome {
    let run = shell::run(command);
    let error = match run.status {
        Ok(status) if status.success() => None,
        Ok(status) => Some(format!("/bin/sh {status}")),
        Err(err) => Some(format!("cannot run /bin/sh: {err}")),
    };
    Outcome {
        ok: error.is_none(),
        error,
        output: Some(run.output),
    }
}

#[cfg(test)]
mod tests;
