//! Parsers for the guest's `/proc` text. The text comes from a kernel that may be dying: every
//! parser skips what it cannot read instead of failing, and never panics.

use std::collections::BTreeMap;

/// The key of `/proc/vmallocinfo` areas that name no caller (`unpurged vm_area`, `vm_map_ram`).
pub const NO_CALLER: &str = "(no caller)";
/// The key of `/proc/vmallocinfo` areas whose caller printed as a bare address: code the kernel
/// has no symbol for any more, typically the text of a module that has since been unloaded.
pub const UNRESOLVED_CALLER: &str = "(unresolved address)";

/// `/proc/meminfo` in bytes by field name. Fields in `kB` are scaled to bytes; fields without a
/// unit (page counts such as `HugePages_Total`) are kept as they are. Lines that do not parse
/// are skipped.
pub fn parse_meminfo(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let mut words = rest.split_whitespace();
            let number: u64 = words.next()?.parse().ok()?;
            let value = match words.next() {
                None => number,
                Some("kB") => number.saturating_mul(1024),
                Some(_) => return None,
            };
            Some((name.trim().to_string(), value))
        })
        .collect()
}

/// `/proc/slabinfo` (version 2.1) as bytes per cache: `num_objs × objsize`, the memory the
/// cache's slabs hold whether the objects are in use or not (a leak fills slabs, and the kernel
/// accounts whole slabs in `Slab`). The header lines and caches with no objects are skipped,
/// so are lines that do not parse.
pub fn parse_slabinfo(text: &str) -> BTreeMap<String, u64> {
    slab_bytes(text, false)
}

/// `/proc/slabinfo` as bytes of objects in use per cache (`active_objs × objsize`): what moves
/// first when objects are allocated or freed, before whole slabs come and go.
pub fn parse_slabinfo_in_use(text: &str) -> BTreeMap<String, u64> {
    slab_bytes(text, true)
}

fn slab_bytes(text: &str, in_use: bool) -> BTreeMap<String, u64> {
    let mut caches = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with("slabinfo ") {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(active), Some(num_objs), Some(objsize)) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let count = if in_use { active } else { num_objs };
        let (Ok(count), Ok(objsize)) = (count.parse::<u64>(), objsize.parse::<u64>()) else {
            continue;
        };
        if count > 0 {
            let bytes = caches.entry(name.to_string()).or_insert(0u64);
            *bytes = bytes.saturating_add(count.saturating_mul(objsize));
        }
    }
    caches
}

/// `/proc/vmallocinfo` summed by caller. The key is the caller's symbol without its
/// `+offset/length`, followed by the ` [module]` tag when the kernel printed one, e.g.
/// `mh_leaky_init [mh_leaky]`; areas without a caller go under [`NO_CALLER`], bare addresses
/// under [`UNRESOLVED_CALLER`].
///
/// An area with `pages=N` counts `N` pages of 4 KiB, the figure `VmallocUsed` sums (the size
/// column adds a guard page); an area without (`ioremap`, `vmap` of foreign pages, unpurged
/// space) counts its size column. `ioremap`, `vmalloc` and `vmap` areas of one caller are summed
/// together: a module that forgets either kind leaks, and one number per caller keeps the
/// control line short.
pub fn parse_vmallocinfo(text: &str) -> BTreeMap<String, u64> {
    let mut callers = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let (Some(range), Some(size)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        if !range.starts_with("0x") {
            continue;
        }
        let rest: Vec<&str> = words.collect();
        let key = caller_key(&rest);
        let pages = rest
            .iter()
            .find_map(|word| word.strip_prefix("pages=")?.parse::<u64>().ok());
        let bytes = pages.map_or(size, |pages| pages.saturating_mul(4096));
        let total = callers.entry(key).or_insert(0u64);
        *total = total.saturating_add(bytes);
    }
    callers
}

/// The key of one vmallocinfo area from the words after its size.
fn caller_key(rest: &[&str]) -> String {
    let Some(first) = rest.first() else {
        return NO_CALLER.to_string();
    };
    // Flags and attributes (`pages=`, `phys=`, `N0=`, `ioremap`, `vmalloc`) follow the caller,
    // and the areas without one say what they are in words (`unpurged vm_area`, `vm_map_ram`).
    let is_symbol = first.contains('+') && !first.contains('=');
    let is_address = first.starts_with("0x") && !first.contains('=');
    if is_address && !first.contains('+') {
        return UNRESOLVED_CALLER.to_string();
    }
    if !is_symbol {
        return NO_CALLER.to_string();
    }
    let symbol = first.split('+').next().unwrap_or(first);
    match rest.get(1) {
        Some(tag) if tag.len() > 2 && tag.starts_with('[') && tag.ends_with(']') => {
            format!("{symbol} {tag}")
        }
        _ => symbol.to_string(),
    }
}

/// `/proc/modules` as module name → size in bytes (the module's text and data). Lines that do
/// not parse are skipped.
pub fn parse_modules(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let size = words.next()?.parse().ok()?;
            Some((name.to_string(), size))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like 6.12.117's /proc/slabinfo under SLUB (tunables are all 0).
    const SLABINFO: &str = "\
slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>
kmalloc-rcl-64         0      0     64   64    1 : tunables    0    0    0 : slabdata      0      0      0
kmalloc-1k          1184   1216   1024   32    8 : tunables    0    0    0 : slabdata     38     38      0
kmalloc-64          6101   6272     64   64    1 : tunables    0    0    0 : slabdata     98     98      0
dma-kmalloc-64         0      0     64   64    1 : tunables    0    0    0 : slabdata      0      0      0
task_struct          176    195  10304    3    8 : tunables    0    0    0 : slabdata     65     65      0
kmalloc-64 garbage
\u{0}\u{7f} 12 x 3
";

    #[test]
    fn slabinfo_gives_bytes_of_every_cache_with_objects() {
        let caches = parse_slabinfo(SLABINFO);
        assert_eq!(
            caches,
            BTreeMap::from([
                ("kmalloc-1k".to_string(), 1216 * 1024),
                ("kmalloc-64".to_string(), 6272 * 64),
                ("task_struct".to_string(), 195 * 10304),
            ])
        );
    }

    #[test]
    fn slabinfo_of_garbage_or_a_cut_line_is_empty_not_a_panic() {
        assert!(parse_slabinfo("").is_empty());
        assert!(parse_slabinfo("kmalloc-64 1").is_empty());
        assert!(parse_slabinfo("\u{fffd}\u{fffd} 1 2").is_empty());
        let huge = format!("big 1 {} {}\n", u64::MAX, u64::MAX);
        assert_eq!(parse_slabinfo(&huge)["big"], u64::MAX);
    }

    /// Shaped like 6.12.117's /proc/vmallocinfo, read as root (addresses shown).
    const VMALLOCINFO: &str = "\
0xffffc90000000000-0xffffc90000002000    8192 acpi_os_map_iomem+0x1b0/0x1e0 phys=0x000000007ffe0000 ioremap
0xffffc90000002000-0xffffc90000004000    8192 acpi_os_map_iomem+0x1b0/0x1e0 phys=0x000000007ffe1000 ioremap
0xffffc90000005000-0xffffc90000007000    8192 hpet_enable+0x3a/0x2f0 phys=0x00000000fed00000 ioremap
0xffffc90000008000-0xffffc9000000d000   20480 dup_task_struct+0x4d/0x1b0 pages=4 vmalloc N0=4
0xffffc90000010000-0xffffc90000015000   20480 dup_task_struct+0x4d/0x1b0 pages=4 vmalloc N0=4
0xffffc90000200000-0xffffc90000241000  266240 mh_leaky_init+0x4f/0xff0 [mh_leaky] pages=64 vmalloc N0=64
0xffffc90000300000-0xffffc90000341000  266240 0xffffffffc0a0104f pages=64 vmalloc N0=64
0xffffc90000400000-0xffffc90000600000 2097152 unpurged vm_area
0xffffc90000600000-0xffffc90000640000  262144 vm_map_ram
0xffffffffc0000000-0xffffffffc0005000   20480 load_module+0x9e3/0x2060 pages=4 vmalloc N0=4
truncated line 0xffff
0xffffc9 notanumber caller+0x1/0x2
";

    #[test]
    fn vmallocinfo_sums_pages_by_caller_and_keeps_the_module_tag() {
        let callers = parse_vmallocinfo(VMALLOCINFO);
        assert_eq!(
            callers,
            BTreeMap::from([
                (NO_CALLER.to_string(), 2097152 + 262144),
                (UNRESOLVED_CALLER.to_string(), 64 * 4096),
                ("acpi_os_map_iomem".to_string(), 2 * 8192),
                ("dup_task_struct".to_string(), 2 * 4 * 4096),
                ("hpet_enable".to_string(), 8192),
                ("load_module".to_string(), 4 * 4096),
                ("mh_leaky_init [mh_leaky]".to_string(), 64 * 4096),
            ])
        );
    }

    #[test]
    fn vmallocinfo_of_garbage_is_empty() {
        assert!(parse_vmallocinfo("nonsense\n\n0x1 \n[] 3").is_empty());
    }

    #[test]
    fn modules_give_each_size() {
        let text = "mh_leaky 12288 0 - Live 0xffffffffc0a00000 (OE)\n\
                    virtio_console 45056 1 - Live 0xffffffffc09f0000\n\
                    broken\n\
                    odd x 0 - Live\n";
        assert_eq!(
            parse_modules(text),
            BTreeMap::from([
                ("mh_leaky".to_string(), 12288),
                ("virtio_console".to_string(), 45056),
            ])
        );
    }

    #[test]
    fn meminfo_kilobytes_become_bytes_and_counts_stay() {
        let text = "MemTotal:        2014552 kB\n\
                    SUnreclaim:        12345 kB\n\
                    HugePages_Total:       7\n\
                    garbage line\n\
                    Weird:            12 MB\n";
        let parsed = parse_meminfo(text);
        assert_eq!(parsed["MemTotal"], 2014552 * 1024);
        assert_eq!(parsed["SUnreclaim"], 12345 * 1024);
        assert_eq!(parsed["HugePages_Total"], 7);
        assert_eq!(parsed.len(), 3);
    }

    #[test]
    fn meminfo_with_huge_numbers_does_not_overflow() {
        let parsed = parse_meminfo(&format!("Big: {} kB\n", u64::MAX));
        assert_eq!(parsed["Big"], u64::MAX);
    }
}
