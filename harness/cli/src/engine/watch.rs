//! Stage 3 of a scenario: following the running VM. The console goes to the log and the triage,
//! the control channel's events to what was observed, until the plan is done and the console
//! has settled, the kernel panicked, QEMU exited, a deadline passed or the run was cancelled.

use std::io::Write;
use std::time::Duration;

use modharness_protocol::Event as AgentEvent;
use modharness_report as report;
use modharness_triage::{Finding, Triage};
use modharness_vm::VmEvent;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::boot::Started;
use super::judge::own_finding;
use super::probe::{self, ProbeLog};
use super::Progress;

/// How long to keep reading the console after the plan is done, for the lines still in flight.
/// Watching longer for a late crash is the scenario's choice: a `sleep` step after the unload.
const SETTLE: Duration = Duration::from_millis(100);
/// Time to finish reading a crash report that has started, or the console after a panic.
const DRAIN: Duration = Duration::from_secs(3);
/// A console quiet this long has finished its current report: hand out what the triage holds.
const QUIET: Duration = Duration::from_millis(300);
/// Findings kept per scenario: a kernel that oopses in a loop must not drown the report.
const MAX_FINDINGS: usize = 50;
/// The longest host-raised storm a guest may ask for, and the highest rate: the request comes
/// from the guest, which must not keep the host busy for longer than a scenario could.
const MAX_HOST_STORM: Duration = Duration::from_secs(60);
const MAX_HOST_STORM_RATE: u32 = 1_000_000;

/// An IRQ storm as the agent counted it.
#[derive(Clone, Debug)]
pub(crate) struct Storm {
    pub device: String,
    pub raised: u64,
    pub delivered: u64,
    pub seconds: f64,
}

/// What one VM run produced, before judging.
#[derive(Default)]
pub(crate) struct Observed {
    pub findings: Vec<Finding>,
    /// Findings the harness itself makes: `hang`, `vm_crash`, `leak`.
    pub own: Vec<report::FindingEntry>,
    pub steps: report::StepStats,
    pub step_failures: Vec<String>,
    /// Memory samples, in the order the agent took them.
    pub memory: Vec<modharness_memory::Sample>,
    pub load_unload_ms: f64,
    pub unloads_ok: u32,
    pub storms: Vec<Storm>,
    /// What a mass probe did, over every VM so far.
    pub probe: ProbeLog,
    /// Where each module the agent loaded lay, in load order.
    pub layouts: modharness_triage::LoadHistory,
    /// kmemleak's scans after the last step, when the kernel has kmemleak.
    pub kmemleak_scans: u32,
    /// The agent said it was up.
    pub ready: bool,
    /// Why the agent never came up, when a deadline passed before it did.
    pub never_ready: Option<String>,
    pub interrupted: bool,
}

impl Observed {
    /// Add what another VM saw that probed a share of the same mass probe at the same time.
    pub fn add_share(&mut self, other: Observed) {
        self.findings.extend(other.findings);
        self.own.extend(other.own);
        self.steps.total += other.steps.total;
        self.steps.failed += other.steps.failed;
        self.step_failures.extend(other.step_failures);
        self.probe.merge(other.probe);
        self.ready &= other.ready;
        self.never_ready = self.never_ready.take().or(other.never_ready);
        self.interrupted |= other.interrupted;
    }

    /// Add what a later VM of the same scenario saw (a mass probe restarted after a crash).
    pub fn absorb(&mut self, later: Observed) {
        self.findings.extend(later.findings);
        self.own.extend(later.own);
        self.steps.total += later.steps.total;
        self.steps.failed += later.steps.failed;
        self.step_failures.extend(later.step_failures);
        // The memory verdict judges one VM's samples: the last one's (the probe's round
        // growth spans them all, see ProbeLog).
        if !later.memory.is_empty() {
            self.memory = later.memory;
        }
        self.load_unload_ms += later.load_unload_ms;
        self.unloads_ok += later.unloads_ok;
        self.storms.extend(later.storms);
        self.probe = later.probe;
        self.ready = later.ready;
        self.never_ready = later.never_ready;
        self.interrupted = later.interrupted;
    }

    /// Why the guest never got to the plan, when it crashed, hung or died before the agent was
    /// up; `None` when the agent came up (or the run was cancelled first).
    pub fn boot_failure(&self) -> Option<String> {
        if self.ready || self.interrupted {
            return None;
        }
        let reasons: Vec<&str> = self
            .never_ready
            .iter()
            .map(String::as_str)
            .chain(self.findings.iter().map(|f| f.title.as_str()))
            .chain(self.own.iter().map(|f| f.title.as_str()))
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Keep findings (up to [`MAX_FINDINGS`]) and tell the audience.
    fn take(
        &mut self,
        found: Vec<Finding>,
        scenario: &str,
        progress: &mpsc::UnboundedSender<Progress>,
    ) {
        for mut finding in found {
            if self.findings.len() >= MAX_FINDINGS {
                return;
            }
            modharness_triage::blame_bare_addresses(&mut finding, &self.layouts);
            if let Some(earlier) = self.findings.last() {
                modharness_triage::blame_as_fragment_of(&mut finding, earlier);
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
            AgentEvent::Memory {
                cycle,
                uptime_s,
                meminfo,
                label,
                slab,
                vmalloc,
                modules,
            } => self.memory.push(modharness_memory::Sample {
                cycle,
                uptime_s,
                label,
                meminfo,
                slab,
                vmalloc,
                modules,
            }),
            AgentEvent::IrqStorm {
                device,
                raised,
                delivered,
                seconds,
                ..
            } => self.storms.push(Storm {
                device,
                raised,
                delivered,
                seconds,
            }),
            AgentEvent::ModuleLayout {
                module,
                size,
                sections,
                load_window_s,
            } => self.layouts.push(modharness_triage::LoadedModule {
                name: module,
                size,
                sections,
                load_window_s,
            }),
            AgentEvent::KmemleakScanned { scans, .. } => self.kmemleak_scans += scans,
            AgentEvent::Ready { .. } => self.ready = true,
            AgentEvent::Done { .. }
            | AgentEvent::HostStorm { .. }
            | AgentEvent::ProbeRound { .. }
            | AgentEvent::ProbeStart { .. }
            | AgentEvent::ProbeModule { .. }
            | AgentEvent::ProbeMemory { .. } => {}
        }
    }
}

/// How to follow one VM.
pub(crate) struct Watch<'a> {
    pub scenario: &'a str,
    /// The share of a mass probe this VM runs, `(I, N)`, for the progress line.
    pub shard: Option<(u32, u32)>,
    /// The whole run's limit: past it, a guest that has not finished is a hang.
    pub timeout: Duration,
    /// The agent must be up within this, or the boot is given up (a KVM guest that stalls).
    pub ready_within: Option<Duration>,
    pub progress: &'a mpsc::UnboundedSender<Progress>,
    /// The kernel's `CONFIG_HZ`, to read when kmemleak's objects were allocated.
    pub hz: Option<u32>,
}

/// How often the terminal hears how a mass probe is going.
const PROBE_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The mutable side of a watch: one value per thing the loop waits for.
struct Follow {
    seen: Observed,
    triage: Triage,
    /// Once set, the run ends at this instant (extended while a crash report is being read).
    ending: Option<Instant>,
    guest_down: bool,
    done: bool,
    qemu_exit: Option<(Option<i32>, String)>,
    last_console: Instant,
    /// The triage has been told the console went quiet since the last bytes.
    settled: bool,
    host_storms: Vec<tokio::task::JoinHandle<()>>,
    /// When the terminal last heard of the mass probe.
    probe_told: Instant,
}

impl Watch<'_> {
    /// Follow `started` until the end, then end QEMU; everything seen goes to `log` and the result.
    /// A mass probe's log so far goes on in `probe`.
    pub async fn follow(
        &self,
        started: Started,
        mut log: std::fs::File,
        cancel: &mut watch::Receiver<bool>,
        probe: ProbeLog,
    ) -> Observed {
        let Started {
            mut machine,
            doorbell,
        } = started;
        let began = Instant::now();
        let deadline = began + self.timeout;
        let ready_deadline = self.ready_within.map(|d| began + d);
        let mut f = Follow {
            seen: Observed {
                probe,
                layouts: modharness_triage::LoadHistory::with_hz(self.hz),
                ..Observed::default()
            },
            triage: Triage::new(),
            ending: None,
            guest_down: false,
            done: false,
            qemu_exit: None,
            last_console: began,
            settled: true,
            host_storms: Vec::new(),
            probe_told: began,
        };
        loop {
            let mut until = f.ending.map_or(deadline, |e| e.min(deadline));
            if let (Some(at), false) = (ready_deadline, f.seen.ready) {
                until = until.min(at);
            }
            let wedged_at = f
                .seen
                .probe
                .in_flight
                .as_ref()
                .map(|busy| Instant::from_std(busy.since) + probe::MODULE_LIMIT);
            tokio::select! {
                _ = tokio::time::sleep_until(f.last_console + QUIET), if !f.settled => {
                    f.settled = true;
                    let found = f.triage.settle();
                    f.seen.take(found, self.scenario, self.progress);
                }
                event = machine.events.recv() => {
                    let Some(event) = event else { break };
                    match event {
                        VmEvent::Console(bytes) => {
                            let _ = log.write_all(&bytes);
                            self.on_console(&mut f, &bytes);
                        }
                        VmEvent::Control(line) => {
                            if let Some(event) = AgentEvent::parse_line(&line) {
                                if let (AgentEvent::HostStorm { rate, duration_ms, .. }, Some(server)) = (&event, &doorbell) {
                                    let server = server.clone();
                                    let rate = (*rate).min(MAX_HOST_STORM_RATE);
                                    let duration = Duration::from_millis(*duration_ms).min(MAX_HOST_STORM);
                                    f.host_storms.push(tokio::spawn(async move { let _ = server.storm(0, rate, duration).await; }));
                                }
                                if let AgentEvent::Done { .. } = event {
                                    f.done = true;
                                    f.ending = Some(Instant::now() + SETTLE);
                                }
                                if f.seen.probe.record(&event) {
                                    self.tell_probe_progress(&mut f);
                                } else {
                                    f.seen.record(event);
                                }
                            }
                        }
                        VmEvent::GuestPanicked | VmEvent::Shutdown(_) => {
                            f.guest_down = true;
                            f.ending = Some(Instant::now() + DRAIN);
                        }
                        VmEvent::Exited { code, stderr } => {
                            f.qemu_exit = Some((code, stderr));
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    self.on_deadline(&mut f, Instant::now() >= deadline, began);
                    break;
                }
                _ = tokio::time::sleep_until(wedged_at.unwrap_or(until)), if wedged_at.is_some() => {
                    self.on_wedged_probe(&mut f);
                    break;
                }
                _ = cancel.changed() => {
                    f.seen.interrupted = true;
                    break;
                }
            }
            // A panicked kernel has nothing more to say; where its reboot does not end QEMU it
            // would boot again, and panic again.
            if f.seen.findings.iter().any(|x| x.panicked) || f.seen.findings.len() >= MAX_FINDINGS {
                let soon = Instant::now() + DRAIN;
                f.ending = Some(f.ending.map_or(soon, |e| e.min(soon)));
                f.guest_down = true;
            }
        }
        machine.shutdown(Duration::from_millis(500)).await;
        for storm in &f.host_storms {
            storm.abort();
        }
        // Whatever is still buffered belongs to the log and the triage.
        let found = f.triage.finish();
        f.seen.take(found, self.scenario, self.progress);
        if let Some((code, stderr)) = f.qemu_exit.take() {
            let explained = f.guest_down || f.done || !f.seen.findings.is_empty();
            if !explained {
                let title = format!(
                    "QEMU exited ({}) before the plan finished: {}",
                    code.map_or("killed by a signal".into(), |c| format!("status {c}")),
                    stderr.lines().next().unwrap_or("no message")
                );
                f.seen.own.push(own_finding("vm_crash", title, None));
            }
        }
        let _ = log.flush();
        f.seen
    }

    /// A module has been loading or unloading for too long: that is its hang.
    fn on_wedged_probe(&self, f: &mut Follow) {
        if let Some(busy) = &f.seen.probe.in_flight {
            let title = format!(
                "mass probe: {} did not finish loading and unloading within {} s",
                busy.module,
                probe::MODULE_LIMIT.as_secs()
            );
            f.seen
                .own
                .push(own_finding("hang", title, Some(busy.module.clone())));
        }
    }

    fn tell_probe_progress(&self, f: &mut Follow) {
        let Some((round, done, total, per_s)) = f.seen.probe.progress() else {
            return;
        };
        if f.probe_told.elapsed() < PROBE_PROGRESS_EVERY && done < total {
            return;
        }
        f.probe_told = Instant::now();
        let _ = self.progress.send(Progress::Probe {
            scenario: self.scenario.to_string(),
            round: round + 1,
            shard: self.shard,
            done,
            total,
            per_s,
        });
    }

    fn on_console(&self, f: &mut Follow, bytes: &[u8]) {
        f.last_console = Instant::now();
        f.settled = false;
        let found = f.triage.feed(bytes);
        f.seen.take(found, self.scenario, self.progress);
        if let Some(at) = f.ending {
            if f.triage.in_report() {
                f.ending = Some(at.max(Instant::now() + DRAIN));
            }
        }
    }

    /// A deadline passed: the run's own end, the scenario's timeout, or the agent's boot limit.
    fn on_deadline(&self, f: &mut Follow, past_timeout: bool, began: Instant) {
        if !f.seen.ready {
            // The guest never got to the plan: that is the boot's failure, not the scenario's.
            f.seen.never_ready = Some(format!(
                "no agent within {:.0} s",
                began.elapsed().as_secs_f64()
            ));
        } else if past_timeout && !f.done && !f.guest_down {
            f.seen.own.push(own_finding(
                "hang",
                format!(
                    "guest stopped answering: no result within {:?}",
                    self.timeout
                ),
                None,
            ));
        }
    }
}
