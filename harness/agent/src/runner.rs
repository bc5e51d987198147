//! Running a plan: steps in order, one [`Event::Step`] per leaf, memory samples per cycle.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Barrier};
use std::time::{Duration, Instant};

use modharness_memory::{parse_meminfo, parse_modules, parse_slabinfo, parse_vmallocinfo};
use modharness_protocol::{Event, Label, Plan, Step};

use crate::channel::Channel;
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
    };
    runner.emit(&Event::Ready {
        uptime_s: uptime_s(),
    });
    let ok = runner.run_top_level();
    channel.send(&Event::Done { ok })?;
    Ok(ok)
}

struct Runner<'a> {
    plan: &'a Plan,
    kernel: &'a dyn Kernel,
    channel: &'a Channel,
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
        let probe = probe::Probe {
            kernel: self.kernel,
            modules_dir: Path::new("/lib/modules").join(kernel_release()),
            sysfs: "/sys".into(),
            procfs: "/proc".into(),
            emit: &emit,
            sample: &sample,
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
            match self.kernel.load(Path::new(dependency), "") {
                Err(err) if err.raw_os_error() != Some(libc::EEXIST) => {
                    return Outcome::failure(format!("finit_module({dependency}): {err}"));
                }
                _ => {}
            }
        }
        match self.kernel.load(Path::new(own_path), params) {
            Ok(()) => Outcome::success(),
            Err(err) => Outcome::failure(format!("finit_module({own_path}): {err}")),
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
mod tests {
    use super::*;
    use crate::channel::tests::Captured;
    use std::sync::Mutex;

    /// A kernel that only records calls. Files named `*exists*` fail with EEXIST, modules named
    /// `busy*` refuse to unload with EAGAIN, and each call takes `delay` to happen.
    #[derive(Default)]
    struct FakeKernel {
        calls: Mutex<Vec<Call>>,
        delay: Duration,
    }

    struct Call {
        what: String,
        began: Instant,
        ended: Instant,
    }

    impl FakeKernel {
        fn slow(delay: Duration) -> Self {
            FakeKernel {
                delay,
                ..FakeKernel::default()
            }
        }

        fn record(&self, what: String) {
            let began = Instant::now();
            std::thread::sleep(self.delay);
            let ended = Instant::now();
            self.calls.lock().unwrap().push(Call { what, began, ended });
        }

        fn calls(&self) -> Vec<String> {
            let calls = self.calls.lock().unwrap();
            calls.iter().map(|call| call.what.clone()).collect()
        }
    }

    impl Kernel for FakeKernel {
        fn load(&self, path: &Path, params: &str) -> io::Result<()> {
            self.record(format!("load {} [{params}]", path.display()));
            if path.to_string_lossy().contains("exists") {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            Ok(())
        }

        fn unload(&self, name: &str) -> io::Result<()> {
            self.record(format!("unload {name}"));
            if name.starts_with("busy") {
                return Err(io::Error::from_raw_os_error(libc::EAGAIN));
            }
            Ok(())
        }

        fn meminfo(&self) -> io::Result<String> {
            let samples = self.calls.lock().unwrap().len() as u64;
            Ok(format!(
                "MemFree: {} kB\nHugePages_Total: 3\n",
                1000 - samples
            ))
        }

        /// kmalloc-64 grows by a slab page per call made so far; an empty cache is listed too.
        fn slabinfo(&self) -> io::Result<String> {
            let calls = self.calls.lock().unwrap().len();
            Ok(format!(
                "slabinfo - version: 2.1\n\
                 # name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables\n\
                 kmalloc-64 {0} {0} 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n\
                 dma-kmalloc-64 0 0 64 64 1 : tunables 0 0 0 : slabdata 0 0 0\n",
                64 * (calls + 1)
            ))
        }

        /// As on a kernel that hides the file: the sample goes on without it.
        fn vmallocinfo(&self) -> io::Result<String> {
            Err(io::Error::from_raw_os_error(libc::EACCES))
        }

        fn modules(&self) -> io::Result<String> {
            Ok("mh_trivial 12288 0 - Live 0xffffffffc0a00000 (OE)\n".to_string())
        }
    }

    fn plan(json: &str) -> Plan {
        serde_json::from_str(json).unwrap()
    }

    fn run(plan: &Plan, kernel: &FakeKernel) -> (bool, Vec<Event>) {
        let captured = Captured::default();
        let channel = Channel::new(Box::new(captured.clone()));
        let ok = run_plan(plan, kernel, &channel).unwrap();
        (ok, captured.events())
    }

    /// The id, op and ok flag of each step event, in the order sent.
    fn steps(events: &[Event]) -> Vec<(String, String, bool)> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::Step { id, op, ok, .. } => Some((id.clone(), op.clone(), *ok)),
                _ => None,
            })
            .collect()
    }

    fn step(id: &str, op: &str, ok: bool) -> (String, String, bool) {
        (id.to_string(), op.to_string(), ok)
    }

    fn find_step<'a>(events: &'a [Event], wanted: &str) -> &'a Event {
        events
            .iter()
            .find(|event| matches!(event, Event::Step { id, .. } if id == wanted))
            .unwrap_or_else(|| panic!("no step {wanted}"))
    }

    const MODULES: &str = r#""modules": {
        "race-timer": ["/m/dep-exists.ko", "/m/dep.ko", "/m/race-timer.ko"],
        "busy-mod": ["/m/busy-mod.ko"],
        "already-exists": ["/m/already-exists.ko"]
    }"#;

    #[test]
    fn ready_comes_first_and_done_last() {
        let (ok, events) = run(
            &plan(&format!(r#"{{"steps": [], {MODULES}}}"#)),
            &FakeKernel::default(),
        );
        assert!(ok);
        assert!(matches!(events.first(), Some(Event::Ready { uptime_s }) if *uptime_s > 0.0));
        assert_eq!(events.last(), Some(&Event::Done { ok: true }));
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn load_brings_dependencies_first_with_params_on_the_module_only() {
        let kernel = FakeKernel::default();
        let (ok, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"load": {{"module": "race-timer", "params": {{"b": "2", "a": "1"}}}}}}], {MODULES}}}"#
            )),
            &kernel,
        );
        assert!(ok, "EEXIST on a dependency is fine: {events:?}");
        assert_eq!(
            kernel.calls(),
            [
                "load /m/dep-exists.ko []",
                "load /m/dep.ko []",
                "load /m/race-timer.ko [a=1 b=2]"
            ]
        );
        assert!(matches!(
            find_step(&events, "0"),
            Event::Step { op, module: Some(module), ok: true, error: None, .. }
                if op == "load" && module == "race-timer"
        ));
    }

    #[test]
    fn loading_a_module_that_is_already_loaded_fails() {
        let (ok, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"load": {{"module": "already-exists"}}}}], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        assert!(!ok);
        let Event::Step {
            error: Some(error), ..
        } = find_step(&events, "0")
        else {
            panic!("no error in {events:?}");
        };
        assert!(
            error.starts_with("finit_module(/m/already-exists.ko): File exists"),
            "{error}"
        );
        assert_eq!(events.last(), Some(&Event::Done { ok: false }));
    }

    #[test]
    fn loading_a_module_missing_from_the_plan_fails_clearly() {
        let kernel = FakeKernel::default();
        let (ok, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"load": {{"module": "nowhere"}}}}], {MODULES}}}"#
            )),
            &kernel,
        );
        assert!(!ok);
        assert!(kernel.calls().is_empty());
        let Event::Step {
            error: Some(error), ..
        } = find_step(&events, "0")
        else {
            panic!("no error in {events:?}");
        };
        assert!(
            error.contains("\"nowhere\"") && error.contains("module list"),
            "{error}"
        );
    }

    #[test]
    fn unload_uses_the_kernel_name_and_reports_the_errno() {
        let kernel = FakeKernel::default();
        let (_, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"unload": {{"module": "busy-mod"}}}}], {MODULES}}}"#
            )),
            &kernel,
        );
        assert_eq!(kernel.calls(), ["unload busy_mod"]);
        let Event::Step {
            op,
            module,
            ok,
            error,
            ..
        } = find_step(&events, "0")
        else {
            unreachable!()
        };
        assert_eq!(
            (op.as_str(), module.as_deref(), ok),
            ("unload", Some("busy-mod"), &false)
        );
        assert_eq!(
            error.as_deref(),
            Some("delete_module(busy_mod): Resource temporarily unavailable (os error 11)")
        );
    }

    #[test]
    fn repeat_and_parallel_ids_nest_by_index() {
        let (ok, events) = run(
            &plan(&format!(
                r#"{{"steps": [
                    {{"sleep": {{"ms": 0}}}},
                    {{"repeat": {{"times": 2, "steps": [
                        {{"load": {{"module": "race-timer"}}}},
                        {{"unload": {{"module": "race-timer"}}}}
                    ]}}}},
                    {{"parallel": {{"branches": [
                        [{{"sleep": {{"ms": 0}}}}],
                        [{{"sleep": {{"ms": 0}}}}, {{"sleep": {{"ms": 0}}}}]
                    ]}}}}
                ], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        assert!(ok);
        let mut ids = steps(&events);
        // Branches interleave freely; everything before the parallel step is in order.
        ids[4..].sort();
        assert_eq!(
            ids,
            [
                step("0", "sleep", true),
                step("1.0.0", "load", true),
                step("1.0.1", "unload", true),
                step("1.1.0", "load", true),
                step("1.1.1", "unload", true),
                step("2.0.0", "sleep", true),
                step("2.1.0", "sleep", true),
                step("2.1.1", "sleep", true),
            ]
        );
    }

    #[test]
    fn a_failed_step_does_not_stop_the_plan() {
        let kernel = FakeKernel::default();
        let (ok, events) = run(
            &plan(&format!(
                r#"{{"steps": [
                    {{"repeat": {{"times": 2, "steps": [{{"unload": {{"module": "busy-mod"}}}}]}}}},
                    {{"parallel": {{"branches": [
                        [{{"unload": {{"module": "busy-mod"}}}}],
                        [{{"unload": {{"module": "race-timer"}}}}]
                    ]}}}},
                    {{"shell": {{"command": "true"}}}}
                ], {MODULES}}}"#
            )),
            &kernel,
        );
        assert!(!ok);
        assert_eq!(kernel.calls().len(), 4);
        let mut results = steps(&events);
        results[2..4].sort();
        assert_eq!(
            results,
            [
                step("0.0.0", "unload", false),
                step("0.1.0", "unload", false),
                step("1.0.0", "unload", false),
                step("1.1.0", "unload", true),
                step("2", "shell", true),
            ]
        );
        assert_eq!(events.last(), Some(&Event::Done { ok: false }));
    }

    #[test]
    fn parallel_branches_overlap_in_time() {
        let kernel = FakeKernel::slow(Duration::from_millis(150));
        let started = Instant::now();
        let (ok, _) = run(
            &plan(&format!(
                r#"{{"steps": [{{"parallel": {{"branches": [
                    [{{"unload": {{"module": "a"}}}}],
                    [{{"unload": {{"module": "b"}}}}],
                    [{{"unload": {{"module": "c"}}}}]
                ]}}}}], {MODULES}}}"#
            )),
            &kernel,
        );
        let elapsed = started.elapsed();
        assert!(ok);
        let calls = kernel.calls.lock().unwrap();
        assert_eq!(calls.len(), 3);
        let last_start = calls.iter().map(|call| call.began).max().unwrap();
        let first_end = calls.iter().map(|call| call.ended).min().unwrap();
        assert!(last_start < first_end, "every call was in flight at once");
        assert!(elapsed < Duration::from_millis(400), "took {elapsed:?}");
    }

    #[test]
    fn memory_is_sampled_before_and_after_each_top_level_iteration_only() {
        let (_, events) = run(
            &plan(&format!(
                r#"{{"sample_memory": true, "steps": [
                    {{"repeat": {{"times": 2, "steps": [
                        {{"unload": {{"module": "m"}}}},
                        {{"repeat": {{"times": 3, "steps": [{{"sleep": {{"ms": 0}}}}]}}}}
                    ]}}}},
                    {{"unload": {{"module": "m"}}}}
                ], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        let order: Vec<String> = events
            .iter()
            .filter_map(|event| match event {
                Event::Memory { cycle, label, .. } => Some(format!("{label:?} {cycle}")),
                Event::Step { id, op, .. } if op == "unload" => Some(id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            order,
            ["Start 0", "Cycle 0", "0.0.0", "Cycle 1", "0.1.0", "Cycle 2", "1", "End 2"]
        );
        let Some(Event::Memory {
            meminfo,
            slab,
            vmalloc,
            modules,
            ..
        }) = events
            .iter()
            .find(|e| matches!(e, Event::Memory { cycle: 1, .. }))
        else {
            panic!("no sample 1");
        };
        assert_eq!(
            meminfo,
            &BTreeMap::from([
                ("HugePages_Total".to_string(), 3),
                ("MemFree".to_string(), 999 * 1024),
            ])
        );
        assert_eq!(
            slab,
            &BTreeMap::from([("kmalloc-64".to_string(), 2 * 64 * 64)])
        );
        assert!(
            vmalloc.is_empty(),
            "an unreadable file leaves its map empty"
        );
        assert_eq!(
            modules,
            &BTreeMap::from([("mh_trivial".to_string(), 12288)])
        );
    }

    #[test]
    fn cycles_are_counted_across_top_level_repeats() {
        let (_, events) = run(
            &plan(&format!(
                r#"{{"sample_memory": true, "steps": [
                    {{"repeat": {{"times": 2, "steps": [{{"sleep": {{"ms": 0}}}}]}}}},
                    {{"unload": {{"module": "m"}}}},
                    {{"repeat": {{"times": 1, "steps": [{{"sleep": {{"ms": 0}}}}]}}}}
                ], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        let cycles: Vec<(Label, u32)> = events
            .iter()
            .filter_map(|event| match event {
                Event::Memory { cycle, label, .. } => Some((*label, *cycle)),
                _ => None,
            })
            .collect();
        use Label::{Cycle, End, Start};
        assert_eq!(
            cycles,
            [
                (Start, 0),
                (Cycle, 0),
                (Cycle, 1),
                (Cycle, 2),
                (Cycle, 2),
                (Cycle, 3),
                (End, 3)
            ]
        );
    }

    #[test]
    fn memory_is_not_sampled_unless_asked() {
        let (_, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"repeat": {{"times": 2, "steps": [{{"sleep": {{"ms": 0}}}}]}}}}], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        assert!(!events.iter().any(|e| matches!(e, Event::Memory { .. })));
    }

    #[test]
    fn a_shell_step_reports_its_output_and_exit_status() {
        let (ok, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"shell": {{"command": "echo hello; exit 4"}}}}], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        assert!(!ok);
        let Event::Step { output, error, .. } = find_step(&events, "0") else {
            unreachable!()
        };
        assert_eq!(output.as_deref(), Some("hello\n"));
        assert!(
            error.as_deref().unwrap_or_default().contains('4'),
            "{error:?}"
        );
    }

    #[test]
    fn a_sleep_step_takes_its_time() {
        let (_, events) = run(
            &plan(&format!(
                r#"{{"steps": [{{"sleep": {{"ms": 30}}}}], {MODULES}}}"#
            )),
            &FakeKernel::default(),
        );
        let Event::Step { ms, module, .. } = find_step(&events, "0") else {
            unreachable!()
        };
        assert!(*ms >= 30.0, "{ms}");
        assert_eq!(module, &None);
    }

    /// Start a thread that reports its tid, optionally signals `finished` as branch `branch`,
    /// then ends itself with a bare exit syscall, as the kernel ends a thread that oopsed: no
    /// unwinding, no destructors.
    fn thread_that_vanishes(signal: Option<(usize, mpsc::Sender<usize>)>) -> libc::pid_t {
        let (tid_tx, tid_rx) = mpsc::channel();
        std::thread::spawn(move || {
            tid_tx.send(current_tid()).unwrap();
            if let Some((branch, to)) = signal {
                drop(FinishedSignal { branch, to });
            }
            // SAFETY: ends only this thread; what it owned is leaked, which a test can afford.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
        });
        let tid = tid_rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread_is_gone(tid) {
            assert!(Instant::now() < deadline, "thread {tid} did not exit");
            std::thread::sleep(Duration::from_millis(1));
        }
        tid
    }

    #[test]
    fn a_live_thread_is_not_gone() {
        assert!(!thread_is_gone(current_tid()));
        assert!(!thread_is_gone(0));
    }

    #[test]
    fn a_branch_whose_thread_vanished_unfinished_is_named() {
        let (finished_tx, finished_rx) = mpsc::channel();
        let tids = [
            AtomicI32::new(current_tid()),
            AtomicI32::new(thread_that_vanishes(None)),
        ];
        let _keep_open = finished_tx;
        assert_eq!(wait_for_branches(&tids, &finished_rx), Err(1));
    }

    #[test]
    fn a_branch_that_finished_before_its_thread_exited_is_not_vanished() {
        let (finished_tx, finished_rx) = mpsc::channel();
        let tids = [
            AtomicI32::new(thread_that_vanishes(Some((0, finished_tx.clone())))),
            AtomicI32::new(current_tid()),
        ];
        let late = std::thread::spawn(move || {
            std::thread::sleep(BRANCH_WATCH_INTERVAL * 2);
            drop(FinishedSignal {
                branch: 1,
                to: finished_tx,
            });
        });
        assert_eq!(wait_for_branches(&tids, &finished_rx), Ok(()));
        late.join().unwrap();
    }
}
