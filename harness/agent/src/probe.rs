//! The `mass_probe` step: an installer's hardware detection, one module at a time. Each module
//! is loaded with its dependencies (farthest first, as modprobe does); one that bound a device
//! stays loaded to the round's end, as an installer keeps the drivers it found, so the devices
//! behind it (USB behind xHCI) appear; any other is unloaded again with what it pulled in, and
//! the memory it did not return is measured. The host hears of each module before it is loaded,
//! so that a module which kills or wedges the VM is known, and a fresh VM goes on after it.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use modharness_memory::{parse_meminfo, Sample, TRACKED_FIGURES};
use modharness_protocol::{Event, ProbeResume, ProbeSelection};

use crate::kernel::{uptime_s, Kernel};
use crate::modalias::{read_modaliases, AliasIndex};
use crate::probe_tree::{keep, Tree};

/// Tries of an unload that fails with EAGAIN/EBUSY (a module still settling after its probe).
const UNLOAD_TRIES: u32 = 3;
/// The pause between those tries.
const UNLOAD_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// A round's memory is sampled after this many modules, so that a crash loses the growth of
/// at most these since the last sample (dropping caches costs a few milliseconds).
const MEMORY_EVERY: usize = 50;

/// What a mass probe works on in the guest.
pub struct Probe<'a> {
    /// Loads and unloads, and reads /proc/meminfo.
    pub kernel: &'a dyn Kernel,
    /// The kernel's modules tree, `/lib/modules/RELEASE`.
    pub modules_dir: PathBuf,
    /// Where sysfs is mounted (`/sys`).
    pub sysfs: PathBuf,
    /// Where procfs is mounted (`/proc`), for dropping caches before round samples.
    pub procfs: PathBuf,
    /// Sends an event to the host.
    pub emit: &'a dyn Fn(&Event),
    /// Takes a memory sample for cycle `n` (the rounds are the cycles).
    pub sample: &'a dyn Fn(u32),
    /// Told of each module loaded and the uptime at which its load began (its layout, for
    /// blame after it is gone).
    pub loaded: &'a dyn Fn(&Path, f64),
    /// Runs when a round has unloaded its modules (kmemleak's scans, on a kernel with it: a
    /// scan per module would wait out kmemleak's 5 s minimum age thousands of times, so the
    /// host blames each leak by its allocation time instead).
    pub round_done: &'a dyn Fn(),
}

/// One `mass_probe` step's arguments.
pub struct Request<'a> {
    /// Which modules.
    pub selection: &'a ProbeSelection,
    /// How many times over.
    pub rounds: u32,
    /// Names or globs never to load.
    pub skip: &'a [String],
    /// `(I, N)`: every N-th module of the selection from the I-th.
    pub shard: Option<(u32, u32)>,
    /// Where to go on from, after a VM that ran the probe crashed.
    pub resume: Option<&'a ProbeResume>,
}

/// A round's state: what is loaded on its behalf.
#[derive(Default)]
struct Round {
    /// Modules loaded for a module that bound a device, in load order: unloaded at the end.
    kept: Vec<String>,
    /// Dependencies loaded for an earlier module, in load order, kept while the next modules
    /// need them: reloading cfg80211 for each of a hundred wireless drivers would take most of
    /// a round.
    held: Vec<String>,
    /// Modules that would not unload: left alone, and not loaded again (in later rounds
    /// either: they are still in the kernel).
    resident: BTreeSet<String>,
}

impl Probe<'_> {
    /// Run the probe; `Err` only when it cannot start (no modules tree).
    pub fn run(&self, request: &Request<'_>) -> io::Result<()> {
        let tree = Tree::read(&self.modules_dir)?;
        let aliases =
            std::fs::read_to_string(self.modules_dir.join("modules.alias")).unwrap_or_default();
        let aliases = AliasIndex::parse(&aliases);
        let (first_round, resume) = match request.resume {
            Some(r) => (r.round, Some(r)),
            None => (0, None),
        };
        if first_round == 0 && resume.is_none_or(|r| r.index == 0 && r.kept.is_empty()) {
            self.sample_after_dropping_caches(0);
        }
        let mut resident = BTreeSet::new();
        for round in first_round..request.rounds {
            let resume = resume.filter(|r| r.round == round);
            self.run_round(round, &tree, &aliases, request, resume, &mut resident);
            self.sample_after_dropping_caches(round + 1);
        }
        Ok(())
    }

    fn run_round(
        &self,
        round: u32,
        tree: &Tree,
        aliases: &AliasIndex<'_>,
        request: &Request<'_>,
        resume: Option<&ProbeResume>,
        resident: &mut BTreeSet<String>,
    ) {
        let mut state = Round {
            resident: std::mem::take(resident),
            ..Round::default()
        };
        if let Some(resume) = resume {
            // Bring back what the crashed VM had kept, quietly: it was measured there.
            for name in &resume.kept {
                let deps = tree.modules.get(name).map_or(&[][..], |m| &m.deps[..]);
                if self.hold_deps(tree, deps, &mut state).is_ok()
                    && self.load_module(tree, name).is_ok()
                {
                    state.kept.append(&mut state.held);
                    state.kept.push(name.clone());
                }
            }
        }
        let modalias = matches!(request.selection, ProbeSelection::Modalias);
        let mut list = if modalias {
            self.devices_modules(tree, aliases, request, &BTreeSet::new())
        } else {
            tree.select(request.selection, request.skip, request.shard)
        };
        (self.emit)(&Event::ProbeRound {
            round,
            total: list.len(),
        });
        let mut index = resume.map_or(0, |r| r.index);
        self.round_memory(round, index);
        loop {
            while index < list.len() {
                self.probe_one(round, index, &list[index], tree, &mut state);
                index += 1;
                if index.is_multiple_of(MEMORY_EVERY) && index < list.len() {
                    self.round_memory(round, index);
                }
            }
            if !modalias {
                break;
            }
            // Drivers kept so far may have brought new devices (USB behind xHCI): go on while
            // they ask for modules not tried yet.
            let tried: BTreeSet<String> = list.iter().cloned().collect();
            let more = self.devices_modules(tree, aliases, request, &tried);
            if more.is_empty() {
                break;
            }
            list.extend(more);
            (self.emit)(&Event::ProbeRound {
                round,
                total: list.len(),
            });
        }
        for name in state.held.iter().rev().chain(state.kept.iter().rev()) {
            if self.unload(name).is_err() {
                state.resident.insert(name.clone());
            }
        }
        (self.round_done)();
        self.round_memory(round, list.len());
        *resident = state.resident;
    }

    /// Tell the host the round's memory once `done` modules are through, caches dropped.
    fn round_memory(&self, round: u32, done: usize) {
        self.drop_caches();
        let Ok(text) = self.kernel.meminfo() else {
            return;
        };
        let mut meminfo = parse_meminfo(&text);
        meminfo.retain(|name, _| TRACKED_FIGURES.contains(&name.as_str()));
        (self.emit)(&Event::ProbeMemory {
            round,
            done,
            meminfo,
        });
    }

    /// The tree modules that the guest's devices' modaliases ask for, less `tried`.
    fn devices_modules(
        &self,
        tree: &Tree,
        aliases: &AliasIndex<'_>,
        request: &Request<'_>,
        tried: &BTreeSet<String>,
    ) -> Vec<String> {
        let wanted = aliases
            .resolve(&read_modaliases(&self.sysfs))
            .into_iter()
            .map(|n| crate::kernel::kernel_module_name(&n))
            .filter(|n| tree.modules.contains_key(n) && !tried.contains(n));
        keep(wanted, request.skip, request.shard)
    }

    /// Load, look, and unload (or keep) one module, and tell the host. Its dependencies come
    /// first and stay for the next module if it needs them; the memory figure brackets the
    /// module alone, so a dependency's leak is its own, measured when it is probed itself.
    fn probe_one(&self, round: u32, index: usize, name: &str, tree: &Tree, state: &mut Round) {
        (self.emit)(&Event::ProbeStart {
            round,
            index,
            module: name.to_string(),
        });
        if state.kept.iter().any(|m| m == name) {
            // Already loaded for a driver this round keeps (usbcore under ehci_pci): it is in
            // use, not a failure, and stays.
            (self.emit)(&Event::ProbeModule {
                round,
                index,
                module: name.to_string(),
                error: None,
                bound: bound_devices(&self.sysfs, name),
                kept: false,
                load_ms: 0.0,
                unload_ms: 0.0,
                unload_error: None,
                unreturned_bytes: None,
            });
            return;
        }
        let started = Instant::now();
        let deps = tree.modules.get(name).map_or(&[][..], |m| &m.deps[..]);
        let mut unload_error = self.release_held(state, deps);
        let mut error = self.hold_deps(tree, deps, state).err();
        let before = self.tracked_bytes();
        if error.is_none() {
            error = if state.resident.contains(name) {
                Some(format!(
                    "{name} is still loaded: it would not unload earlier"
                ))
            } else {
                self.load_module(tree, name).err()
            };
        }
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;
        let bound = if error.is_none() {
            bound_devices(&self.sysfs, name)
        } else {
            Vec::new()
        };
        let kept = !bound.is_empty();
        let started = Instant::now();
        if kept {
            // A driver in use keeps what it depends on, to the round's end.
            state.kept.append(&mut state.held);
            state.kept.push(name.to_string());
        } else if error.is_none() {
            if let Err(err) = self.unload(name) {
                state.resident.insert(name.to_string());
                unload_error.get_or_insert(format!("delete_module({name}): {err}"));
            }
        }
        let unload_ms = started.elapsed().as_secs_f64() * 1000.0;
        // A failed load is measured too: an init that fails half way and leaks is a bug.
        let unreturned_bytes = match (kept, before, self.tracked_bytes()) {
            (false, Some(before), Some(after)) => Some(after as i64 - before as i64),
            _ => None,
        };
        (self.emit)(&Event::ProbeModule {
            round,
            index,
            module: name.to_string(),
            error,
            bound,
            kept,
            load_ms,
            unload_ms,
            unload_error,
            unreturned_bytes,
        });
    }

    /// Unload the held dependencies that `deps` does not need, newest first; the first error.
    fn release_held(&self, state: &mut Round, deps: &[String]) -> Option<String> {
        let mut first_error = None;
        while let Some(at) = state.held.iter().rposition(|m| !deps.contains(m)) {
            let module = state.held.remove(at);
            if let Err(err) = self.unload(&module) {
                state.resident.insert(module.clone());
                first_error.get_or_insert(format!("delete_module({module}): {err}"));
            }
        }
        first_error
    }

    /// Load whichever of `deps` is not in the kernel yet, in order, and hold it.
    fn hold_deps(&self, tree: &Tree, deps: &[String], state: &mut Round) -> Result<(), String> {
        for dep in deps {
            if state.resident.contains(dep) || state.held.contains(dep) || state.kept.contains(dep)
            {
                continue;
            }
            let Some(file) = tree.modules.get(dep) else {
                return Err(format!("dependency {dep} is not in modules.dep"));
            };
            let since = uptime_s();
            match self.kernel.load(&file.path, "") {
                Ok(()) => {
                    (self.loaded)(&file.path, since);
                    state.held.push(dep.clone());
                }
                Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
                Err(err) => return Err(format!("dependency {dep}: finit_module: {err}")),
            }
        }
        Ok(())
    }

    /// Load the module itself.
    fn load_module(&self, tree: &Tree, name: &str) -> Result<(), String> {
        let module = tree
            .modules
            .get(name)
            .ok_or_else(|| format!("{name} is not in modules.dep"))?;
        let since = uptime_s();
        self.kernel
            .load(&module.path, "")
            .map_err(|err| format!("finit_module: {err}"))?;
        (self.loaded)(&module.path, since);
        Ok(())
    }

    fn unload(&self, name: &str) -> io::Result<()> {
        let mut tries = 1;
        loop {
            match self.kernel.unload(name) {
                Err(err)
                    if tries < UNLOAD_TRIES
                        && matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EBUSY)) =>
                {
                    tries += 1;
                    std::thread::sleep(UNLOAD_RETRY_PAUSE);
                }
                result => return result,
            }
        }
    }

    /// The judged memory figure now.
    fn tracked_bytes(&self) -> Option<u64> {
        let meminfo = parse_meminfo(&self.kernel.meminfo().ok()?);
        Sample {
            meminfo,
            ..Sample::default()
        }
        .tracked_bytes()
    }

    /// Round samples compare like with like: the page cache and reclaimable slab dropped first.
    fn sample_after_dropping_caches(&self, cycle: u32) {
        self.drop_caches();
        (self.sample)(cycle);
    }

    fn drop_caches(&self) {
        let _ = std::fs::write(self.procfs.join("sys/vm/drop_caches"), "3\n");
    }
}

/// The devices that `module`'s drivers have bound: the device links in each
/// `/sys/bus/BUS/drivers/DRIVER` that `/sys/module/MODULE/drivers/BUS:DRIVER` points at.
pub fn bound_devices(sysfs: &Path, module: &str) -> Vec<String> {
    let Ok(drivers) = std::fs::read_dir(sysfs.join("module").join(module).join("drivers")) else {
        return Vec::new();
    };
    let mut devices = Vec::new();
    for driver in drivers.flatten() {
        let Ok(entries) = std::fs::read_dir(driver.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
            if is_link && name != "module" {
                devices.push(name);
            }
        }
    }
    devices.sort();
    devices
}

#[cfg(test)]
mod tests;
