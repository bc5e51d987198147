//! Memory that never comes back: what the guest agent samples from `/proc`, and what the host
//! concludes from the samples of a load/unload loop.
//!
//! The agent parses the guest's text with [`parse_meminfo`], [`parse_slabinfo`],
//! [`parse_vmallocinfo`] and [`parse_modules`] and sends numbers only. The host collects them as
//! [`Sample`]s and calls [`analyze`], which fits a robust slope with a confidence interval to the
//! tracked total and judges it against a noise floor estimated from the same run (see
//! [`Analysis`]); [`Series::from_samples`] keeps the columns a report plots.

mod analysis;
mod parse;
mod series;
mod stats;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use analysis::{analyze, Analysis, Growth, Options, Source, Verdict};
pub use parse::{
    parse_meminfo, parse_modules, parse_slabinfo, parse_slabinfo_in_use, parse_vmallocinfo,
    NO_CALLER, UNRESOLVED_CALLER,
};
pub use series::{Series, DEFAULT_SERIES_TOP};

/// The `/proc/meminfo` fields a report keeps: what a leak moves (`SUnreclaim`, `VmallocUsed`,
/// `Percpu`), what it moves with (`Slab`, `KernelStack`, `PageTables`) and what a user feels
/// (`MemAvailable`).
pub const TRACKED_FIGURES: [&str; 7] = [
    "MemAvailable",
    "Slab",
    "SUnreclaim",
    "VmallocUsed",
    "Percpu",
    "KernelStack",
    "PageTables",
];

/// The `/proc/meminfo` fields whose sum is judged: the memory a leaking module grows.
/// Unreclaimable slab holds its `kmalloc`s, `VmallocUsed` its `vmalloc`s, `Percpu` its per-CPU
/// allocations; reclaimable slab and page cache come and go and would only add noise.
pub const JUDGED_FIGURES: [&str; 3] = ["SUnreclaim", "VmallocUsed", "Percpu"];

/// The vmalloc caller of kernel thread stacks. Workqueues and the agent's own threads come and
/// go, and the kernel keeps freed stacks cached: 16 KiB steps that follow the scheduler, not
/// the module (measured: an ivshmem driver under host storms read +6 KiB/cycle over 12 cycles
/// from stacks alone). A module that leaks threads shows as a hung or leftover task instead.
pub const THREAD_STACKS_CALLER: &str = "kernel_clone";

/// When in a scenario a sample was taken.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// Before the scenario's first step.
    Start,
    /// At a cycle boundary of a top-level `repeat`: before its first iteration and after each.
    #[default]
    Cycle,
    /// After the scenario's last step.
    End,
}

/// One memory sample of the guest, all figures in bytes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct Sample {
    /// Load/unload cycles completed when the sample was taken (0 before the first).
    pub cycle: u32,
    /// Guest uptime at the sample.
    pub uptime_s: f64,
    /// When in the scenario it was taken.
    pub label: Label,
    /// `/proc/meminfo` by field name (see [`parse_meminfo`]).
    pub meminfo: BTreeMap<String, u64>,
    /// Bytes per slab cache (see [`parse_slabinfo`]).
    pub slab: BTreeMap<String, u64>,
    /// Bytes per vmalloc caller (see [`parse_vmallocinfo`]).
    pub vmalloc: BTreeMap<String, u64>,
    /// Size of each loaded module (see [`parse_modules`]).
    pub modules: BTreeMap<String, u64>,
}

impl Sample {
    /// The judged total: the sum of [`JUDGED_FIGURES`], less the vmalloc'ed stacks of kernel
    /// threads ([`THREAD_STACKS_CALLER`]) when the sample names them; `None` when the kernel
    /// did not report `SUnreclaim` (the sample is then useless for a verdict).
    pub fn tracked_bytes(&self) -> Option<u64> {
        let slab = *self.meminfo.get("SUnreclaim")?;
        let total = JUDGED_FIGURES[1..].iter().fold(slab, |total, field| {
            total.saturating_add(self.meminfo.get(*field).copied().unwrap_or(0))
        });
        let stacks = self.vmalloc.get(THREAD_STACKS_CALLER).copied().unwrap_or(0);
        Some(total.saturating_sub(stacks))
    }
}

/// `bytes` for people: `812 B`, `3.0 KiB`, `192.0 KiB`, `1.5 MiB` (negative keeps its sign).
pub fn human_bytes(bytes: i64) -> String {
    let size = bytes.unsigned_abs() as f64;
    let sign = if bytes < 0 { "-" } else { "" };
    if size >= 1024.0 * 1024.0 {
        format!("{sign}{:.1} MiB", size / (1024.0 * 1024.0))
    } else if size >= 1024.0 {
        format!("{sign}{:.1} KiB", size / 1024.0)
    } else {
        format!("{sign}{size} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_bytes_sums_unreclaimable_slab_vmalloc_and_percpu() {
        let mut sample = Sample::default();
        assert_eq!(sample.tracked_bytes(), None);
        sample.meminfo.insert("SUnreclaim".into(), 100);
        sample.meminfo.insert("VmallocUsed".into(), 20);
        sample.meminfo.insert("Slab".into(), 5000);
        assert_eq!(sample.tracked_bytes(), Some(120));
        sample.meminfo.insert("Percpu".into(), u64::MAX);
        assert_eq!(sample.tracked_bytes(), Some(u64::MAX));
    }

    #[test]
    fn kernel_thread_stacks_are_left_out_of_the_judged_total() {
        let mut sample = Sample::default();
        sample.meminfo.insert("SUnreclaim".into(), 100_000);
        sample.meminfo.insert("VmallocUsed".into(), 64 * 1024);
        sample
            .vmalloc
            .insert(THREAD_STACKS_CALLER.into(), 48 * 1024);
        sample
            .vmalloc
            .insert("mh_leaky_init [mh_leaky]".into(), 16 * 1024);
        assert_eq!(sample.tracked_bytes(), Some(100_000 + 16 * 1024));
    }

    #[test]
    fn a_sample_without_the_new_maps_still_parses() {
        let sample: Sample =
            serde_json::from_str(r#"{"cycle": 3, "uptime_s": 1.5, "meminfo": {"SUnreclaim": 1}}"#)
                .unwrap();
        assert_eq!((sample.cycle, sample.label), (3, Label::Cycle));
        assert!(sample.slab.is_empty());
    }

    #[test]
    fn human_bytes_picks_the_unit() {
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(3072), "3.0 KiB");
        assert_eq!(human_bytes(-2958), "-2.9 KiB");
        assert_eq!(human_bytes(3 << 19), "1.5 MiB");
    }
}
