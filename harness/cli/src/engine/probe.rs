//! The host's side of a `mass_probe` step: what each module did, across the VMs it took, where to
//! go on after a module crashed or wedged its VM, and the report of it all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use modharness_protocol::{Event as AgentEvent, ProbeResume};
use modharness_report::{MassProbeResult, ProbeModuleResult, ProbeRoundResult};

/// A module that has not finished loading and unloading after this has wedged the guest (a
/// load waiting for hardware that never answers, an unload stuck on a reference); the kernel's
/// hung-task detector speaks at the same age.
/// test_bpf runs its thousand self-tests at load, a minute under TCG: it is slow, not wedged.
pub(crate) const MODULE_LIMIT: Duration = Duration::from_secs(120);
/// VMs started again after crashes before the probe gives up: a kernel that dies at every
/// module is not worth 4,000 boots.
pub(crate) const MAX_RESTARTS: u32 = 25;

/// The module a probe was busy with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct InFlight {
    pub round: u32,
    pub index: usize,
    pub module: String,
    pub since: Instant,
}

/// The memory samples of one VM over part of one round: the first and the latest.
#[derive(Clone, Debug)]
struct Span {
    first: (usize, BTreeMap<String, u64>),
    last: (usize, BTreeMap<String, u64>),
}

/// Everything the agent said about a mass probe, over every VM it ran in.
#[derive(Default)]
pub(crate) struct ProbeLog {
    /// Modules in the order first tried, with what each round saw.
    modules: Vec<ProbeModuleResult>,
    by_name: BTreeMap<String, usize>,
    /// Per round: (modules in its list, host time it began, host time it ended).
    rounds: BTreeMap<u32, (usize, Instant, Option<Instant>)>,
    /// Per round: how many modules finished, for progress.
    finished: BTreeMap<u32, usize>,
    /// The module being probed, if one is.
    pub in_flight: Option<InFlight>,
    /// Modules the current round keeps loaded (they bound a device).
    kept: Vec<String>,
    /// Unreturned bytes summed per round.
    unreturned: BTreeMap<u32, i64>,
    /// Per round: the memory spans of the VMs that ran it, the current VM's last.
    spans: BTreeMap<u32, Vec<Span>>,
    /// Rounds whose last span belongs to the current VM (a restart ends them all).
    open_spans: Vec<u32>,
    pub restarts: u32,
}

impl ProbeLog {
    /// Take one agent event; `true` when it was a probe event.
    pub fn record(&mut self, event: &AgentEvent) -> bool {
        let now = Instant::now();
        match event {
            AgentEvent::ProbeRound { round, total } => {
                // A new round ends the ones before it.
                for (r, entry) in self.rounds.iter_mut() {
                    if r < round && entry.2.is_none() {
                        entry.2 = Some(now);
                    }
                }
                if self.rounds.keys().all(|r| r < round) {
                    self.kept.clear();
                }
                self.rounds
                    .entry(*round)
                    .and_modify(|e| e.0 = (*total).max(e.0))
                    .or_insert((*total, now, None));
            }
            AgentEvent::ProbeStart {
                round,
                index,
                module,
            } => {
                self.in_flight = Some(InFlight {
                    round: *round,
                    index: *index,
                    module: module.clone(),
                    since: now,
                });
            }
            AgentEvent::ProbeModule {
                round,
                module,
                error,
                bound,
                kept,
                load_ms,
                unload_ms,
                unload_error,
                unreturned_bytes,
                ..
            } => {
                self.in_flight = None;
                *self.finished.entry(*round).or_default() += 1;
                if *kept {
                    self.kept.push(module.clone());
                }
                if let Some(bytes) = unreturned_bytes {
                    *self.unreturned.entry(*round).or_default() += bytes;
                }
                let entry = self.entry(module);
                let tries = entry.unreturned_bytes.len().max(1) as f64;
                entry.loaded |= error.is_none();
                if entry.error.is_none() {
                    entry.error.clone_from(error);
                }
                for device in bound {
                    if !entry.bound.contains(device) {
                        entry.bound.push(device.clone());
                    }
                }
                entry.load_ms = (entry.load_ms * (tries - 1.0) + load_ms) / tries;
                entry.unload_ms = (entry.unload_ms * (tries - 1.0) + unload_ms) / tries;
                if entry.unload_error.is_none() {
                    entry.unload_error.clone_from(unload_error);
                }
                if let Some(bytes) = unreturned_bytes {
                    entry.unreturned_bytes.push(*bytes);
                }
            }
            AgentEvent::ProbeMemory {
                round,
                done,
                meminfo,
            } => {
                let sample = (*done, meminfo.clone());
                let spans = self.spans.entry(*round).or_default();
                match spans.last_mut() {
                    Some(span) if self.open_spans.contains(round) => span.last = sample,
                    _ => {
                        spans.push(Span {
                            first: sample.clone(),
                            last: sample,
                        });
                        self.open_spans.push(*round);
                    }
                }
            }
            _ => return false,
        }
        true
    }

    fn entry(&mut self, module: &str) -> &mut ProbeModuleResult {
        let index = *self.by_name.entry(module.to_string()).or_insert_with(|| {
            self.modules.push(ProbeModuleResult {
                name: module.to_string(),
                ..Default::default()
            });
            self.modules.len() - 1
        });
        &mut self.modules[index]
    }

    /// Add the log of a VM that probed another share of the same selection at the same time.
    pub fn merge(&mut self, other: ProbeLog) {
        for module in other.modules {
            let entry = self.entry(&module.name);
            if entry.unreturned_bytes.is_empty() && !entry.loaded && entry.error.is_none() {
                *entry = module;
            }
        }
        for (round, (total, began, ended)) in other.rounds {
            let mine = self.rounds.entry(round).or_insert((0, began, ended));
            mine.0 += total;
            mine.1 = mine.1.min(began);
            mine.2 = match (mine.2, ended) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        for (round, done) in other.finished {
            *self.finished.entry(round).or_default() += done;
        }
        for (round, bytes) in other.unreturned {
            *self.unreturned.entry(round).or_default() += bytes;
        }
        for (round, spans) in other.spans {
            self.spans.entry(round).or_default().extend(spans);
        }
        self.restarts += other.restarts;
    }

    /// Whether a probe has started at all.
    pub fn started(&self) -> bool {
        !self.rounds.is_empty()
    }

    /// `(round, done, total, modules per second)` of the round in progress.
    pub fn progress(&self) -> Option<(u32, usize, usize, f64)> {
        let (round, (total, began, _)) = self.rounds.iter().next_back()?;
        let done = self.finished.get(round).copied().unwrap_or(0);
        let seconds = began.elapsed().as_secs_f64();
        let per_s = if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        };
        Some((*round, done, *total, per_s))
    }

    /// The VM died while `in_flight` was loading or unloading: record `title` against the
    /// `culprit` the console named (an RCU callback of a module unloaded earlier) or else the
    /// module in flight, and say where a fresh VM goes on from, after the module in flight.
    pub fn blame_in_flight(
        &mut self,
        title: &str,
        culprit: Option<&str>,
    ) -> Option<(String, ProbeResume)> {
        let busy = self.in_flight.take()?;
        // The module in flight was tried, whoever the console blames.
        self.entry(&busy.module);
        let entry = self.entry(culprit.unwrap_or(&busy.module));
        entry.finding.get_or_insert_with(|| title.to_string());
        *self.finished.entry(busy.round).or_default() += 1;
        self.restarts += 1;
        // The fresh VM's samples start spans of their own.
        self.open_spans.clear();
        let resume = ProbeResume {
            round: busy.round,
            index: busy.index + 1,
            kept: self.kept.clone(),
        };
        Some((busy.module, resume))
    }

    /// Each round's growth of every figure, summed over the spans of the VMs that ran it, and
    /// the modules those spans cover (fewer than the round's when a crash cut one short).
    fn growth(&self, round: u32) -> (BTreeMap<String, i64>, usize) {
        let mut growth = BTreeMap::new();
        let mut covered = 0;
        for span in self.spans.get(&round).into_iter().flatten() {
            let ((from, before), (to, after)) = (&span.first, &span.last);
            if to <= from {
                continue;
            }
            covered += to - from;
            for (figure, value) in after {
                if let Some(old) = before.get(figure) {
                    *growth.entry(figure.clone()).or_default() += *value as i64 - *old as i64;
                }
            }
        }
        (growth, covered)
    }

    /// The report of the probe.
    pub fn result(&self) -> MassProbeResult {
        let end = Instant::now();
        let rounds = self
            .rounds
            .iter()
            .map(|(round, (total, began, ended))| {
                let seconds = ended.unwrap_or(end).duration_since(*began).as_secs_f64();
                let modules = self.finished.get(round).copied().unwrap_or(0).max(*total);
                let (growth, growth_modules) = self.growth(*round);
                ProbeRoundResult {
                    round: round + 1,
                    modules,
                    seconds,
                    modules_per_s: if seconds > 0.0 {
                        modules as f64 / seconds
                    } else {
                        0.0
                    },
                    growth,
                    growth_modules,
                    unreturned_bytes: self.unreturned.get(round).copied().unwrap_or(0),
                }
            })
            .collect();
        MassProbeResult {
            modules_tried: self.modules.len(),
            loaded: self.modules.iter().filter(|m| m.loaded).count(),
            bound: self.modules.iter().filter(|m| !m.bound.is_empty()).count(),
            failed: self
                .modules
                .iter()
                .filter(|m| !m.loaded && m.finding.is_none())
                .count(),
            restarts: self.restarts,
            rounds,
            modules: self.modules.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(round: u32, index: usize, name: &str, error: Option<&str>, bytes: i64) -> AgentEvent {
        AgentEvent::ProbeModule {
            round,
            index,
            module: name.into(),
            error: error.map(str::to_string),
            bound: Vec::new(),
            kept: false,
            load_ms: 2.0,
            unload_ms: 4.0,
            unload_error: None,
            unreturned_bytes: Some(bytes),
        }
    }

    fn start(round: u32, index: usize, name: &str) -> AgentEvent {
        AgentEvent::ProbeStart {
            round,
            index,
            module: name.into(),
        }
    }

    #[test]
    fn modules_are_counted_once_over_rounds_with_their_bytes_per_round() {
        let mut log = ProbeLog::default();
        for round in 0..2 {
            log.record(&AgentEvent::ProbeRound { round, total: 2 });
            log.record(&start(round, 0, "a"));
            log.record(&module(round, 0, "a", None, 4096));
            log.record(&start(round, 1, "b"));
            log.record(&module(
                round,
                1,
                "b",
                Some("finit_module: No such device"),
                0,
            ));
        }
        let result = log.result();
        assert_eq!(
            (result.modules_tried, result.loaded, result.failed),
            (2, 1, 1)
        );
        assert_eq!(result.modules[0].unreturned_bytes, [4096, 4096]);
        assert_eq!(result.rounds.len(), 2);
        assert_eq!(result.rounds[1].unreturned_bytes, 4096);
        assert_eq!(result.top_unreturned(5), [("a", 8192)]);
    }

    #[test]
    fn a_crash_blames_the_module_in_flight_and_resumes_after_it() {
        let mut log = ProbeLog::default();
        log.record(&AgentEvent::ProbeRound { round: 0, total: 3 });
        log.record(&start(0, 0, "keeper"));
        log.record(&AgentEvent::ProbeModule {
            round: 0,
            index: 0,
            module: "keeper".into(),
            error: None,
            bound: vec!["0000:00:02.0".into()],
            kept: true,
            load_ms: 1.0,
            unload_ms: 0.0,
            unload_error: None,
            unreturned_bytes: None,
        });
        log.record(&start(0, 1, "crasher"));
        let (module, resume) = log
            .blame_in_flight("BUG: oops in crasher_init", None)
            .unwrap();
        assert_eq!(module, "crasher");
        assert_eq!(
            resume,
            ProbeResume {
                round: 0,
                index: 2,
                kept: vec!["keeper".into()]
            }
        );
        let result = log.result();
        assert_eq!(result.restarts, 1);
        assert_eq!(result.bound, 1);
        let crasher = result.modules.iter().find(|m| m.name == "crasher").unwrap();
        assert_eq!(
            crasher.finding.as_deref(),
            Some("BUG: oops in crasher_init")
        );
        assert_eq!(result.failed, 0, "a crash is not a failed load");
        assert!(
            log.blame_in_flight("again", None).is_none(),
            "nothing in flight any more"
        );
    }

    #[test]
    fn a_crash_the_console_blames_on_an_earlier_module_is_recorded_against_it() {
        let mut log = ProbeLog::default();
        log.record(&AgentEvent::ProbeRound { round: 0, total: 2 });
        log.record(&start(0, 0, "configfs"));
        log.record(&module(0, 0, "configfs", None, 0));
        log.record(&start(0, 1, "vhci_hcd"));
        let title = "BUG: unable to handle page fault in rcu_do_batch";
        let (in_flight, resume) = log.blame_in_flight(title, Some("configfs")).unwrap();
        assert_eq!((in_flight.as_str(), resume.index), ("vhci_hcd", 2));
        let result = log.result();
        assert_eq!(result.modules[0].finding.as_deref(), Some(title));
        assert_eq!(result.modules.len(), 2, "vhci_hcd was tried");
    }

    fn memory(round: u32, done: usize, sunreclaim: u64) -> AgentEvent {
        AgentEvent::ProbeMemory {
            round,
            done,
            meminfo: BTreeMap::from([("SUnreclaim".to_string(), sunreclaim)]),
        }
    }

    #[test]
    fn a_round_split_by_a_crash_sums_the_growth_each_vm_sampled() {
        let mut log = ProbeLog::default();
        log.record(&AgentEvent::ProbeRound {
            round: 0,
            total: 100,
        });
        log.record(&memory(0, 0, 1000));
        log.record(&memory(0, 50, 1500));
        log.record(&start(0, 60, "crasher"));
        log.blame_in_flight("BUG: oops in crasher_init", None)
            .unwrap();
        // The fresh VM has memory figures of its own: only its own span counts.
        log.record(&AgentEvent::ProbeRound {
            round: 0,
            total: 100,
        });
        log.record(&memory(0, 61, 9000));
        log.record(&memory(0, 100, 9300));
        let round = &log.result().rounds[0];
        assert_eq!(round.growth["SUnreclaim"], 800);
        assert_eq!(round.growth_modules, 89, "modules 51-61 are not spanned");
    }

    #[test]
    fn shares_of_a_round_run_at_once_add_their_growth() {
        let (mut one, mut two) = (ProbeLog::default(), ProbeLog::default());
        for (log, base) in [(&mut one, 100), (&mut two, 5000)] {
            log.record(&AgentEvent::ProbeRound { round: 0, total: 2 });
            log.record(&memory(0, 0, base));
            log.record(&memory(0, 2, base + 64));
        }
        one.merge(two);
        let round = &one.result().rounds[0];
        assert_eq!((round.growth["SUnreclaim"], round.growth_modules), (128, 4));
    }

    #[test]
    fn a_vm_that_died_before_its_second_sample_adds_no_growth() {
        let mut log = ProbeLog::default();
        log.record(&AgentEvent::ProbeRound { round: 0, total: 9 });
        log.record(&memory(0, 0, 1000));
        log.record(&start(0, 3, "crasher"));
        log.blame_in_flight("oops", None).unwrap();
        let round = &log.result().rounds[0];
        assert!(round.growth.is_empty());
        assert_eq!(round.growth_modules, 0);
    }

    #[test]
    fn progress_follows_the_newest_round() {
        let mut log = ProbeLog::default();
        assert!(!log.started());
        log.record(&AgentEvent::ProbeRound { round: 0, total: 2 });
        log.record(&module(0, 0, "a", None, 0));
        let (round, done, total, _) = log.progress().unwrap();
        assert_eq!((round, done, total), (0, 1, 2));
        log.record(&AgentEvent::ProbeRound { round: 1, total: 2 });
        let (round, done, total, _) = log.progress().unwrap();
        assert_eq!((round, done, total), (1, 0, 2));
    }
}
