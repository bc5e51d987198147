//! What a `mass_probe` step measured: per module and per round.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The outcome of a scenario's mass probe (`"mass_probe"` on the scenario in report.json).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MassProbeResult {
    /// Distinct modules tried.
    pub modules_tried: usize,
    /// Distinct modules that loaded at least once.
    pub loaded: usize,
    /// Distinct modules that bound a device at least once.
    pub bound: usize,
    /// Distinct modules that never loaded (the errno says why: no device, missing firmware…).
    pub failed: usize,
    /// Times the VM was started again after a module crashed or wedged it.
    #[serde(default)]
    pub restarts: u32,
    /// One entry per round, in order.
    pub rounds: Vec<ProbeRoundResult>,
    /// One entry per module tried, in the order first tried.
    pub modules: Vec<ProbeModuleResult>,
}

/// One round of a mass probe.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ProbeRoundResult {
    /// 1-based.
    pub round: u32,
    /// Modules tried in the round.
    pub modules: usize,
    /// Wall-clock seconds, restarts included.
    pub seconds: f64,
    /// `modules` over `seconds`.
    pub modules_per_s: f64,
    /// Each sampled /proc/meminfo figure after the round against before it, in bytes (caches
    /// dropped before each sample). A round that crashes split is summed over the stretches
    /// each VM sampled on both sides: see `growth_modules`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub growth: BTreeMap<String, i64>,
    /// The modules `growth` spans: all of the round's, unless a VM died between two samples
    /// (the modules since its last sample, the one that killed it among them, are left out).
    #[serde(default)]
    pub growth_modules: usize,
    /// The sum of the modules' unreturned bytes in the round.
    pub unreturned_bytes: i64,
}

/// One module of a mass probe, over every round that tried it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ProbeModuleResult {
    /// The module's name, as the kernel spells it.
    pub name: String,
    /// It loaded in at least one round.
    pub loaded: bool,
    /// Why a load failed, the first time it did (`finit_module: No such device`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Devices it bound (e.g. `0000:00:02.0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound: Vec<String>,
    /// Mean load time, in milliseconds (dependencies included).
    pub load_ms: f64,
    /// Mean unload time, in milliseconds.
    pub unload_ms: f64,
    /// Why an unload failed, the first time it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unload_error: Option<String>,
    /// Bytes not returned after its unload, per round that measured it (kept modules are not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreturned_bytes: Vec<i64>,
    /// The title of the finding it was blamed for (a crash, a hang), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<String>,
}

impl MassProbeResult {
    /// The totals in words: `4230 modules tried, 3843 loaded, 29 bound a device, 382 failed,
    /// 14 restarts`.
    pub fn totals(&self) -> String {
        format!(
            "{} modules tried, {} loaded, {} bound a device, {} failed, {} restart{}",
            self.modules_tried,
            self.loaded,
            self.bound,
            self.failed,
            self.restarts,
            if self.restarts == 1 { "" } else { "s" },
        )
    }

    /// The modules that returned the least memory, worst first: (name, bytes over all rounds).
    pub fn top_unreturned(&self, count: usize) -> Vec<(&str, i64)> {
        let mut all: Vec<(&str, i64)> = self
            .modules
            .iter()
            .map(|m| (m.name.as_str(), m.unreturned_bytes.iter().sum()))
            .filter(|(_, bytes)| *bytes > 0)
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(count);
        all
    }
}

/// The meminfo figures of a round's growth that are shown first, in this order: the three the
/// memory verdict judges, then the others an installer's probe moves most.
const FIRST_FIGURES: [&str; 6] = [
    "SUnreclaim",
    "VmallocUsed",
    "Percpu",
    "KernelStack",
    "PageTables",
    "MemAvailable",
];

impl MassProbeResult {
    /// The figures any round's growth has: [`FIRST_FIGURES`] first, then the rest by name.
    pub(crate) fn growth_figures(&self) -> Vec<&str> {
        let mut others: Vec<&str> = self
            .rounds
            .iter()
            .flat_map(|round| round.growth.keys())
            .map(String::as_str)
            .filter(|name| !FIRST_FIGURES.contains(name))
            .collect();
        others.sort_unstable();
        others.dedup();
        FIRST_FIGURES
            .into_iter()
            .filter(|name| self.rounds.iter().any(|r| r.growth.contains_key(*name)))
            .chain(others)
            .collect()
    }
}

/// A change in bytes with its sign: `+2.5 MiB`, `-12 B`, `0 B`.
pub(crate) fn signed_bytes(bytes: i64) -> String {
    let human = modharness_memory::human_bytes(bytes);
    if bytes > 0 {
        format!("+{human}")
    } else {
        human
    }
}

/// A wall-clock time as people read it: `12.3s`, `4m10s`, `1h02m`; `-` for nonsense.
pub(crate) fn clock(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".to_owned();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h{:02}m", whole / 3600, whole % 3600 / 60)
    }
}
