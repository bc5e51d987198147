//! `vm.devices`: names from a fixed list, and the presets that stand for several of them.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::yaml::parse_scalar;

/// The QEMU devices a scenario may ask for: a fixed list, so that a scenario file can never
/// smuggle host paths or options onto QEMU's command line. The vm crate gives each its
/// arguments; USB devices get an xHCI controller added when the list has none.
pub const DEVICES: &[&str] = &[
    "edu",
    "pci-testdev",
    "e1000",
    "e1000e",
    "rtl8139",
    "virtio-net",
    "ahci",
    "nvme",
    "virtio-blk",
    "virtio-scsi",
    "lsi",
    "ehci",
    "xhci",
    "usb-storage",
    "usb-kbd",
    "usb-tablet",
    "intel-hda",
    "ac97",
    "i6300esb",
];

/// The preset that stands for a typical PC, as an installer meets it.
pub const INSTALLER: &str = "installer";

/// What [`INSTALLER`] stands for: an Intel PCIe NIC, a SATA and an NVMe disk, USB 2 and 3
/// controllers with a stick, a keyboard and a tablet, and HD audio.
pub const INSTALLER_DEVICES: &[&str] = &[
    "e1000e",
    "ahci",
    "nvme",
    "ehci",
    "xhci",
    "usb-storage",
    "usb-kbd",
    "usb-tablet",
    "intel-hda",
];

/// The devices one name stands for: itself, or a preset's list.
fn parse_device(text: &str) -> Result<&'static [&'static str], String> {
    if text == INSTALLER {
        return Ok(INSTALLER_DEVICES);
    }
    match DEVICES.iter().position(|device| *device == text) {
        Some(index) => Ok(&DEVICES[index..=index]),
        None => Err(format!(
            "unknown device `{text}`; expected one of: {}, or the preset `{INSTALLER}`",
            DEVICES.join(", ")
        )),
    }
}

/// One list entry, checked where it stands.
struct DeviceName(&'static [&'static str]);

impl<'de> serde::Deserialize<'de> for DeviceName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a device name", parse_device).map(DeviceName)
    }
}

/// `vm.devices`: a list of names from [`DEVICES`] and presets, or a single one of them
/// (`devices: installer`); presets expanded, each device once, in the order first named.
pub(crate) fn devices<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(DevicesVisitor)
}

struct DevicesVisitor;

impl<'de> Visitor<'de> for DevicesVisitor {
    type Value = Vec<String>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(
            formatter,
            "a list of device names, or the preset `{INSTALLER}`"
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
        let mut devices = Vec::new();
        add(&mut devices, parse_device(text).map_err(E::custom)?);
        Ok(devices)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut devices = Vec::new();
        while let Some(DeviceName(names)) = seq.next_element()? {
            add(&mut devices, names);
        }
        Ok(devices)
    }
}

/// Appends the names not in `devices` yet.
fn add(devices: &mut Vec<String>, names: &[&str]) {
    for name in names {
        if !devices.iter().any(|device| device == name) {
            devices.push((*name).to_owned());
        }
    }
}
