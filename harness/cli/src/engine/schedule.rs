//! When each scenario runs: what it is expected to cost, the order jobs start in (longest
//! first, so that the last VM to finish is a short one), how many VMs the host holds at once,
//! and the split of a matrix into shards of even cost.

use std::time::Duration;

use modharness_protocol::Step;
use modharness_scenario::Scenario;

/// Boot to the agent's first step on a stock kernel under TCG, with the initramfs written.
const BOOT_SECONDS: f64 = 4.0;
/// A module load or unload, or a shell command, on a stock kernel under TCG.
const ACTION_SECONDS: f64 = 0.3;
/// Host memory a VM needs beyond its guest RAM: QEMU itself, TCG's translation cache.
const VM_OVERHEAD_MIB: u64 = 160;

/// The seconds `scenario` is expected to take on a kernel `slowdown` times slower than stock:
/// its sleeps and storms as written, its actions and the boot scaled. A mass probe, whose cost
/// depends on the kernel's modules, counts as its time budget.
pub fn expected_seconds(scenario: &Scenario, slowdown: u32) -> f64 {
    let slowdown = f64::from(slowdown.max(1));
    let probing = scenario
        .steps
        .iter()
        .any(|s| matches!(s, Step::MassProbe { .. }));
    if probing {
        return scenario.vm.timeout.as_secs_f64() * slowdown;
    }
    let (waits, actions) = steps_cost(&scenario.steps);
    waits + (BOOT_SECONDS + actions * ACTION_SECONDS) * slowdown
}

/// (seconds waited, actions taken) by `steps`.
fn steps_cost(steps: &[Step]) -> (f64, f64) {
    let mut waits = 0.0;
    let mut actions = 0.0;
    for step in steps {
        let (w, a) = match step {
            Step::Sleep { ms } => (Duration::from_millis(*ms).as_secs_f64(), 0.0),
            Step::IrqStorm { duration_ms, .. } => {
                (Duration::from_millis(*duration_ms).as_secs_f64(), 1.0)
            }
            Step::Repeat { times, steps } => {
                let (w, a) = steps_cost(steps);
                (w * f64::from(*times), a * f64::from(*times))
            }
            // Branches run side by side: the longest wait, every branch's actions.
            Step::Parallel { branches } => branches
                .iter()
                .map(|b| steps_cost(b))
                .fold((0.0, 0.0), |(w, a), (bw, ba)| (f64::max(w, bw), a + ba)),
            Step::Load { .. } | Step::Unload { .. } | Step::Shell { .. } => (0.0, 1.0),
            Step::MassProbe { .. } => (0.0, 0.0),
        };
        waits += w;
        actions += a;
    }
    (waits, actions)
}

/// Indices of `costs`, most expensive first; equal costs keep their order.
pub fn longest_first(costs: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    order
}

/// The 0-based shard of each item, for `shards` shards of costs as even as the items allow:
/// each item, most expensive first, goes to the shard with the least so far (the lowest index
/// on a tie). Deterministic: the same costs always give the same split.
pub fn partition(costs: &[f64], shards: u32) -> Vec<u32> {
    let shards = shards.max(1) as usize;
    let mut totals = vec![0.0f64; shards];
    let mut shard_of = vec![0u32; costs.len()];
    for item in longest_first(costs) {
        let lightest = (0..shards)
            .min_by(|&a, &b| totals[a].total_cmp(&totals[b]))
            .unwrap_or(0);
        totals[lightest] += costs[item];
        shard_of[item] = lightest as u32;
    }
    shard_of
}

/// What the host can give VMs running at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCapacity {
    /// CPU threads the harness may use.
    pub cores: usize,
    /// Memory available to new processes (`MemAvailable`), in MiB.
    pub memory_mib: u64,
}

impl HostCapacity {
    /// This host, now.
    pub fn probe() -> HostCapacity {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_available_mib(&text))
            .unwrap_or(u64::MAX / 2);
        HostCapacity { cores, memory_mib }
    }

    /// VMs at once: what was asked, but no more than one per core, since a TCG VM keeps a core
    /// busy even when its guest sleeps little.
    pub fn max_jobs(&self, requested: usize) -> usize {
        requested.clamp(1, self.cores.max(1))
    }

    /// The memory budget the running VMs share: three quarters of what is available, so the
    /// host itself (kbuild, the page cache of kernels) keeps room.
    pub fn vm_budget_mib(&self) -> u64 {
        (self.memory_mib / 4 * 3).max(1)
    }
}

/// The host memory one VM with `guest_mib` of RAM takes.
pub fn vm_footprint_mib(guest_mib: u32) -> u64 {
    u64::from(guest_mib) + VM_OVERHEAD_MIB
}

fn mem_available_mib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(yaml: &str) -> Scenario {
        modharness_scenario::parse(yaml, Path::new("s.yaml")).unwrap()
    }

    #[test]
    fn cost_counts_repeats_parallel_branches_and_the_kernels_slowdown() {
        let s = scenario(
            "name: s\nsteps:\n  - repeat:\n      times: 10\n      steps:\n        - load: m\n        - sleep: 500ms\n        - unload: m\n  - parallel:\n      - [ { sleep: 2s } ]\n      - [ { sleep: 1s }, { shell: 'true' } ]\n",
        );
        let stock = expected_seconds(&s, 1);
        // 10 × 0.5 s + 2 s waited; 20 loads/unloads + 1 shell; the boot.
        assert!((stock - (7.0 + 4.0 + 21.0 * 0.3)).abs() < 1e-9, "{stock}");
        let debug = expected_seconds(&s, 8);
        assert!(
            (debug - (7.0 + (4.0 + 21.0 * 0.3) * 8.0)).abs() < 1e-9,
            "{debug}"
        );
    }

    #[test]
    fn longest_first_keeps_the_order_of_equal_costs() {
        assert_eq!(longest_first(&[1.0, 5.0, 1.0, 9.0]), [3, 1, 0, 2]);
    }

    #[test]
    fn partition_is_even_deterministic_and_covers_every_item() {
        let costs = [50.0, 10.0, 10.0, 30.0, 20.0, 40.0];
        let split = partition(&costs, 2);
        assert_eq!(split, partition(&costs, 2));
        let total = |shard| -> f64 {
            costs
                .iter()
                .zip(&split)
                .filter(|(_, s)| **s == shard)
                .map(|(c, _)| c)
                .sum()
        };
        assert_eq!((total(0), total(1)), (80.0, 80.0));
        assert_eq!(partition(&costs, 1), vec![0; 6]);
        // More shards than items: each item alone, the rest empty.
        assert_eq!(partition(&[1.0, 2.0], 4), [1, 0]);
    }

    #[test]
    fn jobs_are_bounded_by_cores_and_memory_is_read_from_meminfo() {
        let host = HostCapacity {
            cores: 2,
            memory_mib: 4096,
        };
        assert_eq!(
            (host.max_jobs(8), host.max_jobs(0), host.max_jobs(1)),
            (2, 1, 1)
        );
        assert_eq!(host.vm_budget_mib(), 3072);
        assert_eq!(
            mem_available_mib("MemTotal: 100 kB\nMemAvailable:    2097152 kB\n"),
            Some(2048)
        );
        assert_eq!(mem_available_mib("garbage"), None);
    }
}
