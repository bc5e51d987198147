//! The guest kernel's debug checks around a plan: kmemleak before the first step and after the
//! last, and module layouts for blaming bare addresses later.

use std::time::{Duration, Instant};

use modharness_protocol::Event;

use crate::kernel::{kernel_module_name, uptime_s, Kernel};

/// kmemleak reports only objects at least this old (`jiffies_min_age`, 5 s), with a margin.
const KMEMLEAK_MIN_AGE: Duration = Duration::from_millis(5_500);

/// Before the first step: scan quietly and forget what the scan found, so that only what the
/// plan leaks is reported later. Boot's objects must be old enough to be seen, so this waits
/// until the kernel has been up for kmemleak's minimum age.
pub fn forget_earlier_leaks(kernel: &dyn Kernel) {
    let up = Duration::from_secs_f64(uptime_s().max(0.0));
    if let Some(wait) = KMEMLEAK_MIN_AGE.checked_sub(up) {
        std::thread::sleep(wait);
    }
    let steps = [
        kernel.kmemleak_verbose(false),
        kernel.kmemleak("scan"),
        kernel.kmemleak("clear"),
        kernel.kmemleak_verbose(true),
    ];
    if let Some(Err(err)) = steps.into_iter().find(Result::is_err) {
        eprintln!("modharness-agent: kmemleak could not be prepared: {err}");
    }
}

/// After the last step: scan, let the last objects age, scan again; kmemleak prints each
/// unreferenced object on the console, where the host's triage reads it.
pub fn scan_for_leaks(kernel: &dyn Kernel) -> Event {
    let started = Instant::now();
    let mut scans = 0;
    for pause in [Duration::ZERO, KMEMLEAK_MIN_AGE] {
        std::thread::sleep(pause);
        match kernel.kmemleak("scan") {
            Ok(()) => scans += 1,
            Err(err) => eprintln!("modharness-agent: kmemleak scan failed: {err}"),
        }
    }
    Event::KmemleakScanned {
        scans,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Where the module loaded from `path` lies, when the kernel tells.
pub fn layout(kernel: &dyn Kernel, path: &str) -> Option<Event> {
    let stem = std::path::Path::new(path).file_name()?.to_str()?;
    let name = kernel_module_name(stem.split('.').next()?);
    let sections = kernel.module_sections(&name).ok()?;
    let size = kernel
        .modules()
        .ok()
        .and_then(|text| modharness_memory::parse_modules(&text).get(&name).copied())
        .unwrap_or(0);
    Some(Event::ModuleLayout {
        module: name,
        size,
        sections,
    })
}
