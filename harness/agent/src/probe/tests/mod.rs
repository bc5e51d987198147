//! The mass-probe loop against a fake kernel that keeps a fake sysfs up to date: devices bound,
//! devices appearing behind a kept driver, modules that will not unload, memory not returned.

use super::*;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use modharness_protocol::ProbeSelection;

/// A guest's filesystem in a scratch directory: the modules tree, sysfs and procfs.
struct Guest {
    root: PathBuf,
}

impl Guest {
    /// `modules` are `(name, deps)`, in `modules.order` order; a dependency listed closest
    /// first, as depmod writes it.
    fn new(modules: &[(&str, &[&str])], aliases: &str) -> Guest {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "modharness-probe-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let guest = Guest { root };
        let path = |name: &str| format!("kernel/drivers/{name}.ko");
        let mut dep = String::new();
        let mut order = String::new();
        for (name, deps) in modules {
            let deps: Vec<String> = deps.iter().map(|d| path(d)).collect();
            dep.push_str(&format!("{}: {}\n", path(name), deps.join(" ")));
            order.push_str(&format!("{}\n", path(name)));
        }
        std::fs::create_dir_all(guest.modules()).unwrap();
        std::fs::write(guest.modules().join("modules.dep"), dep).unwrap();
        std::fs::write(guest.modules().join("modules.order"), order).unwrap();
        std::fs::write(guest.modules().join("modules.alias"), aliases).unwrap();
        std::fs::create_dir_all(guest.procfs().join("sys/vm")).unwrap();
        std::fs::write(guest.drop_caches(), "").unwrap();
        guest
    }

    fn modules(&self) -> PathBuf {
        self.root.join("lib/modules/6.12.0-test")
    }

    fn sysfs(&self) -> PathBuf {
        self.root.join("sys")
    }

    fn procfs(&self) -> PathBuf {
        self.root.join("proc")
    }

    fn drop_caches(&self) -> PathBuf {
        self.procfs().join("sys/vm/drop_caches")
    }

    /// A device with a modalias, as `/sys/bus/BUS/devices/DEVICE/modalias`.
    fn add_device(&self, bus: &str, device: &str, modalias: &str) {
        let dir = self
            .sysfs()
            .join("bus")
            .join(bus)
            .join("devices")
            .join(device);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("modalias"), format!("{modalias}\n")).unwrap();
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The PCI device a binding driver of the fake claims.
const PCI_DEVICE: &str = "0000:00:02.0";
/// The USB device that appears once `xhci_pci` is loaded.
const USB_MODALIAS: &str = "usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00";

/// A kernel whose modules behave as their names say: `absent*` find no device (ENODEV),
/// `busy*` never unload (EBUSY), `leaky*` keep 4 KiB of slab after they go, `*nic*`
/// and `xhci_pci` bind a PCI device, and `xhci_pci` brings a USB device with it.
struct FakeKernel {
    sysfs: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Loads, unloads and the probe's events, in order: `load x`, `unload x`, `start x`…
    log: Vec<String>,
    loaded: BTreeSet<String>,
    leaked_kib: u64,
}

impl FakeKernel {
    fn new(guest: &Guest) -> FakeKernel {
        FakeKernel {
            sysfs: guest.sysfs(),
            state: Mutex::new(State::default()),
        }
    }

    fn log(&self, entry: String) {
        self.state.lock().unwrap().log.push(entry);
    }

    fn entries(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    /// Only the loads and unloads.
    fn calls(&self) -> Vec<String> {
        self.entries()
            .into_iter()
            .filter(|e| e.starts_with("load ") || e.starts_with("unload "))
            .collect()
    }

    /// What the kernel does in sysfs when `name`'s driver binds a device.
    fn bind(&self, name: &str) {
        let driver = self
            .sysfs
            .join("module")
            .join(name)
            .join("drivers")
            .join(format!("pci:{name}"));
        std::fs::create_dir_all(&driver).unwrap();
        let device = self.sysfs.join("devices/pci0000:00").join(PCI_DEVICE);
        std::fs::create_dir_all(&device).unwrap();
        std::os::unix::fs::symlink(&device, driver.join(PCI_DEVICE)).unwrap();
        std::os::unix::fs::symlink(self.sysfs.join("module").join(name), driver.join("module"))
            .unwrap();
    }
}

impl Kernel for FakeKernel {
    fn load(&self, path: &Path, _params: &str) -> io::Result<()> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let name = crate::kernel::kernel_module_name(stem);
        self.log(format!("load {name}"));
        let mut state = self.state.lock().unwrap();
        if state.loaded.contains(&name) {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        if name.starts_with("absent") {
            return Err(io::Error::from_raw_os_error(libc::ENODEV));
        }
        if name.starts_with("leaky") {
            state.leaked_kib += 4;
        }
        if name.contains("nic") || name == "xhci_pci" {
            self.bind(&name);
        }
        if name == "xhci_pci" {
            let usb = self.sysfs.join("bus/usb/devices/1-1");
            std::fs::create_dir_all(&usb).unwrap();
            std::fs::write(usb.join("modalias"), format!("{USB_MODALIAS}\n")).unwrap();
        }
        state.loaded.insert(name);
        Ok(())
    }

    fn unload(&self, name: &str) -> io::Result<()> {
        self.log(format!("unload {name}"));
        let mut state = self.state.lock().unwrap();
        if !state.loaded.contains(name) {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        if name.starts_with("busy") {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        state.loaded.remove(name);
        let _ = std::fs::remove_dir_all(self.sysfs.join("module").join(name));
        if name == "xhci_pci" {
            let _ = std::fs::remove_dir_all(self.sysfs.join("bus/usb/devices/1-1"));
        }
        Ok(())
    }

    fn meminfo(&self) -> io::Result<String> {
        let leaked = self.state.lock().unwrap().leaked_kib;
        Ok(format!(
            "MemAvailable: 900000 kB\nSUnreclaim: {} kB\nVmallocUsed: 2048 kB\n",
            10_000 + leaked
        ))
    }

    fn slabinfo(&self) -> io::Result<String> {
        Ok(String::new())
    }

    fn vmallocinfo(&self) -> io::Result<String> {
        Ok(String::new())
    }

    fn modules(&self) -> io::Result<String> {
        Ok(String::new())
    }
}

/// What a run told the host: the events, and each sample's cycle with what drop_caches held
/// when it was taken.
struct Outcome {
    events: Vec<Event>,
    samples: Vec<(u32, String)>,
}

fn run(guest: &Guest, kernel: &FakeKernel, request: &Request<'_>) -> Outcome {
    let events = RefCell::new(Vec::new());
    let samples = RefCell::new(Vec::new());
    let emit = |event: &Event| {
        match event {
            Event::ProbeStart { module, .. } => kernel.log(format!("start {module}")),
            Event::ProbeModule { module, .. } => kernel.log(format!("done {module}")),
            _ => {}
        }
        events.borrow_mut().push(event.clone());
    };
    let sample = |cycle: u32| {
        let dropped = std::fs::read_to_string(guest.drop_caches()).unwrap_or_default();
        samples.borrow_mut().push((cycle, dropped));
        std::fs::write(guest.drop_caches(), "").unwrap();
    };
    let probe = Probe {
        kernel,
        modules_dir: guest.modules(),
        sysfs: guest.sysfs(),
        procfs: guest.procfs(),
        emit: &emit,
        sample: &sample,
        loaded: &|_, _| {},
        round_done: &|| {},
    };
    probe.run(request).unwrap();
    Outcome {
        events: events.into_inner(),
        samples: samples.into_inner(),
    }
}

fn request<'a>(selection: &'a ProbeSelection, rounds: u32) -> Request<'a> {
    Request {
        selection,
        rounds,
        skip: &[],
        shard: None,
        resume: None,
    }
}

/// One round of `selection`, going on where `resume` says.
fn run_resumed(
    guest: &Guest,
    kernel: &FakeKernel,
    selection: &ProbeSelection,
    resume: &ProbeResume,
) -> Outcome {
    let request = Request {
        resume: Some(resume),
        ..request(selection, 1)
    };
    run(guest, kernel, &request)
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

/// The `ProbeModule` event of `wanted`.
fn reported<'a>(events: &'a [Event], wanted: &str) -> &'a Event {
    events
        .iter()
        .find(|e| matches!(e, Event::ProbeModule { module, .. } if module == wanted))
        .unwrap_or_else(|| panic!("no ProbeModule for {wanted}"))
}

#[test]
fn dependencies_load_farthest_first_and_go_after_the_module_newest_first() {
    let guest = Guest::new(
        &[
            ("pps_core", &[]),
            ("ptp", &["pps_core"]),
            ("e1000e", &["ptp", "pps_core"]),
        ],
        "",
    );
    let kernel = FakeKernel::new(&guest);
    let selection = ProbeSelection::Named(strings(&["e1000e"]));
    run(&guest, &kernel, &request(&selection, 1));
    assert_eq!(
        kernel.calls(),
        [
            "load pps_core",
            "load ptp",
            "load e1000e",
            "unload e1000e",
            "unload ptp",
            "unload pps_core"
        ]
    );
}

#[test]
fn a_module_that_binds_a_device_is_kept_to_the_rounds_end_and_unloaded_then() {
    let guest = Guest::new(
        &[("nic_a", &["pps_core"]), ("pps_core", &[]), ("plain", &[])],
        "",
    );
    let kernel = FakeKernel::new(&guest);
    let selection = ProbeSelection::Named(strings(&["nic_a", "plain"]));
    let outcome = run(&guest, &kernel, &request(&selection, 1));
    assert_eq!(
        kernel.calls(),
        [
            "load pps_core",
            "load nic_a",
            "load plain",
            "unload plain",
            "unload nic_a",
            "unload pps_core"
        ]
    );
    let Event::ProbeModule {
        bound,
        kept,
        unreturned_bytes,
        error,
        ..
    } = reported(&outcome.events, "nic_a")
    else {
        unreachable!()
    };
    assert_eq!(bound, &strings(&[PCI_DEVICE]));
    assert!(*kept && error.is_none());
    assert_eq!(*unreturned_bytes, None, "a kept module is not measured");
}

#[test]
fn each_module_is_announced_before_its_load_and_reported_after_with_error_and_unreturned_bytes() {
    let guest = Guest::new(
        &[("absent_hw", &[]), ("leaky_drv", &[]), ("plain", &[])],
        "",
    );
    let kernel = FakeKernel::new(&guest);
    let outcome = run(&guest, &kernel, &request(&ProbeSelection::All, 1));
    assert_eq!(
        kernel.entries(),
        [
            "start absent_hw",
            "load absent_hw",
            "done absent_hw",
            "start leaky_drv",
            "load leaky_drv",
            "unload leaky_drv",
            "done leaky_drv",
            "start plain",
            "load plain",
            "unload plain",
            "done plain"
        ]
    );
    assert_eq!(outcome.events[0], Event::ProbeRound { round: 0, total: 3 });
    assert!(
        matches!(outcome.events[1], Event::ProbeMemory { done: 0, .. }),
        "the round's memory before its first module"
    );
    assert_eq!(
        outcome.events[2],
        Event::ProbeStart {
            round: 0,
            index: 0,
            module: "absent_hw".into()
        }
    );
    let summary = |name: &str| match reported(&outcome.events, name) {
        Event::ProbeModule {
            index,
            error,
            unreturned_bytes,
            kept,
            ..
        } => (*index, error.clone(), *unreturned_bytes, *kept),
        _ => unreachable!(),
    };
    let (index, error, unreturned, kept) = summary("absent_hw");
    assert_eq!(index, 0);
    let error = error.unwrap();
    assert!(error.starts_with("finit_module: No such device"), "{error}");
    assert_eq!(
        (unreturned, kept),
        (Some(0), false),
        "nothing loaded, nothing kept"
    );
    assert_eq!(summary("leaky_drv"), (1, None, Some(4096), false));
    assert_eq!(summary("plain"), (2, None, Some(0), false));
}

#[test]
fn resume_reloads_what_was_kept_then_goes_on_at_its_index() {
    let guest = Guest::new(
        &[
            ("nic_a", &["pps_core"]),
            ("pps_core", &[]),
            ("crasher", &[]),
            ("plain", &[]),
        ],
        "",
    );
    let kernel = FakeKernel::new(&guest);
    let selection = ProbeSelection::Named(strings(&["nic_a", "crasher", "plain"]));
    let resume = ProbeResume {
        round: 0,
        index: 2,
        kept: strings(&["nic_a"]),
    };
    let outcome = run_resumed(&guest, &kernel, &selection, &resume);
    assert_eq!(
        kernel.calls(),
        [
            "load pps_core",
            "load nic_a",
            "load plain",
            "unload plain",
            "unload nic_a",
            "unload pps_core"
        ]
    );
    let started: Vec<(usize, &str)> = outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ProbeStart { index, module, .. } => Some((*index, module.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(started, [(2, "plain")]);
    let cycles: Vec<u32> = outcome.samples.iter().map(|(cycle, _)| *cycle).collect();
    assert_eq!(cycles, [1], "the crashed VM took the start sample");
}

#[test]
fn two_rounds_sample_memory_at_cycles_0_1_and_2_after_dropping_caches() {
    let guest = Guest::new(&[("plain", &[]), ("absent_hw", &[])], "");
    let kernel = FakeKernel::new(&guest);
    let outcome = run(&guest, &kernel, &request(&ProbeSelection::All, 2));
    assert_eq!(
        outcome.samples,
        [(0, "3\n".into()), (1, "3\n".into()), (2, "3\n".into())]
    );
    let rounds: Vec<&Event> = outcome
        .events
        .iter()
        .filter(|e| matches!(e, Event::ProbeRound { .. }))
        .collect();
    assert_eq!(
        rounds,
        [
            &Event::ProbeRound { round: 0, total: 2 },
            &Event::ProbeRound { round: 1, total: 2 }
        ]
    );
    assert_eq!(
        kernel.calls().iter().filter(|c| *c == "load plain").count(),
        2
    );
}

#[test]
fn a_modalias_round_grows_when_a_kept_driver_brings_new_devices() {
    let aliases = "\
alias pci:v00008086d0000100Esv*sd*bc*sc*i* nic_e1000
alias pci:v00001B36d0000000Dsv*sd*bc*sc*i* xhci_pci
alias usb:v0627p0001d*dc*dsc*dp*ic*isc*ip*in* usbhid
alias pci:v0000ABCDd*sv*sd*bc*sc*i* absent_other
";
    let guest = Guest::new(
        &[
            ("nic_e1000", &[]),
            ("xhci_pci", &[]),
            ("usbhid", &[]),
            ("absent_other", &[]),
        ],
        aliases,
    );
    guest.add_device(
        "pci",
        "0000:00:02.0",
        "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00",
    );
    guest.add_device(
        "pci",
        "0000:00:04.0",
        "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30",
    );
    let kernel = FakeKernel::new(&guest);
    let outcome = run(&guest, &kernel, &request(&ProbeSelection::Modalias, 1));
    let rounds: Vec<&Event> = outcome
        .events
        .iter()
        .filter(|e| matches!(e, Event::ProbeRound { .. }))
        .collect();
    assert_eq!(
        rounds,
        [
            &Event::ProbeRound { round: 0, total: 2 },
            &Event::ProbeRound { round: 0, total: 3 }
        ]
    );
    assert!(matches!(
        reported(&outcome.events, "usbhid"),
        Event::ProbeModule {
            index: 2,
            error: None,
            ..
        }
    ));
    assert!(!kernel.calls().contains(&"load absent_other".to_string()));
    assert_eq!(
        kernel.calls().last().map(String::as_str),
        Some("unload nic_e1000"),
        "kept drivers go last, in reverse"
    );
    assert!(!guest.sysfs().join("bus/usb/devices/1-1").exists());
}

#[test]
fn a_module_that_will_not_unload_is_retried_then_left_resident_and_not_loaded_again() {
    let guest = Guest::new(
        &[
            ("user_a", &["busy_core"]),
            ("user_b", &["busy_core"]),
            ("busy_core", &[]),
        ],
        "",
    );
    let kernel = FakeKernel::new(&guest);
    let outcome = run(&guest, &kernel, &request(&ProbeSelection::All, 2));
    let calls = kernel.calls();
    assert_eq!(
        &calls[..8],
        [
            "load busy_core",
            "load user_a",
            "unload user_a",
            "load user_b",
            "unload user_b",
            "unload busy_core",
            "unload busy_core",
            "unload busy_core"
        ],
        "the shared dependency is held for its next user, and EBUSY is retried"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "load busy_core").count(),
        1,
        "never loaded again, in this round or the next: {calls:?}"
    );
    let Event::ProbeModule { unload_error, .. } = reported(&outcome.events, "busy_core") else {
        unreachable!()
    };
    let unload_error = unload_error.as_deref().unwrap_or_default();
    assert!(
        unload_error.starts_with("delete_module(busy_core): "),
        "{unload_error}"
    );
    assert!(
        calls.contains(&"load user_b".to_string()),
        "its users still load"
    );
    let Event::ProbeModule { error, .. } = reported(&outcome.events, "busy_core") else {
        unreachable!()
    };
    assert_eq!(
        error.as_deref(),
        Some("busy_core is still loaded: it would not unload earlier")
    );
}

#[test]
fn a_kept_driver_that_will_not_unload_at_the_rounds_end_is_not_loaded_next_round() {
    let guest = Guest::new(&[("busy_nic", &[]), ("plain", &[])], "");
    let kernel = FakeKernel::new(&guest);
    run(&guest, &kernel, &request(&ProbeSelection::All, 2));
    let calls = kernel.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "load busy_nic").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(calls.iter().filter(|c| *c == "load plain").count(), 2);
}

#[test]
fn a_dependency_that_consecutive_modules_share_is_loaded_once_and_measured_apart() {
    let guest = Guest::new(
        &[
            ("cfg80211", &[]),
            ("leaky_wifi", &["cfg80211"]),
            ("other_wifi", &["cfg80211"]),
            ("plain", &[]),
        ],
        "",
    );
    let kernel = FakeKernel::new(&guest);
    let selection = ProbeSelection::Named(strings(&["*wifi", "plain"]));
    let outcome = run(&guest, &kernel, &request(&selection, 1));
    assert_eq!(
        kernel.calls(),
        [
            "load cfg80211",
            "load leaky_wifi",
            "unload leaky_wifi",
            "load other_wifi",
            "unload other_wifi",
            "unload cfg80211",
            "load plain",
            "unload plain"
        ]
    );
    let unreturned = |name: &str| match reported(&outcome.events, name) {
        Event::ProbeModule {
            unreturned_bytes, ..
        } => *unreturned_bytes,
        _ => unreachable!(),
    };
    assert_eq!(
        unreturned("leaky_wifi"),
        Some(4096),
        "its own leak, not its dependency's load"
    );
    assert_eq!(unreturned("other_wifi"), Some(0));
}

mod memory;
