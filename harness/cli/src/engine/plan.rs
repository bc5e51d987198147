//! Stage 1 of a scenario: what the guest is given. The agent's plan, the initramfs that carries
//! it, and the VM that boots it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use modharness_images::initramfs;
use modharness_images::kernel::Kernel;
use modharness_protocol::{any_step, DebugChecks, Plan, Step, PLAN_PATH};
use modharness_scenario::Scenario;
use modharness_vm::{self as vm, Accel, Machine, VmConfig};

use super::boot::WorkDir;
use crate::catalog;
use crate::error::{Failure, Result};

/// The agent's plan for `scenario`: its steps, and the files of the modules it names.
pub(crate) fn plan(scenario: &Scenario, resolved: &catalog::Resolved, kernel: &Kernel) -> Plan {
    let names = scenario.module_names();
    Plan {
        steps: scenario.steps.clone(),
        modules: resolved
            .plan_modules
            .iter()
            .filter(|(name, _)| names.contains(*name))
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect(),
        sample_memory: scenario
            .steps
            .iter()
            .any(|s| matches!(s, Step::Repeat { .. } | Step::MassProbe { .. })),
        debug: debug_checks(kernel),
        resume: None,
    }
}

/// The debug checks `kernel` was built with.
pub(crate) fn debug_checks(kernel: &Kernel) -> DebugChecks {
    DebugChecks {
        kmemleak: kernel.has_config("CONFIG_DEBUG_KMEMLEAK"),
        kasan: kernel.has_config("CONFIG_KASAN"),
    }
}

/// How much slower than a stock kernel a kernel with these debug checks runs under emulation:
/// KASAN checks every memory access, kmemleak and ODEBUG track every object. A debug kernel of
/// `images/debug.config` reaches init in ~24 s under TCG, a stock one in ~2 s.
pub(crate) fn slowdown(debug: DebugChecks) -> u32 {
    match (debug.kasan, debug.kmemleak) {
        (true, true) => 8,
        (true, false) => 6,
        (false, true) => 2,
        (false, false) => 1,
    }
}

/// kmemleak's scans before the first step and after the last, with the wait between them.
const KMEMLEAK_SCANS: Duration = Duration::from_secs(30);

/// A scenario's whole time on this plan's kernel: its `vm.timeout`, scaled by the kernel's
/// [`slowdown`], plus kmemleak's scans, so that no scenario states a debug kernel's budget.
pub(crate) fn time_budget(scenario: &Scenario, plan: &Plan) -> Duration {
    let scans = if plan.debug.kmemleak {
        KMEMLEAK_SCANS
    } else {
        Duration::ZERO
    };
    scenario.vm.timeout * slowdown(plan.debug) + scans
}

/// The (guest path, host file) pairs the plan loads.
pub(crate) fn plan_files(plan: &Plan, resolved: &catalog::Resolved) -> Vec<(String, PathBuf)> {
    resolved
        .files
        .iter()
        .filter(|(guest, _)| plan.modules.values().flatten().any(|p| p == guest))
        .cloned()
        .collect()
}

/// Write the initramfs into `work`: agent, plan, modules, and busybox when the plan runs shell
/// commands.
pub(crate) fn write_initrd(
    work: &WorkDir,
    plan: &Plan,
    files: &[(String, PathBuf)],
    agent: &Path,
    busybox: &Path,
) -> Result<PathBuf> {
    let plan_json = serde_json::to_vec(plan).expect("plans serialize");
    let image = initramfs::build(&initramfs::Contents {
        agent,
        busybox: any_step(&plan.steps, &|s| matches!(s, Step::Shell { .. })).then_some(busybox),
        plan_json: &plan_json,
        plan_path: PLAN_PATH,
        modules: files,
    })?;
    let initrd = work.path.join("initrd.cpio");
    std::fs::write(&initrd, image)
        .map_err(|e| Failure::infra(format!("{}: {e}", initrd.display())))?;
    Ok(initrd)
}

/// Append the kernel's whole modules tree (cached as a cpio archive of its own) to `initrd`
/// when the plan mass-probes it: the kernel unpacks concatenated archives into one rootfs.
pub(crate) fn append_modules_tree(
    initrd: &Path,
    plan: &Plan,
    kernel: &Kernel,
    cache_root: &Path,
) -> Result<()> {
    if !plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::MassProbe { .. }))
    {
        return Ok(());
    }
    let pack = modharness_images::modpack::build(kernel, cache_root)?;
    let append = || -> std::io::Result<u64> {
        let mut out = std::fs::OpenOptions::new().append(true).open(initrd)?;
        std::io::copy(&mut std::fs::File::open(&pack.cpio)?, &mut out)
    };
    append().map_err(|e| Failure::infra(format!("{}: {e}", initrd.display())))?;
    Ok(())
}

/// The machine a scenario needs: `microvm` boots fastest, PCI devices need `pc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Shape {
    pub machine: Machine,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Devices to add, the storms' devices included.
    pub devices: Vec<vm::Device>,
    /// The kernel command line, whole.
    pub cmdline: String,
    /// The plan storms an ivshmem doorbell the host rings.
    pub host_storm: bool,
}

impl Shape {
    /// The VM `scenario` asks for, on a kernel [`slowdown`] times slower than a stock one.
    pub fn of(scenario: &Scenario, slowdown: u32) -> Shape {
        // The scenario's validation has checked every name against the device list.
        let devices: Vec<vm::Device> = vm_devices(scenario)
            .iter()
            .filter_map(|d| vm::Device::from_name(d))
            .collect();
        let host_storm = storms(&scenario.steps, "ivshmem");
        Shape {
            machine: vm::machine_for(&devices, host_storm, slowdown > 1),
            cpus: scenario.vm.cpus,
            memory_mib: scenario.vm.memory_mib,
            devices,
            cmdline: guest_cmdline(scenario, slowdown),
            host_storm,
        }
    }

    /// The same machine with nothing added: what the accelerator probe boots.
    pub fn bare(&self) -> Shape {
        Shape {
            machine: self.machine,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            devices: Vec::new(),
            cmdline: vm::argv::kernel_cmdline(""),
            host_storm: false,
        }
    }

    /// QEMU's configuration for this shape, with its sockets in `work`.
    pub fn config(
        &self,
        qemu: &Path,
        accel: Accel,
        kernel: &Kernel,
        work: &WorkDir,
        initrd: PathBuf,
    ) -> VmConfig {
        VmConfig {
            qemu: qemu.to_path_buf(),
            accel,
            machine: self.machine,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            kernel: kernel.boot_image.clone(),
            initrd,
            cmdline: self.cmdline.clone(),
            console_socket: work.path.join("console.sock"),
            control_socket: work.path.join("control.sock"),
            qmp_socket: work.path.join("qmp.sock"),
            devices: self.devices.clone(),
            doorbell: self.host_storm.then(|| work.path.join("ivshmem.sock")),
        }
    }
}

/// Whether the plan storms `device`.
pub(crate) fn storms(steps: &[Step], device: &str) -> bool {
    any_step(
        steps,
        &|s| matches!(s, Step::IrqStorm { device: d, .. } if d == device),
    )
}

/// The scenario's devices, plus those its storms need.
fn vm_devices(scenario: &Scenario) -> Vec<String> {
    let mut devices = scenario.vm.devices.clone();
    if storms(&scenario.steps, "edu") && !devices.iter().any(|d| d == "edu") {
        devices.push("edu".into());
    }
    devices
}

/// The kernel command line: the stall detectors' thresholds scaled by `slowdown`, the scenario's
/// own options (which win over ours), and `iomem=relaxed` for a guest-driven storm (the agent
/// maps the BAR of a device whose driver holds it).
fn guest_cmdline(scenario: &Scenario, slowdown: u32) -> String {
    let mut extra = stall_thresholds(slowdown);
    extra.push(' ');
    extra.push_str(&scenario.vm.cmdline);
    if storms(&scenario.steps, "edu") {
        extra.push_str(" iomem=relaxed");
    }
    vm::argv::kernel_cmdline(&extra)
}

/// The RCU stall and soft-lockup thresholds for a kernel `slowdown` times slower than stock,
/// empty on a stock kernel. Their defaults (21 s, 20 s) say "too long for real hardware"; under
/// emulation a debug kernel spends longer than that in code that is merely slow (measured:
/// ACPI's `_PRT` evaluation in `pci_enable_device` took 23 s on debug-mini under TCG), which would
/// report a stall in every driver probe. The kernel caps them at 300 s and 60 s (a lockup at 2×).
fn stall_thresholds(slowdown: u32) -> String {
    if slowdown <= 1 {
        return String::new();
    }
    let rcu_s = (21 * slowdown).min(300);
    let watchdog_s = (10 * slowdown).min(60);
    format!("rcupdate.rcu_cpu_stall_timeout={rcu_s} watchdog_thresh={watchdog_s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(yaml: &str) -> Scenario {
        modharness_scenario::parse(yaml, Path::new("s.yaml")).unwrap()
    }

    #[test]
    fn a_guest_driven_storm_adds_its_device_and_relaxed_iomem_on_pc() {
        let s =
            scenario("name: s\nsteps:\n  - irq_storm: { device: edu, rate: 10, duration: 1s }\n");
        let shape = Shape::of(&s, 1);
        assert_eq!(shape.machine, Machine::Pc);
        assert_eq!(shape.devices, [vm::Device::from_name("edu").unwrap()]);
        assert!(
            shape.cmdline.starts_with("iomem=relaxed "),
            "{}",
            shape.cmdline
        );
    }

    #[test]
    fn the_probe_boots_the_scenario_machine_without_its_additions() {
        let s = scenario(
            "name: s\nvm: { cpus: 3, memory: 768M, cmdline: quiet }\nsteps:\n  - sleep: 1ms\n",
        );
        let bare = Shape::of(&s, 1).bare();
        assert_eq!(
            (bare.machine, bare.cpus, bare.memory_mib),
            (Machine::Microvm, 3, 768)
        );
        assert_eq!(bare.cmdline, vm::argv::kernel_cmdline(""));
    }

    #[test]
    fn stall_detectors_wait_longer_on_slow_kernels_and_the_scenario_still_wins() {
        let s = scenario("name: s\nvm: { cmdline: watchdog_thresh=5 }\nsteps:\n  - sleep: 1ms\n");
        assert_eq!(
            Shape::of(&s, 1).cmdline,
            vm::argv::kernel_cmdline("watchdog_thresh=5")
        );
        let slow = Shape::of(&s, 8).cmdline;
        assert!(
            slow.starts_with(
                "rcupdate.rcu_cpu_stall_timeout=168 watchdog_thresh=60 watchdog_thresh=5 "
            ),
            "{slow}"
        );
        assert!(stall_thresholds(20).contains("rcu_cpu_stall_timeout=300"));
    }
}
