//! QEMU's command line, built from small pure functions that unit tests cover.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::devices::{devices_args, Device};

/// How guest code runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// QEMU's software emulation, one host thread per vCPU.
    Tcg,
}

/// The emulated machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `microvm` without ACPI: the fastest boot, legacy serial ports only, no PCI.
    Microvm,
    /// `pc` with qboot: PCI devices (e.g. `edu`) and a pvpanic device.
    Pc,
    /// `q35` with qboot: PCIe and an ICH9 chipset, and a pvpanic device. With real hardware on
    /// it, it boots faster than `pc` under TCG (see [`machine_for`]).
    Q35,
}

/// The machine for a guest with `devices` and, if `doorbell`, an ivshmem doorbell: microvm
/// when there is neither; pc for the doorbell (the machine its storms were measured on) and for
/// QEMU's test devices; q35 otherwise, when there is real hardware. On `pc` the kernel routes
/// PCI interrupts through ACPI link devices whose AML runs slowly under TCG (Debian 6.12 spent
/// 0.6 s in the USB controllers' early handoff alone); q35 routes them without. On a
/// `slow_kernel` (debug checks) the test devices go on q35 too: `pc`'s `_PRT` is an AML loop that
/// took 27 s per `pci_enable_device` on a KASAN kernel, and past ACPI's 30 s loop timeout the
/// device is left without its interrupt routing.
pub fn machine_for(devices: &[Device], doorbell: bool, slow_kernel: bool) -> Machine {
    let real_hardware = devices.iter().any(|d| !d.is_test_device());
    if !doorbell && (real_hardware || (slow_kernel && !devices.is_empty())) {
        Machine::Q35
    } else if doorbell || !devices.is_empty() {
        Machine::Pc
    } else {
        Machine::Microvm
    }
}

/// Everything that decides QEMU's command line.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The QEMU binary.
    pub qemu: PathBuf,
    pub accel: Accel,
    pub machine: Machine,
    pub cpus: u32,
    pub memory_mib: u32,
    /// The kernel: an uncompressed vmlinux (booted through its PVH note) or a bzImage.
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The whole kernel command line (see [`kernel_cmdline`]).
    pub cmdline: String,
    /// Unix socket the host listens on for the guest console (ttyS0).
    pub console_socket: PathBuf,
    /// Unix socket the host listens on for the agent's control port (ttyS1).
    pub control_socket: PathBuf,
    /// Unix socket QEMU listens on for QMP.
    pub qmp_socket: PathBuf,
    /// Emulated devices to add, each with its fixed arguments (see [`crate::devices`]).
    pub devices: Vec<Device>,
    /// An `ivshmem-doorbell` device served by the [`crate::ivshmem::DoorbellServer`] on this
    /// socket (needs [`Machine::Pc`]).
    pub doorbell: Option<PathBuf>,
}

/// MSI-X vectors of the doorbell device: one is all a storm needs.
pub const DOORBELL_VECTORS: u32 = 1;

/// The kernel command line: what the scenario adds, then console on ttyS0, reboot at once on
/// panic by triple fault (a reset every machine turns into QEMU's exit under `-no-reboot`) and
/// the agent as init. The harness's options come last because the kernel keeps the last of a
/// repeated option: a scenario cannot turn off the panic reboot or replace the agent.
pub fn kernel_cmdline(extra: &str) -> String {
    let base = "console=ttyS0 panic=-1 reboot=t rdinit=/init";
    if extra.trim().is_empty() {
        base.to_string()
    } else {
        format!("{} {base}", extra.trim())
    }
}

/// The complete argv (without the program name).
pub fn argv(cfg: &VmConfig) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |parts: Vec<String>| args.extend(parts.into_iter().map(OsString::from));
    push(base_args());
    push(machine_args(cfg.machine));
    push(accel_args(cfg.accel));
    push(vec![
        "-smp".into(),
        cfg.cpus.to_string(),
        "-m".into(),
        format!("{}M", cfg.memory_mib),
    ]);
    push(boot_args(cfg));
    push(serial_args(cfg));
    push(qmp_args(cfg));
    push(device_args(cfg.machine, &cfg.devices));
    if let Some(socket) = &cfg.doorbell {
        push(crate::ivshmem::device_args(socket, DOORBELL_VECTORS));
    }
    args
}

/// No default devices, no display, no config files; a guest reboot ends QEMU.
pub fn base_args() -> Vec<String> {
    [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-net",
        "none",
    ]
    .map(String::from)
    .to_vec()
}

/// The machine. microvm needs its legacy timers, and ACPI off: with ACPI on, the kernel stalls
/// calibrating its clock under TCG.
pub fn machine_args(machine: Machine) -> Vec<String> {
    match machine {
        Machine::Microvm => vec!["-M".into(), "microvm,pit=on,pic=on,rtc=on,acpi=off".into()],
        Machine::Pc => vec!["-M".into(), "pc".into(), "-bios".into(), "qboot.rom".into()],
        Machine::Q35 => vec![
            "-M".into(),
            "q35".into(),
            "-bios".into(),
            "qboot.rom".into(),
        ],
    }
}

/// The accelerator; TCG runs one host thread per vCPU so races between vCPUs are real.
pub fn accel_args(accel: Accel) -> Vec<String> {
    match accel {
        Accel::Kvm => vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()],
        Accel::Tcg => vec!["-accel".into(), "tcg,thread=multi".into()],
    }
}

fn boot_args(cfg: &VmConfig) -> Vec<String> {
    vec![
        "-kernel".into(),
        cfg.kernel.display().to_string(),
        "-initrd".into(),
        cfg.initrd.display().to_string(),
        "-append".into(),
        cfg.cmdline.clone(),
    ]
}

/// Console and control ports, each a client of a socket the host listens on, so that not a byte
/// the guest writes is lost before the host is ready.
pub fn serial_args(cfg: &VmConfig) -> Vec<String> {
    let mut args = vec![
        "-chardev".into(),
        format!(
            "socket,id=console,path={}",
            chardev_path(&cfg.console_socket)
        ),
        "-chardev".into(),
        format!(
            "socket,id=control,path={}",
            chardev_path(&cfg.control_socket)
        ),
        "-serial".into(),
        "chardev:console".into(),
    ];
    match cfg.machine {
        // microvm has one serial port of its own; the second goes where Linux looks for ttyS1.
        Machine::Microvm => args.extend([
            "-device".into(),
            "isa-serial,chardev=control,iobase=0x2f8,irq=3".into(),
        ]),
        Machine::Pc | Machine::Q35 => args.extend(["-serial".into(), "chardev:control".into()]),
    }
    args
}

/// QMP on a unix socket that QEMU listens on.
pub fn qmp_args(cfg: &VmConfig) -> Vec<String> {
    vec![
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", chardev_path(&cfg.qmp_socket)),
    ]
}

/// Extra devices; on `pc` and `q35` a pvpanic device too, so a guest panic becomes a QMP event.
pub fn device_args(machine: Machine, devices: &[Device]) -> Vec<String> {
    let mut args = Vec::new();
    if machine != Machine::Microvm {
        args.extend(["-device".into(), "pvpanic".into()]);
    }
    args.extend(devices_args(devices));
    args
}

/// A path inside a QEMU option value: QEMU splits options at commas, and a doubled comma is a
/// literal one.
pub(crate) fn chardev_path(path: &std::path::Path) -> String {
    path.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(machine: Machine) -> VmConfig {
        VmConfig {
            qemu: "qemu-system-x86_64".into(),
            accel: Accel::Tcg,
            machine,
            cpus: 2,
            memory_mib: 512,
            kernel: "/c/vmlinux".into(),
            initrd: "/w/initrd".into(),
            cmdline: kernel_cmdline("slub_debug=FZPU"),
            console_socket: "/w/con.sock".into(),
            control_socket: "/w/a,b/ctl.sock".into(),
            qmp_socket: "/w/qmp.sock".into(),
            devices: vec![Device::Edu],
            doorbell: None,
        }
    }

    fn joined(cfg: &VmConfig) -> String {
        argv(cfg)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn microvm_puts_the_control_port_at_the_second_legacy_serial_address() {
        let line = joined(&config(Machine::Microvm));
        assert!(
            line.contains("-M microvm,pit=on,pic=on,rtc=on,acpi=off"),
            "{line}"
        );
        assert!(
            line.contains("-device isa-serial,chardev=control,iobase=0x2f8,irq=3"),
            "{line}"
        );
        assert!(!line.contains("pvpanic"), "{line}");
    }

    #[test]
    fn pc_gets_two_serial_ports_and_a_pvpanic_device() {
        let line = joined(&config(Machine::Pc));
        assert!(
            line.contains("-serial chardev:console -serial chardev:control"),
            "{line}"
        );
        assert!(
            line.contains("-device pvpanic -device edu,id=edu"),
            "{line}"
        );
        assert!(line.contains("-bios qboot.rom"), "{line}");
    }

    #[test]
    fn q35_boots_qboot_with_two_serial_ports_a_pvpanic_device_and_the_devices() {
        let mut cfg = config(Machine::Q35);
        cfg.devices = vec![Device::UsbKbd, Device::Ahci];
        let line = joined(&cfg);
        assert!(line.contains("-M q35 -bios qboot.rom"), "{line}");
        assert!(
            line.contains("-serial chardev:console -serial chardev:control"),
            "{line}"
        );
        assert!(
            line.contains("-device pvpanic -blockdev driver=null-co,node-name=disk-ahci"),
            "{line}"
        );
        assert!(
            line.ends_with("-device usb-kbd,id=usb-kbd,bus=xhci.0"),
            "{line}"
        );
    }

    #[test]
    fn real_hardware_goes_on_q35_unless_a_doorbell_keeps_it_on_pc() {
        assert_eq!(machine_for(&[], false, false), Machine::Microvm);
        assert_eq!(machine_for(&[], true, false), Machine::Pc);
        assert_eq!(
            machine_for(&[Device::Edu, Device::PciTestdev], false, false),
            Machine::Pc
        );
        assert_eq!(
            machine_for(&[Device::Edu, Device::E1000], false, false),
            Machine::Q35
        );
        assert_eq!(machine_for(&[Device::I6300esb], true, false), Machine::Pc);
    }

    #[test]
    fn test_devices_avoid_the_slow_acpi_loop_of_pc_on_a_slow_kernel() {
        assert_eq!(machine_for(&[Device::Edu], false, true), Machine::Q35);
        assert_eq!(machine_for(&[], false, true), Machine::Microvm);
        assert_eq!(machine_for(&[], true, true), Machine::Pc);
    }

    #[test]
    fn a_doorbell_adds_its_chardev_and_device() {
        let mut cfg = config(Machine::Pc);
        cfg.doorbell = Some("/w/ivshmem.sock".into());
        let line = joined(&cfg);
        assert!(line.contains("-chardev socket,id=ivshmem,path=/w/ivshmem.sock -device ivshmem-doorbell,chardev=ivshmem,vectors=1"), "{line}");
    }

    #[test]
    fn tcg_is_multi_threaded() {
        assert_eq!(accel_args(Accel::Tcg), ["-accel", "tcg,thread=multi"]);
    }

    #[test]
    fn commas_in_socket_paths_are_escaped() {
        let line = joined(&config(Machine::Microvm));
        assert!(line.contains("path=/w/a,,b/ctl.sock"), "{line}");
    }

    #[test]
    fn the_harness_options_come_after_the_scenario_options_so_that_they_win() {
        assert_eq!(
            kernel_cmdline(" slub_debug=FZPU "),
            "slub_debug=FZPU console=ttyS0 panic=-1 reboot=t rdinit=/init"
        );
        assert_eq!(
            kernel_cmdline(""),
            "console=ttyS0 panic=-1 reboot=t rdinit=/init"
        );
    }

    #[test]
    fn a_guest_reboot_ends_qemu() {
        assert!(base_args().contains(&"-no-reboot".to_string()));
    }
}
