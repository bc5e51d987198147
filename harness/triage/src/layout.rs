//! Blame by address: where each module lay while it was loaded, so that a report printed after
//! its unload (a kmemleak backtrace, a stale call into freed text) still names it.
//!
//! Once a module is gone the kernel prints its addresses bare (`0xffffffffc001804f`), and the
//! `.init.text` of every module is freed right after its init, so even a loaded module's init
//! frames are bare. The agent reports each module's section addresses as it loads it; a bare
//! module-area address is then the module whose section starts nearest below it, within the
//! module's size, the latest load winning where the same memory was reused. A kmemleak
//! report says when its object was allocated (in jiffies): loads that began later cannot have
//! allocated it, which matters where a mass probe put hundreds of modules at one address, and
//! an allocation with no module frame at all, made while a module's load was running (its init,
//! its drivers' probes), is blamed on that module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Finding, Kind};

/// One load of a module: where its sections started, and its size (from `/proc/modules`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedModule {
    /// The module's name, as the kernel spells it.
    pub name: String,
    /// Bytes, as `/proc/modules` counts them; 0 when unknown.
    pub size: u64,
    /// Section name (`.text`, `.init.text`, …) to start address.
    pub sections: BTreeMap<String, u64>,
    /// Guest uptime in seconds when its load began and when it returned (its init ran
    /// between), when known.
    pub load_window_s: Option<(f64, f64)>,
}

/// Every load of one VM's run, in order.
#[derive(Clone, Debug, Default)]
pub struct LoadHistory {
    loads: Vec<LoadedModule>,
    /// The kernel's `CONFIG_HZ`, to read kmemleak's allocation times; `None` when unknown.
    hz: Option<u32>,
}

/// A bare address placed in a module's section.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The address as printed.
    pub address: u64,
    /// The module whose section holds it.
    pub module: String,
    /// The section, e.g. `.init.text`.
    pub section: String,
    /// Bytes from the section's start.
    pub offset: u64,
    /// The function there, when the module's object names it (see
    /// [`crate::Symbolizer::name_located`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// Where the kernel's image and modules are mapped on x86_64 (`__START_KERNEL_map`).
const KERNEL_HALF_TEXT: u64 = 0xffff_ffff_8000_0000;

/// How far past a section's start an address may lie when the module's size is unknown.
const UNKNOWN_SIZE_REACH: u64 = 64 * 1024;

impl LoadHistory {
    /// An empty history of a kernel ticking `hz` times a second (`CONFIG_HZ`).
    pub fn with_hz(hz: Option<u32>) -> LoadHistory {
        LoadHistory {
            loads: Vec::new(),
            hz,
        }
    }

    /// Record a load.
    pub fn push(&mut self, module: LoadedModule) {
        self.loads.push(module);
    }

    /// Whether no load was recorded.
    pub fn is_empty(&self) -> bool {
        self.loads.is_empty()
    }

    /// The module section holding `address`: the section starting nearest below it among all
    /// loads, within the module's size; of equally near ones, the latest load's.
    pub fn locate(&self, address: u64) -> Option<Located> {
        self.locate_in(address, |_| true, None)
    }

    /// Like [`LoadHistory::locate`], among the sections `wanted` accepts and the loads that
    /// began by uptime `by_s`.
    fn locate_in(
        &self,
        address: u64,
        wanted: impl Fn(&str) -> bool,
        by_s: Option<f64>,
    ) -> Option<Located> {
        let mut best: Option<(&LoadedModule, &str, u64)> = None;
        let began_by = |load: &LoadedModule| match (by_s, load.load_window_s) {
            (Some(by), Some((since, _))) => since <= by,
            _ => true,
        };
        for load in self.loads.iter().filter(|load| began_by(load)) {
            let reach = if load.size > 0 {
                load.size
            } else {
                UNKNOWN_SIZE_REACH
            };
            for (section, &start) in load.sections.iter().filter(|(s, _)| wanted(s)) {
                let Some(offset) = address.checked_sub(start) else {
                    continue;
                };
                if offset < reach && best.is_none_or(|(_, _, o)| offset <= o) {
                    best = Some((load, section, offset));
                }
            }
        }
        best.map(|(load, section, offset)| Located {
            address,
            module: load.name.clone(),
            section: section.to_string(),
            offset,
            function: None,
        })
    }
}

/// The guest uptime at which a kmemleak report's object was allocated: its `jiffies` against
/// the kernel's first tick (`INITIAL_JIFFIES`, 300 s before the 32-bit wrap, as the kernel
/// starts it to catch wrap bugs early) at `hz` ticks a second.
pub fn allocated_at_s(report: &str, hz: u32) -> Option<f64> {
    let line = report.lines().find(|line| line.contains("comm \""))?;
    let jiffies: u64 = line
        .split_once("jiffies ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let initial = (1u64 << 32).checked_sub(300 * u64::from(hz))?;
    Some(jiffies.checked_sub(initial)? as f64 / f64::from(hz.max(1)))
}

/// The module whose load was running at uptime `at_s`.
fn loading_at(history: &LoadHistory, at_s: f64) -> Option<String> {
    history
        .loads
        .iter()
        .rev()
        .find(|load| {
            load.load_window_s
                .is_some_and(|(from, to)| from <= at_s && at_s <= to)
        })
        .map(|load| load.name.clone())
}

/// The bare kernel-half addresses of a report, in order, each once: backtrace entries the
/// kernel could not name (`[<ffffffffc001804f>] 0xffffffffc001804f`, ` 0xffffffffc001804f`),
/// an ODEBUG `hint:`. Whether one is in a module is the [`LoadHistory`]'s to say: the module
/// area starts at `0xffffffffa0000000` on a kernel without KASLR, where KASLR may put kernel
/// text.
pub fn bare_addresses(report: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for line in report.lines() {
        // `RIP: 0010:0xffffffffc0000015`, `hint: 0x…`, `[<…>] 0x…`.
        for word in line.split(|c: char| !(c.is_ascii_hexdigit() || c == 'x')) {
            let Some(hex) = word.strip_prefix("0x") else {
                continue;
            };
            let Ok(address) = u64::from_str_radix(hex, 16) else {
                continue;
            };
            if address >= KERNEL_HALF_TEXT && !found.contains(&address) {
                found.push(address);
            }
        }
    }
    found
}

/// The address a report says was accessed: KASAN's `Read of size 8 at addr ffffffffc00041f0`, a
/// page fault's `BUG: unable to handle page fault for address: ffffffffc0002640`.
pub fn accessed_address(report: &str) -> Option<u64> {
    report.lines().find_map(|line| {
        let (_, rest) = line
            .split_once(" at addr ")
            .or_else(|| line.split_once(" for address: "))?;
        let hex = rest.split_whitespace().next()?;
        u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok()
    })
}

/// Place the finding's bare code addresses in the modules that lay there, and blame the first
/// such module when the report named none; failing that, the module whose memory the report
/// says was accessed (KASAN's `at addr`, a page fault's address: a module's freed data). A
/// kmemleak report's object address is not code, and so never blames a module.
pub fn blame_bare_addresses(finding: &mut Finding, history: &LoadHistory) {
    if history.is_empty() {
        return;
    }
    let allocated = match (finding.kind, history.hz) {
        (Kind::Kmemleak, Some(hz)) => allocated_at_s(&finding.report, hz),
        _ => None,
    };
    let located: Vec<Located> = bare_addresses(&finding.report)
        .into_iter()
        .filter_map(|address| history.locate_in(address, |_| true, allocated))
        .filter(|l| l.section.contains("text"))
        .collect();
    if finding.module.is_none() {
        finding.module = located
            .first()
            .cloned()
            .or_else(|| history.locate(accessed_address(&finding.report)?))
            .map(|l| l.module);
    }
    if finding.module.is_none() {
        finding.module = source_named(&finding.report, history);
    }
    if finding.module.is_none() {
        // Allocated by the kernel on behalf of a module whose load was running (a device its
        // probe registered).
        finding.module = allocated.and_then(|at| loading_at(history, at));
    }
    if let Some(previous) = stale_call_target(finding, history) {
        finding.module = Some(previous);
    }
    finding.located = located;
}

/// A loaded module whose own source file the report names: lockdep prints a lock by its
/// class, and a module's lock class is named after the file that defined it
/// (`(…/race_work_buggy.c:35)`), read from the module's memory even after it is gone.
fn source_named(report: &str, history: &LoadHistory) -> Option<String> {
    history
        .loads
        .iter()
        .rev()
        .find(|load| report.contains(&format!("/{}.c:", load.name)))
        .map(|load| load.name.clone())
}

/// A call through a pointer a gone module left behind, into memory a later module now holds
/// as data: the instruction fetch faults on a page that is there but not executable
/// (`#PF: supervisor instruction fetch`, `permissions violation`) and the kernel names the new
/// owner (`RIP: _note_18 [mh_trivial]`), but the pointer was into the text of the module that
/// held the address before, or read from a gone module's memory.
fn stale_call_target(finding: &Finding, history: &LoadHistory) -> Option<String> {
    let executed_data = finding.report.contains("#PF: supervisor instruction fetch")
        && finding.report.contains("permissions violation");
    if !executed_data {
        return None;
    }
    let address = accessed_address(&finding.report)?;
    // The pointer itself may have come from the gone module's memory, now the new owner's:
    // then nothing was ever text there, and the module unloaded last left the pointer behind.
    let culprit = history
        .locate_in(address, |s| s.contains("text"), None)
        .map(|l| l.module)
        .filter(|m| finding.module.as_deref() != Some(m.as_str()))
        .or_else(|| crate::frames::last_unloaded(&finding.report))?;
    (finding.module.as_deref() != Some(culprit.as_str())).then_some(culprit)
}

/// For a kmemleak report: when the first located frame's function is known, the leak is in
/// it (the caller that allocated), as syzbot would title it had the module still been there.
pub(crate) fn retitle_leak(finding: &mut Finding) {
    if finding.kind != Kind::Kmemleak {
        return;
    }
    let Some(function) = finding.located.iter().find_map(|l| l.function.clone()) else {
        return;
    };
    let title = format!("memory leak in {function}");
    if title != finding.title {
        let old = std::mem::replace(&mut finding.title, title);
        finding.alt_titles.insert(0, old);
        finding.guilty_frame = Some(function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(kind: Kind, title: &str, module: Option<&str>, report: &str) -> Finding {
        Finding {
            kind,
            title: title.into(),
            alt_titles: Vec::new(),
            module: module.map(String::from),
            corrupted: false,
            panicked: false,
            time_s: None,
            guilty_frame: None,
            report: report.into(),
            frames: Vec::new(),
            located: Vec::new(),
        }
    }

    fn history_of(loads: Vec<LoadedModule>) -> LoadHistory {
        let mut history = LoadHistory::default();
        for load in loads {
            history.push(load);
        }
        history
    }

    fn load(name: &str, size: u64, sections: &[(&str, u64)]) -> LoadedModule {
        LoadedModule {
            name: name.into(),
            size,
            sections: sections.iter().map(|(s, a)| (s.to_string(), *a)).collect(),
            load_window_s: None,
        }
    }

    /// A load that began at `since` and took 0.3 s.
    fn load_at(name: &str, since: f64, sections: &[(&str, u64)]) -> LoadedModule {
        LoadedModule {
            load_window_s: Some((since, since + 0.3)),
            ..load(name, 0x4000, sections)
        }
    }

    /// A kmemleak report of an object allocated at 5.696 s of uptime on a 250 Hz kernel.
    const LEAK_AT_5_7S: &str = "kmemleak: unreferenced object 0xffff888004a1c000 (size 64):\n\
        kmemleak:   comm \"modharness-agen\", pid 1, jiffies 4294893720\n\
        kmemleak:   backtrace (crc 7ad2e2e1):\n\
        kmemleak:     [<ffffffff8155dd13>] __kmalloc_cache_noprof+0x2a3/0x3c0\n\
        kmemleak:     [<ffffffffc001804f>] 0xffffffffc001804f\n\
        kmemleak:     [<ffffffff810020cd>] do_one_initcall+0xad/0x2e0\n";

    #[test]
    fn kmemleak_jiffies_read_as_uptime_from_the_first_tick() {
        let at = allocated_at_s(LEAK_AT_5_7S, 250).unwrap();
        assert!((at - 5.696).abs() < 1e-9, "{at}");
        assert_eq!(
            allocated_at_s("kmemleak: comm \"x\", pid 1, jiffies 12", 250),
            None
        );
    }

    #[test]
    fn a_leak_at_an_address_many_probed_modules_shared_is_blamed_on_the_one_loaded_then() {
        let blamed = |hz: Option<u32>| {
            let text = [(".init.text", 0xffffffffc0018000)];
            let mut history = LoadHistory::with_hz(hz);
            for (name, at) in [("before", 4.0), ("leaker", 5.5), ("after", 6.0)] {
                history.push(load_at(name, at, &text));
            }
            let title = "memory leak in do_one_initcall";
            let mut found = finding(Kind::Kmemleak, title, None, LEAK_AT_5_7S);
            blame_bare_addresses(&mut found, &history);
            found.module
        };
        assert_eq!(blamed(Some(250)).as_deref(), Some("leaker"));
        // Without the kernel's HZ the latest load is all there is to go on.
        assert_eq!(blamed(None).as_deref(), Some("after"));
    }

    #[test]
    fn a_leak_with_no_module_frame_is_blamed_on_the_module_loading_at_the_time() {
        let report = LEAK_AT_5_7S.replace(
            "[<ffffffffc001804f>] 0xffffffffc001804f",
            "[<ffffffff81a0e1f0>] device_add+0x1f0/0x8a0",
        );
        let mut history = LoadHistory::with_hz(Some(250));
        history.push(load_at("quiet", 2.0, &[(".text", 0xffffffffc0010000)]));
        history.push(load_at("registrar", 5.5, &[(".text", 0xffffffffc0020000)]));
        history.push(load_at("later", 9.0, &[(".text", 0xffffffffc0030000)]));
        let mut found = finding(Kind::Kmemleak, "memory leak in device_add", None, &report);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module.as_deref(), Some("registrar"));
        // Other kinds of report carry no allocation time and are left alone.
        let mut oops = finding(Kind::Oops, "BUG: oops in device_add", None, &report);
        blame_bare_addresses(&mut oops, &history);
        assert_eq!(oops.module, None);
        // An allocation while no load ran is nobody's.
        let mut history = LoadHistory::with_hz(Some(250));
        history.push(load_at("earlier", 2.0, &[(".text", 0xffffffffc0010000)]));
        let mut found = finding(Kind::Kmemleak, "memory leak in device_add", None, &report);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module, None);
    }

    #[test]
    fn a_bare_address_is_the_module_whose_section_starts_nearest_below_it() {
        let history = history_of(vec![
            load(
                "alpha",
                0x3000,
                &[
                    (".text", 0xffffffffc0010000),
                    (".init.text", 0xffffffffc0018000),
                ],
            ),
            load("beta", 0x2000, &[(".text", 0xffffffffc0020000)]),
        ]);
        let at = history.locate(0xffffffffc001804f).unwrap();
        assert_eq!(
            (at.module.as_str(), at.section.as_str(), at.offset),
            ("alpha", ".init.text", 0x4f)
        );
        assert_eq!(history.locate(0xffffffffc0020010).unwrap().module, "beta");
        assert_eq!(history.locate(0xffffffffc0030000), None, "past beta's size");
        assert_eq!(history.locate(0xffffffffc0000000), None);
    }

    #[test]
    fn a_kasan_read_of_freed_module_data_blames_the_module_that_owned_it() {
        let report = "BUG: KASAN: vmalloc-out-of-bounds in filp_flush+0x115/0x130\n\
            Read of size 8 at addr ffffffffc00041f0 by task sh/39\n\
            Call Trace:\n dump_stack_lvl+0x4f/0x60\n filp_flush+0x115/0x130\n";
        assert_eq!(accessed_address(report), Some(0xffffffffc00041f0));
        assert_eq!(
            accessed_address("BUG: unable to handle page fault for address: ffffffffc0002640\n"),
            Some(0xffffffffc0002640)
        );
        let mut found = finding(
            Kind::Kasan,
            "KASAN: vmalloc-out-of-bounds Read in filp_flush",
            None,
            report,
        );
        let history = history_of(vec![load(
            "race_fops_buggy",
            0x3000,
            &[(".text", 0xffffffffc0000000), (".data", 0xffffffffc0004000)],
        )]);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module.as_deref(), Some("race_fops_buggy"));
        assert!(found.located.is_empty(), "data is not a frame");
    }

    #[test]
    fn a_stale_call_into_a_later_modules_data_blames_the_module_whose_text_was_there() {
        let report = "BUG: unable to handle page fault for address: ffffffffc0004060\n\
            #PF: supervisor instruction fetch in kernel mode\n\
            #PF: error_code(0x0011) - permissions violation\n\
            RIP: 0010:_note_18+0x24/0x188 [mh_trivial]\n";
        let mut found = finding(
            Kind::Oops,
            "BUG: unable to handle page fault in _note_18",
            Some("mh_trivial"),
            report,
        );
        let history = history_of(vec![
            load(
                "race_notifier_buggy",
                0x2000,
                &[(".text", 0xffffffffc0004000)],
            ),
            load(
                "mh_trivial",
                0x1000,
                &[
                    (".text", 0xffffffffc0000000),
                    (".note.gnu.build-id", 0xffffffffc0004000),
                ],
            ),
        ]);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module.as_deref(), Some("race_notifier_buggy"));
    }

    #[test]
    fn a_stale_pointer_read_from_reused_memory_blames_the_module_unloaded_last() {
        let report = "BUG: unable to handle page fault for address: ffffffffc0004060\n\
            #PF: supervisor instruction fetch in kernel mode\n\
            #PF: error_code(0x0011) - permissions violation\n\
            RIP: 0010:_note_18+0x24/0x188 [mh_trivial]\n\
            Modules linked in: mh_trivial(O+) [last unloaded: race_notifier_buggy(O)]\n";
        let mut found = finding(
            Kind::Oops,
            "BUG: unable to handle page fault in _note_18",
            Some("mh_trivial"),
            report,
        );
        let history = history_of(vec![
            load(
                "race_notifier_buggy",
                0x3000,
                &[
                    (".text", 0xffffffffc0000000),
                    (".rodata", 0xffffffffc0004060),
                ],
            ),
            load(
                "mh_trivial",
                0x3000,
                &[
                    (".text", 0xffffffffc0000000),
                    (".note.Linux", 0xffffffffc000403c),
                ],
            ),
        ]);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module.as_deref(), Some("race_notifier_buggy"));
    }

    #[test]
    fn a_lock_named_after_a_modules_source_file_blames_that_module() {
        let report = "WARNING: bad unlock balance detected!\n\
            swapper/1/0 is trying to release lock (/src/race_work_buggy/race_work_buggy.c:35) at:\n\
            [<ffffffff813b0b3e>] call_timer_fn+0x19e/0x420\n";
        let mut found = finding(
            Kind::Lockdep,
            "WARNING: bad unlock balance in __run_timers",
            None,
            report,
        );
        let history = history_of(vec![
            load("race_work", 0x1000, &[(".text", 0xffffffffc0000000)]),
            load("race_work_buggy", 0x1000, &[(".text", 0xffffffffc0000000)]),
        ]);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module.as_deref(), Some("race_work_buggy"));
    }

    #[test]
    fn a_bare_rip_after_the_segment_is_found() {
        assert_eq!(
            bare_addresses("RIP: 0010:0xffffffffc0000015\n"),
            [0xffffffffc0000015]
        );
    }

    #[test]
    fn memory_reused_by_a_later_load_is_blamed_on_the_later_module() {
        let history = history_of(vec![
            load("first", 0x1000, &[(".text", 0xffffffffc0010000)]),
            load("second", 0x1000, &[(".text", 0xffffffffc0010000)]),
        ]);
        assert_eq!(history.locate(0xffffffffc0010100).unwrap().module, "second");
    }

    #[test]
    fn a_kmemleak_backtrace_frame_left_bare_by_rmmod_names_the_module() {
        let report = "kmemleak: unreferenced object 0xffff888004a1c000 (size 8192):\n\
            kmemleak:   comm \"modharness-agen\", pid 1, jiffies 4294893720\n\
            kmemleak:   backtrace (crc 7ad2e2e1):\n\
            kmemleak:     [<ffffffff8155dd13>] __kmalloc_cache_noprof+0x2a3/0x3c0\n\
            kmemleak:     [<ffffffffc001804f>] 0xffffffffc001804f\n\
            kmemleak:     [<ffffffff810020cd>] do_one_initcall+0xad/0x2e0\n";
        assert_eq!(bare_addresses(report), [0xffffffffc001804f]);
        let mut found = finding(
            Kind::Kmemleak,
            "memory leak in do_one_initcall",
            None,
            report,
        );
        let history = history_of(vec![load(
            "mh_leaky",
            0x4000,
            &[(".init.text", 0xffffffffc0018000)],
        )]);
        blame_bare_addresses(&mut found, &history);
        assert_eq!(found.module.as_deref(), Some("mh_leaky"));
        found.located[0].function = Some("mh_leaky_init".into());
        retitle_leak(&mut found);
        assert_eq!(found.title, "memory leak in mh_leaky_init");
        assert_eq!(found.alt_titles, ["memory leak in do_one_initcall"]);
    }
}
