//! The emulated hardware a scenario may add, each device with fixed QEMU arguments.
//!
//! A device is one of a closed set ([`Device::ALL`]), never a string passed through, so a
//! scenario cannot put options or host paths on QEMU's command line. Disks are backed by
//! `null-co` (reads return zeroes, writes vanish: no host file), NICs by user networking with
//! `restrict=on` (no packet leaves QEMU, no host network is needed), sound by `-audiodev none`.
//! Every device gets an id of its own name, so ids are unique in a deduplicated list.

/// One emulated device a scenario may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Device {
    /// QEMU's educational PCI device (interrupts on demand, the `irq_storm` target).
    Edu,
    /// QEMU's PCI test device.
    PciTestdev,
    /// Intel 82540EM gigabit NIC (`e1000`).
    E1000,
    /// Intel 82574L PCIe NIC (`e1000e`).
    E1000e,
    /// Realtek RTL8139 NIC (`8139too`, `8139cp`).
    Rtl8139,
    /// virtio network card on PCI (`virtio_net`).
    VirtioNet,
    /// AHCI SATA controller with a disk (`ahci`).
    Ahci,
    /// NVMe controller with a namespace (`nvme`).
    Nvme,
    /// virtio block device on PCI (`virtio_blk`).
    VirtioBlk,
    /// virtio SCSI controller with a disk (`virtio_scsi`, `sd_mod`).
    VirtioScsi,
    /// LSI 53C895A SCSI controller with a disk (`sym53c8xx`).
    Lsi,
    /// USB 2.0 EHCI controller (`ehci_pci`).
    Ehci,
    /// USB 3.0 xHCI controller (`xhci_pci`).
    Xhci,
    /// USB mass-storage stick (`usb_storage`), on the xHCI controller.
    UsbStorage,
    /// USB keyboard (`usbhid`), on the xHCI controller.
    UsbKbd,
    /// USB tablet, an absolute pointer (`usbhid`), on the xHCI controller.
    UsbTablet,
    /// Intel HD Audio controller with a duplex codec (`snd_hda_intel`).
    IntelHda,
    /// Intel AC'97 audio (`snd_intel8x0`).
    Ac97,
    /// Intel 6300ESB watchdog (`i6300esb`).
    I6300esb,
}

/// The size every emulated disk reports: 1 GiB, which costs nothing with `null-co`.
pub const DISK_BYTES: u64 = 1 << 30;

/// The id of the one `-audiodev none` the sound devices share.
const AUDIODEV: &str = "audio";

impl Device {
    /// Every device, in the order their arguments appear on QEMU's command line: controllers
    /// before the devices plugged into them.
    pub const ALL: &'static [Device] = &[
        Device::Edu,
        Device::PciTestdev,
        Device::E1000,
        Device::E1000e,
        Device::Rtl8139,
        Device::VirtioNet,
        Device::Ahci,
        Device::Nvme,
        Device::VirtioBlk,
        Device::VirtioScsi,
        Device::Lsi,
        Device::Ehci,
        Device::Xhci,
        Device::UsbStorage,
        Device::UsbKbd,
        Device::UsbTablet,
        Device::IntelHda,
        Device::Ac97,
        Device::I6300esb,
    ];

    /// The name a scenario writes (`vm.devices`), also the device's QEMU id.
    pub fn name(self) -> &'static str {
        match self {
            Device::Edu => "edu",
            Device::PciTestdev => "pci-testdev",
            Device::E1000 => "e1000",
            Device::E1000e => "e1000e",
            Device::Rtl8139 => "rtl8139",
            Device::VirtioNet => "virtio-net",
            Device::Ahci => "ahci",
            Device::Nvme => "nvme",
            Device::VirtioBlk => "virtio-blk",
            Device::VirtioScsi => "virtio-scsi",
            Device::Lsi => "lsi",
            Device::Ehci => "ehci",
            Device::Xhci => "xhci",
            Device::UsbStorage => "usb-storage",
            Device::UsbKbd => "usb-kbd",
            Device::UsbTablet => "usb-tablet",
            Device::IntelHda => "intel-hda",
            Device::Ac97 => "ac97",
            Device::I6300esb => "i6300esb",
        }
    }

    /// The device a scenario names, if it is one of [`Device::ALL`].
    pub fn from_name(name: &str) -> Option<Device> {
        Device::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Whether the device plugs into the xHCI controller's bus.
    fn is_usb(self) -> bool {
        matches!(
            self,
            Device::UsbStorage | Device::UsbKbd | Device::UsbTablet
        )
    }

    /// Whether the device is one of QEMU's test devices rather than real hardware.
    pub(crate) fn is_test_device(self) -> bool {
        matches!(self, Device::Edu | Device::PciTestdev)
    }

    /// This device's own arguments, its disk backend included.
    fn args(self) -> Vec<String> {
        let id = self.name();
        match self {
            Device::Edu | Device::PciTestdev | Device::I6300esb => device(&format!("{id},id={id}")),
            Device::E1000 | Device::E1000e | Device::Rtl8139 => nic(id, id),
            Device::VirtioNet => nic("virtio-net-pci", id),
            Device::Ahci => [
                disk_backend(id),
                device("ahci,id=ahci"),
                device("ide-hd,id=ahci-disk,bus=ahci.0,drive=disk-ahci"),
            ]
            .concat(),
            Device::Nvme => [
                disk_backend(id),
                device("nvme,id=nvme,serial=modharness-nvme,drive=disk-nvme"),
            ]
            .concat(),
            Device::VirtioBlk => [
                disk_backend(id),
                device("virtio-blk-pci,id=virtio-blk,drive=disk-virtio-blk"),
            ]
            .concat(),
            Device::VirtioScsi => scsi("virtio-scsi-pci", id),
            Device::Lsi => scsi("lsi53c895a", id),
            Device::Ehci => device("usb-ehci,id=ehci"),
            Device::Xhci => device("qemu-xhci,id=xhci"),
            Device::UsbStorage => [
                disk_backend(id),
                device("usb-storage,id=usb-storage,bus=xhci.0,drive=disk-usb-storage"),
            ]
            .concat(),
            Device::UsbKbd | Device::UsbTablet => device(&format!("{id},id={id},bus=xhci.0")),
            Device::IntelHda => [
                device("intel-hda,id=intel-hda"),
                device(&format!(
                    "hda-duplex,id=hda-duplex,bus=intel-hda.0,audiodev={AUDIODEV}"
                )),
            ]
            .concat(),
            Device::Ac97 => device(&format!("AC97,id=ac97,audiodev={AUDIODEV}")),
        }
    }
}

/// `-device SPEC`.
fn device(spec: &str) -> Vec<String> {
    vec!["-device".into(), spec.into()]
}

/// A NIC of QEMU model `model` on its own isolated user-mode network, without an option ROM
/// (the guest boots with `-kernel`, and the ROM file need not be installed).
fn nic(model: &str, id: &str) -> Vec<String> {
    vec![
        "-netdev".into(),
        format!("user,id=net-{id},restrict=on"),
        "-device".into(),
        format!("{model},id={id},netdev=net-{id},romfile="),
    ]
}

/// A SCSI controller of QEMU model `model` with one disk on its first bus.
fn scsi(model: &str, id: &str) -> Vec<String> {
    [
        disk_backend(id),
        device(&format!("{model},id={id}")),
        device(&format!("scsi-hd,id={id}-disk,bus={id}.0,drive=disk-{id}")),
    ]
    .concat()
}

/// The block node `disk-ID`: [`DISK_BYTES`] of zeroes, no host file.
fn disk_backend(id: &str) -> Vec<String> {
    vec![
        "-blockdev".into(),
        format!("driver=null-co,node-name=disk-{id},size={DISK_BYTES},read-zeroes=on"),
    ]
}

/// The devices QEMU gets for `devices`: each once, in [`Device::ALL`] order, with the xHCI
/// controller added when a USB device needs a bus.
pub fn expand(devices: &[Device]) -> Vec<Device> {
    let needs_xhci = devices.iter().any(|d| d.is_usb());
    Device::ALL
        .iter()
        .copied()
        .filter(|d| devices.contains(d) || (*d == Device::Xhci && needs_xhci))
        .collect()
}

/// The arguments for `devices` (see [`expand`]), with the `-audiodev none` that sound devices
/// need ahead of them.
pub fn devices_args(devices: &[Device]) -> Vec<String> {
    let devices = expand(devices);
    let mut args = Vec::new();
    if devices
        .iter()
        .any(|d| matches!(d, Device::IntelHda | Device::Ac97))
    {
        args.extend(["-audiodev".into(), format!("none,id={AUDIODEV}")]);
    }
    for device in devices {
        args.extend(device.args());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(devices: &[Device]) -> String {
        devices_args(devices).join(" ")
    }

    const DISK: &str = "size=1073741824,read-zeroes=on";

    #[test]
    fn every_device_expands_to_its_fixed_arguments() {
        let cases: &[(Device, String)] = &[
            (Device::Edu, "-device edu,id=edu".into()),
            (Device::PciTestdev, "-device pci-testdev,id=pci-testdev".into()),
            (Device::E1000, "-netdev user,id=net-e1000,restrict=on -device e1000,id=e1000,netdev=net-e1000,romfile=".into()),
            (Device::E1000e, "-netdev user,id=net-e1000e,restrict=on -device e1000e,id=e1000e,netdev=net-e1000e,romfile=".into()),
            (Device::Rtl8139, "-netdev user,id=net-rtl8139,restrict=on -device rtl8139,id=rtl8139,netdev=net-rtl8139,romfile=".into()),
            (Device::VirtioNet, "-netdev user,id=net-virtio-net,restrict=on -device virtio-net-pci,id=virtio-net,netdev=net-virtio-net,romfile=".into()),
            (Device::Ahci, format!("-blockdev driver=null-co,node-name=disk-ahci,{DISK} -device ahci,id=ahci -device ide-hd,id=ahci-disk,bus=ahci.0,drive=disk-ahci")),
            (Device::Nvme, format!("-blockdev driver=null-co,node-name=disk-nvme,{DISK} -device nvme,id=nvme,serial=modharness-nvme,drive=disk-nvme")),
            (Device::VirtioBlk, format!("-blockdev driver=null-co,node-name=disk-virtio-blk,{DISK} -device virtio-blk-pci,id=virtio-blk,drive=disk-virtio-blk")),
            (Device::VirtioScsi, format!("-blockdev driver=null-co,node-name=disk-virtio-scsi,{DISK} -device virtio-scsi-pci,id=virtio-scsi -device scsi-hd,id=virtio-scsi-disk,bus=virtio-scsi.0,drive=disk-virtio-scsi")),
            (Device::Lsi, format!("-blockdev driver=null-co,node-name=disk-lsi,{DISK} -device lsi53c895a,id=lsi -device scsi-hd,id=lsi-disk,bus=lsi.0,drive=disk-lsi")),
            (Device::Ehci, "-device usb-ehci,id=ehci".into()),
            (Device::Xhci, "-device qemu-xhci,id=xhci".into()),
            (Device::UsbStorage, format!("-device qemu-xhci,id=xhci -blockdev driver=null-co,node-name=disk-usb-storage,{DISK} -device usb-storage,id=usb-storage,bus=xhci.0,drive=disk-usb-storage")),
            (Device::UsbKbd, "-device qemu-xhci,id=xhci -device usb-kbd,id=usb-kbd,bus=xhci.0".into()),
            (Device::UsbTablet, "-device qemu-xhci,id=xhci -device usb-tablet,id=usb-tablet,bus=xhci.0".into()),
            (Device::IntelHda, "-audiodev none,id=audio -device intel-hda,id=intel-hda -device hda-duplex,id=hda-duplex,bus=intel-hda.0,audiodev=audio".into()),
            (Device::Ac97, "-audiodev none,id=audio -device AC97,id=ac97,audiodev=audio".into()),
            (Device::I6300esb, "-device i6300esb,id=i6300esb".into()),
        ];
        assert_eq!(cases.len(), Device::ALL.len());
        for (device, expected) in cases {
            assert_eq!(joined(&[*device]), *expected, "{device:?}");
        }
    }

    #[test]
    fn names_round_trip_and_nothing_else_is_a_device() {
        for &device in Device::ALL {
            assert_eq!(Device::from_name(device.name()), Some(device));
        }
        assert_eq!(Device::from_name("virtio-9p-pci,fsdev=x"), None);
        assert_eq!(Device::from_name("AC97"), None);
        assert_eq!(Device::from_name("installer"), None);
    }

    #[test]
    fn usb_devices_share_one_controller_and_come_after_it() {
        let args = joined(&[Device::UsbTablet, Device::Xhci, Device::UsbKbd]);
        assert_eq!(args.matches("qemu-xhci").count(), 1, "{args}");
        assert!(
            args.starts_with("-device qemu-xhci,id=xhci -device usb-kbd"),
            "{args}"
        );
    }

    #[test]
    fn sound_devices_share_one_audio_backend() {
        let args = joined(&[Device::Ac97, Device::IntelHda]);
        assert_eq!(args.matches("-audiodev").count(), 1, "{args}");
        assert!(
            args.starts_with("-audiodev none,id=audio -device intel-hda"),
            "{args}"
        );
    }

    #[test]
    fn a_repeated_device_is_added_once_so_ids_stay_unique() {
        assert_eq!(
            expand(&[Device::Edu, Device::Nvme, Device::Edu]),
            [Device::Edu, Device::Nvme]
        );
        let args = devices_args(Device::ALL);
        let mut ids: Vec<&str> = args
            .iter()
            .flat_map(|arg| arg.split(','))
            .filter_map(|part| part.strip_prefix("id=").or(part.strip_prefix("node-name=")))
            .collect();
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count, "{args:?}");
    }

    #[test]
    fn no_device_needs_a_host_file_or_network() {
        let args = devices_args(Device::ALL).join(" ");
        for forbidden in [
            ",file=",
            "filename=",
            "path=",
            "tap,",
            "bridge",
            "hostfwd",
            "guestfwd",
            "smb=",
        ] {
            assert!(!args.contains(forbidden), "{forbidden} in {args}");
        }
        assert_eq!(
            args.matches("user,").count(),
            args.matches("restrict=on").count()
        );
    }
}
