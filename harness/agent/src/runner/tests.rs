//! The plan runner against a fake kernel: steps, ids, memory samples, parallel branches.
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
    assert!(ok);
    let calls = kernel.calls.lock().unwrap();
    assert_eq!(calls.len(), 3);
    let last_start = calls.iter().map(|call| call.began).max().unwrap();
    let first_end = calls.iter().map(|call| call.ended).min().unwrap();
    assert!(last_start < first_end, "every call was in flight at once");
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
