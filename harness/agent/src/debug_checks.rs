//! The guest kernel's debug checks around a plan: kmemleak before the first step and after the
//! last, and module layouts for blaming bare addresses later.

use std::collections::BTreeMap;
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

/// Where the module loaded from `path` lies, when the kernel tells. With `sections` (a debug
/// kernel, whose memory figures are skewed anyway) every section from sysfs, `.init.text`
/// included, which kmemleak's allocation backtraces point into; otherwise only the base and
/// size `/proc/modules` shows, because looking up sysfs files each cycle grows the dentry,
/// inode and kmalloc caches that a leak verdict measures.
///
/// `loading_since_s` is the uptime at which the load began; call this right after it returned.
pub fn layout(
    kernel: &dyn Kernel,
    path: &std::path::Path,
    sections: bool,
    loading_since_s: f64,
) -> Option<Event> {
    let stem = path.file_name()?.to_str()?;
    let name = kernel_module_name(stem.split('.').next()?);
    let modules = kernel.modules().ok()?;
    let (size, base) = proc_modules_entry(&modules, &name)?;
    let sections = if sections {
        kernel.module_sections(&name).ok()?
    } else {
        BTreeMap::from([(".text".to_string(), base?)])
    };
    Some(Event::ModuleLayout {
        module: name,
        size,
        sections,
        load_window_s: Some((loading_since_s, uptime_s())),
    })
}

/// `name size refcount users state address [taints]` → size and address (absent when the
/// kernel hides addresses).
fn proc_modules_entry(text: &str, name: &str) -> Option<(u64, Option<u64>)> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&name) {
            return None;
        }
        let size = words.get(1)?.parse().ok()?;
        let address = words
            .get(5)
            .and_then(|a| a.strip_prefix("0x"))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .filter(|&a| a != 0);
        Some((size, address))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_modules_gives_size_and_base() {
        let text = "race_timer_buggy 12288 0 - Live 0xffffffffc0000000 (O)\nother 4096 1 - Live 0x0000000000000000\n";
        assert_eq!(
            proc_modules_entry(text, "race_timer_buggy"),
            Some((12288, Some(0xffffffffc0000000)))
        );
        assert_eq!(
            proc_modules_entry(text, "other"),
            Some((4096, None)),
            "hidden address"
        );
        assert_eq!(proc_modules_entry(text, "absent"), None);
    }
}
