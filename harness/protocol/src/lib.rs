//! The contract between the host engine and the guest agent.
//!
//! The host writes a [`Plan`] as JSON into the initramfs (at [`PLAN_PATH`]); the agent runs it and
//! answers with one [`Event`] per line of JSON on the control serial port ([`CONTROL_TTY`]), a
//! channel kept apart from the kernel console so that an oops can never garble a step result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use modharness_memory::Label;

/// Where the plan lives inside the guest.
pub const PLAN_PATH: &str = "/modharness/plan.json";
/// The serial port the agent writes events to (the kernel console stays on ttyS0).
pub const CONTROL_TTY: &str = "/dev/ttyS1";

/// Everything the agent needs to run one scenario.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// For each module name a scenario may load: the `.ko` paths inside the guest to load in
    /// order, dependencies first, the module itself last.
    pub modules: BTreeMap<String, Vec<String>>,
    /// Sample memory at the start, around every iteration of a top-level `repeat`, and at the
    /// end (see [`Event::Memory`]).
    #[serde(default)]
    pub sample_memory: bool,
    /// The kernel's debug checks the agent drives (the host reads them off the kernel's config).
    #[serde(default)]
    pub debug: DebugChecks,
    /// Where a `mass_probe` step starts again after the VM that ran it crashed or wedged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<ProbeResume>,
}

/// Debug facilities of the guest kernel that change what the agent does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugChecks {
    /// The kernel has kmemleak: forget what was unreferenced before the first step, and after
    /// the last one scan, wait for the objects to age, and scan again with the reports printed
    /// on the console.
    #[serde(default)]
    pub kmemleak: bool,
    /// The kernel has KASAN, which holds freed objects in a quarantine: shrink every slab cache
    /// before each memory sample, so that memory a module returned counts as returned.
    #[serde(default)]
    pub kasan: bool,
}

/// A point in a mass probe to go on from in a fresh VM.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeResume {
    /// The round to go on in (0-based).
    pub round: u32,
    /// The first module of the round's list to try (0-based).
    pub index: usize,
    /// Modules the round had kept loaded because they bound a device: loaded again first, so
    /// that the devices behind them (USB behind xHCI) are there for the rest of the round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<String>,
}

/// Which modules a `mass_probe` tries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProbeSelection {
    /// What udev coldplug would load: the modules whose aliases match the guest's devices,
    /// again after each pass while new devices appear.
    Modalias,
    /// Every module of the kernel's tree, in `modules.order`.
    All,
    /// Modules whose names match these names or globs, in `modules.order`.
    Named(Vec<String>),
}

/// One thing the agent does. Composite steps nest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `finit_module` the module (and its dependencies, when not loaded yet).
    Load {
        module: String,
        #[serde(default)]
        params: BTreeMap<String, String>,
    },
    /// `delete_module` the module.
    Unload { module: String },
    /// Sleep in the agent.
    Sleep { ms: u64 },
    /// Run `steps` `times` times.
    Repeat { times: u32, steps: Vec<Step> },
    /// Run each branch on its own thread, all at once; the step ends when every branch has.
    Parallel { branches: Vec<Vec<Step>> },
    /// Run a command with `/bin/sh -c`.
    Shell { command: String },
    /// Raise interrupts on a device at `rate` per second for `duration_ms`, and count what the
    /// guest received. `edu` is raised by the agent itself (guest-driven); `ivshmem` is raised
    /// by the host, which the agent asks with [`Event::HostStorm`].
    IrqStorm {
        device: String,
        rate: u32,
        duration_ms: u64,
    },
    /// The installer's hardware detection: load each selected module of the kernel's own tree
    /// (dependencies first), keep it while it drives a device, unload it (and what it pulled in)
    /// otherwise, and measure what did not come back; `rounds` times.
    MassProbe {
        modules: ProbeSelection,
        rounds: u32,
        /// Names or globs never to load.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skip: Vec<String>,
        /// `(I, N)`: only every N-th module of the selection, starting at the I-th (1-based).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shard: Option<(u32, u32)>,
        /// VMs the host splits the selection across, each probing its share at the same time
        /// (the host's business: each agent sees one VM's shard).
        #[serde(default = "one_vm")]
        vms: u32,
    },
}

fn one_vm() -> u32 {
    1
}

/// The devices an `irq_storm` step can use.
pub const STORM_DEVICES: &[&str] = &["edu", "ivshmem"];

/// The PCI vendor and device ids of a storm device.
pub fn storm_device_ids(device: &str) -> Option<(u16, u16)> {
    match device {
        "edu" => Some((0x1234, 0x11e8)),
        "ivshmem" => Some((0x1af4, 0x1110)),
        _ => None,
    }
}

impl Step {
    /// The short name of the operation, as reported in [`Event::Step`].
    pub fn op(&self) -> &'static str {
        match self {
            Step::Load { .. } => "load",
            Step::Unload { .. } => "unload",
            Step::Sleep { .. } => "sleep",
            Step::Repeat { .. } => "repeat",
            Step::Parallel { .. } => "parallel",
            Step::Shell { .. } => "shell",
            Step::IrqStorm { .. } => "irq_storm",
            Step::MassProbe { .. } => "mass_probe",
        }
    }
}

/// Whether any step of `steps`, at any depth, satisfies `wanted`.
pub fn any_step(steps: &[Step], wanted: &impl Fn(&Step) -> bool) -> bool {
    steps.iter().any(|step| {
        wanted(step)
            || match step {
                Step::Repeat { steps, .. } => any_step(steps, wanted),
                Step::Parallel { branches } => branches.iter().any(|b| any_step(b, wanted)),
                _ => false,
            }
    })
}

/// A message from the agent to the host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The agent is up and has read its plan.
    Ready { uptime_s: f64 },
    /// A leaf step finished (composite steps report through their leaves).
    Step {
        /// Position in the plan: indexes joined by dots, e.g. `3.17.1` is step 1 of the 18th
        /// iteration of step 3; a parallel branch adds its index as well.
        id: String,
        op: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        module: Option<String>,
        ok: bool,
        /// What went wrong, e.g. `delete_module: Resource temporarily unavailable (os error 11)`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Guest uptime when the step started.
        start_s: f64,
        /// How long it took.
        ms: f64,
        /// Output of a shell step (stdout and stderr, truncated).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// A memory sample (when the plan asks for them): before the first step (`label: start`),
    /// before the first iteration of a top-level repeat and after each (`cycle`), after the last
    /// step (`end`). Numbers only, in bytes; every field after `meminfo` may be missing from
    /// an older agent's line.
    Memory {
        /// Top-level repeat iterations completed so far, counted across repeats.
        cycle: u32,
        uptime_s: f64,
        /// `/proc/meminfo`, in bytes, by field name.
        meminfo: BTreeMap<String, u64>,
        #[serde(default)]
        label: Label,
        /// Bytes per slab cache with objects (`/proc/slabinfo`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        slab: BTreeMap<String, u64>,
        /// Bytes per vmalloc caller (`/proc/vmallocinfo`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        vmalloc: BTreeMap<String, u64>,
        /// Size of each loaded module (`/proc/modules`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        modules: BTreeMap<String, u64>,
    },
    /// The agent asks the host to raise a host-side storm now; it counts what arrives.
    HostStorm {
        id: String,
        device: String,
        rate: u32,
        duration_ms: u64,
    },
    /// An IRQ storm ended: what the agent raised (0 when the host raised it) and what
    /// `/proc/interrupts` counted for the device meanwhile.
    IrqStorm {
        id: String,
        device: String,
        raised: u64,
        delivered: u64,
        seconds: f64,
    },
    /// A mass-probe round begins: how many modules its list holds (a modalias round may grow).
    ProbeRound { round: u32, total: usize },
    /// A mass probe is about to load `module` (the `index`th of the round): if the VM dies
    /// before [`Event::ProbeModule`] for it, this module was in flight.
    ProbeStart {
        round: u32,
        index: usize,
        module: String,
    },
    /// A mass probe is done with one module.
    ProbeModule {
        round: u32,
        index: usize,
        module: String,
        /// Loading failed with this (`finit_module(...): No such device`); `None` when it loaded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Devices its drivers bound (e.g. `0000:00:02.0`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bound: Vec<String>,
        /// Kept loaded until the round's end, because it bound a device.
        #[serde(default)]
        kept: bool,
        load_ms: f64,
        unload_ms: f64,
        /// Unloading failed with this.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unload_error: Option<String>,
        /// Unreclaimable slab + vmalloc + per-CPU bytes after its unload against before its
        /// load (absent for modules kept to the round's end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unreturned_bytes: Option<i64>,
    },
    /// A mass-probe round's memory, caches dropped, once `done` of its modules are through: at
    /// the round's start (or where a fresh VM resumes it), every few modules, and at its end.
    /// The host sums each VM's last sample against its first, so a round that a crash split
    /// still has a growth figure, over the modules those samples span.
    ProbeMemory {
        round: u32,
        done: usize,
        meminfo: BTreeMap<String, u64>,
    },
    /// Where a module the agent loaded lies in memory (`/sys/module/NAME/sections`, the size
    /// from `/proc/modules`), so that a later report's bare address, once the module is gone,
    /// can still be blamed on it.
    ModuleLayout {
        module: String,
        size: u64,
        sections: BTreeMap<String, u64>,
        /// Guest uptime in seconds when the load began and when it returned (the module's init
        /// ran between): what kmemleak's allocation times are held against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load_window_s: Option<(f64, f64)>,
    },
    /// kmemleak's scans are done: reports, if any, are on the console.
    KmemleakScanned { scans: u32, seconds: f64 },
    /// The plan is finished.
    Done { ok: bool },
}

impl Event {
    /// Parse one line from the control channel; `None` for anything that is not an event.
    /// Bytes before the event's `{` are skipped: a UART may deliver a stray byte as the guest
    /// brings it up, and that must not cost the first event (the agent's `ready`).
    pub fn parse_line(line: &str) -> Option<Event> {
        let line = line.trim();
        serde_json::from_str(&line[line.find('{')?..]).ok()
    }

    /// The line the agent writes for this event (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_line() {
        let ev = Event::Step {
            id: "2.0".into(),
            op: "load".into(),
            module: Some("m".into()),
            ok: false,
            error: Some("finit_module: File exists".into()),
            start_s: 1.5,
            ms: 2.25,
            output: None,
        };
        assert_eq!(Event::parse_line(&ev.to_line()), Some(ev));
    }

    #[test]
    fn a_stray_byte_before_the_first_event_does_not_lose_it() {
        let ready = Event::Ready { uptime_s: 6.2 };
        for junk in ["\u{0}", "\u{fffd}", "\r", "xx "] {
            assert_eq!(
                Event::parse_line(&format!("{junk}{}", ready.to_line())),
                Some(ready.clone())
            );
        }
        assert_eq!(Event::parse_line("no event here"), None);
    }

    #[test]
    fn any_step_looks_inside_repeats_and_parallel_branches() {
        let sleep = Step::Sleep { ms: 1 };
        let nested = vec![Step::Repeat {
            times: 2,
            steps: vec![Step::Parallel {
                branches: vec![vec![], vec![sleep.clone()]],
            }],
        }];
        assert!(any_step(&nested, &|s| *s == sleep));
        assert!(!any_step(&nested, &|s| matches!(s, Step::Shell { .. })));
    }

    #[test]
    fn a_memory_line_of_an_older_agent_still_parses() {
        let line = r#"{"event":"memory","cycle":2,"uptime_s":1.5,"meminfo":{"SUnreclaim":4096}}"#;
        let Some(Event::Memory {
            cycle, label, slab, ..
        }) = Event::parse_line(line)
        else {
            panic!("not a memory event");
        };
        assert_eq!((cycle, label, slab.len()), (2, Label::Cycle, 0));
    }

    #[test]
    fn a_memory_sample_round_trips_with_its_maps() {
        let ev = Event::Memory {
            cycle: 0,
            uptime_s: 0.5,
            meminfo: BTreeMap::from([("SUnreclaim".into(), 4096)]),
            label: Label::Start,
            slab: BTreeMap::from([("kmalloc-64".into(), 8192)]),
            vmalloc: BTreeMap::from([("mh_leaky_init [mh_leaky]".into(), 4096)]),
            modules: BTreeMap::new(),
        };
        let line = ev.to_line();
        assert!(
            line.contains(r#""label":"start""#) && !line.contains("modules"),
            "{line}"
        );
        assert_eq!(Event::parse_line(&line), Some(ev));
    }

    #[test]
    fn noise_on_the_channel_is_not_an_event() {
        assert_eq!(Event::parse_line("[    1.0] random"), None);
        assert_eq!(Event::parse_line("{\"event\":\"nope\"}"), None);
    }
}
