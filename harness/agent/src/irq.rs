//! IRQ storms: find a PCI device, raise its interrupts (guest-driven `edu`) or let the host do it
//! (`ivshmem`), and count what `/proc/interrupts` saw.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The sysfs directory of the first PCI device with these ids.
pub fn find_pci_device(sysfs: &Path, vendor: u16, device: u16) -> Option<PathBuf> {
    let read_id = |dir: &Path, file: &str| {
        let text = fs::read_to_string(dir.join(file)).ok()?;
        u16::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
    };
    let mut dirs: Vec<PathBuf> = fs::read_dir(sysfs)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    dirs.into_iter().find(|dir| {
        read_id(dir, "vendor") == Some(vendor) && read_id(dir, "device") == Some(device)
    })
}

/// The interrupt numbers a PCI device uses: its legacy line and its MSI/MSI-X vectors.
pub fn device_irqs(device_dir: &Path) -> Vec<u32> {
    let mut irqs: Vec<u32> = fs::read_dir(device_dir.join("msi_irqs"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if let Some(line) = fs::read_to_string(device_dir.join("irq"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .filter(|&irq| irq != 0)
    {
        irqs.push(line);
    }
    irqs.sort_unstable();
    irqs.dedup();
    irqs
}

/// The total count, over every CPU, of the given interrupt numbers in `/proc/interrupts` text.
pub fn interrupt_count(proc_interrupts: &str, irqs: &[u32]) -> u64 {
    let mut lines = proc_interrupts.lines();
    let cpus = lines
        .next()
        .map_or(0, |header| header.split_whitespace().count());
    lines
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let number: u32 = number.parse().ok()?;
            irqs.contains(&number).then(|| {
                rest.split_whitespace()
                    .take(cpus)
                    .map_while(|field| field.parse::<u64>().ok())
                    .sum::<u64>()
            })
        })
        .sum()
}

/// Per-interrupt totals (over every CPU) of the given interrupt numbers.
pub fn interrupt_counts(proc_interrupts: &str, irqs: &[u32]) -> BTreeMap<u32, u64> {
    irqs.iter()
        .map(|&irq| (irq, interrupt_count(proc_interrupts, &[irq])))
        .collect()
}

/// Counts a device's interrupts while a storm runs. A driver may request its vectors, or free
/// them (an unload in a parallel branch), in the middle of the storm, and a freed vector's line
/// leaves `/proc/interrupts`: so the device's interrupts are looked up again at every sample and
/// the highest count seen of each is kept.
pub struct DeliveryCounter {
    device_dir: PathBuf,
    baseline: BTreeMap<u32, u64>,
    highest: BTreeMap<u32, u64>,
}

impl DeliveryCounter {
    /// Start counting from now.
    pub fn start(device_dir: &Path) -> DeliveryCounter {
        let baseline = read_counts(device_dir);
        DeliveryCounter {
            device_dir: device_dir.to_path_buf(),
            highest: baseline.clone(),
            baseline,
        }
    }

    /// Take a sample.
    pub fn sample(&mut self) {
        for (irq, count) in read_counts(&self.device_dir) {
            let seen = self.highest.entry(irq).or_insert(0);
            *seen = (*seen).max(count);
        }
    }

    /// Interrupts delivered since [`DeliveryCounter::start`].
    pub fn delivered(&self) -> u64 {
        self.highest
            .iter()
            .map(|(irq, &count)| count.saturating_sub(self.baseline.get(irq).copied().unwrap_or(0)))
            .sum()
    }
}

fn read_counts(device_dir: &Path) -> BTreeMap<u32, u64> {
    let text = fs::read_to_string("/proc/interrupts").unwrap_or_default();
    interrupt_counts(&text, &device_irqs(device_dir))
}

/// Raise `edu` interrupts by writing its "raise interrupt" register at `rate` per second for
/// `duration`; returns how many writes were made. The driver under test acknowledges them.
pub fn raise_edu(device_dir: &Path, rate: u32, duration: Duration) -> io::Result<u64> {
    const RAISE_REGISTER: usize = 0x60;
    use std::os::fd::AsRawFd;
    let bar = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device_dir.join("resource0"))?;
    // SAFETY: a shared mapping of the first page of BAR0, unmapped below; the file outlives it.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            bar.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::other(format!(
            "mmap of {}/resource0: {} (a driver holding the BAR needs iomem=relaxed)",
            device_dir.display(),
            io::Error::last_os_error()
        )));
    }
    let register = unsafe { (map as *mut u8).add(RAISE_REGISTER) as *mut u32 };
    let raised = paced(rate, duration, || {
        // SAFETY: an aligned register inside the mapped page; volatile, as it is device memory.
        unsafe { std::ptr::write_volatile(register, 1) };
    });
    // SAFETY: the mapping made above.
    unsafe { libc::munmap(map, 4096) };
    Ok(raised)
}

/// Call `act` `rate` times per second for `duration`, in batches every millisecond (sleeps finer
/// than that are not reliable under emulation). Returns the number of calls.
pub fn paced(rate: u32, duration: Duration, mut act: impl FnMut()) -> u64 {
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < duration {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while done < due {
            act();
            done += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERRUPTS: &str = "           CPU0       CPU1\n  0:         48          0   IO-APIC   2-edge      timer\n 11:       1200       3400   IO-APIC  11-fasteoi   mh_edu\n 24:         10          5   PCI-MSIX-0000:00:04.0   0-edge      mh_ivshmem\nNMI:          0          0   Non-maskable interrupts\n";

    #[test]
    fn counts_sum_every_cpu_of_the_named_interrupts_only() {
        assert_eq!(interrupt_count(INTERRUPTS, &[11]), 4600);
        assert_eq!(interrupt_count(INTERRUPTS, &[11, 24]), 4615);
        assert_eq!(interrupt_count(INTERRUPTS, &[99]), 0);
    }

    #[test]
    fn per_interrupt_counts_keep_each_line_apart() {
        let counts = interrupt_counts(INTERRUPTS, &[11, 24, 99]);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            [(11, 4600), (24, 15), (99, 0)]
        );
    }

    #[test]
    fn device_lookup_and_its_interrupts_come_from_sysfs() {
        let root = std::env::temp_dir().join(format!("mh-agent-pci-{}", std::process::id()));
        let dev = root.join("0000:00:04.0");
        fs::create_dir_all(dev.join("msi_irqs")).unwrap();
        fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
        fs::write(dev.join("device"), "0x1110\n").unwrap();
        fs::write(dev.join("irq"), "11\n").unwrap();
        fs::write(dev.join("msi_irqs/24"), "msix\n").unwrap();
        assert_eq!(find_pci_device(&root, 0x1af4, 0x1110), Some(dev.clone()));
        assert_eq!(find_pci_device(&root, 0x1234, 0x11e8), None);
        assert_eq!(device_irqs(&dev), [11, 24]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn pacing_keeps_to_the_rate() {
        let mut calls = 0u64;
        let made = paced(2000, Duration::from_millis(100), || calls += 1);
        assert_eq!(made, calls);
        assert!(
            (150..=210).contains(&made),
            "{made} calls for 2000/s over 100 ms"
        );
    }
}
