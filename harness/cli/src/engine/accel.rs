//! The accelerator: chosen by booting the run's own kernel to the agent, remembered per host for
//! a day, and given up at run time when a KVM guest does not come up.
//!
//! A `/dev/kvm` that exists proves nothing: on some hosts QEMU aborts setting up the vCPU, on
//! others a tiny firmware runs but a real kernel stalls in early boot. Only a real boot tells,
//! so `auto` boots the agent-only initramfs on the first scenario's machine under KVM and under
//! TCG at once, and takes KVM only when its agent was up first.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use modharness_images::kernel::Kernel;
use modharness_protocol::{Event as AgentEvent, Plan};
use modharness_vm::{Accel, VmEvent};
use serde::{Deserialize, Serialize};

use super::boot::{self, WorkDir};
use super::plan::{self, Shape};

/// Which accelerator to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelChoice {
    /// KVM when a real boot shows it runs the kernel faster than TCG, else TCG; KVM guests that
    /// do not come up fall back to TCG at run time.
    Auto,
    /// KVM, whatever happens.
    Kvm,
    /// TCG, multi-threaded.
    Tcg,
}

/// How long a remembered verdict holds: a host's KVM does not change within a day, its kernel
/// and QEMU are part of the key.
const VERDICT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a probe boot may take (a debug kernel reaches init in ~25 s under TCG).
const PROBE_LIMIT: Duration = Duration::from_secs(90);
/// A KVM guest that has not started its agent after this (or five times the probe's figure,
/// if longer) is given up for TCG.
const KVM_BOOT_MIN: Duration = Duration::from_secs(6);

/// The accelerator `name` as report.json and the terminal spell it.
pub(crate) fn name(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    }
}

/// What a probe needs to boot the run's kernel.
pub(crate) struct Probe<'a> {
    pub qemu: &'a Path,
    pub kernel: &'a Kernel,
    /// The first scenario's machine, with nothing added.
    pub shape: Shape,
    pub agent: &'a Path,
    pub busybox: &'a Path,
    pub cache_root: &'a Path,
    /// The KVM device node; its absence settles the question without a boot.
    pub kvm_device: &'a Path,
    pub qemu_version: &'a str,
}

/// The accelerator in use for one kernel's scenarios, shared by the jobs running them.
pub(crate) struct Selector {
    state: Mutex<State>,
    forced: bool,
    /// Where the verdict is remembered (absent when forced).
    verdict_file: Option<PathBuf>,
    identity: String,
}

struct State {
    accel: Accel,
    why: String,
    kvm_ready_s: Option<f64>,
}

/// A remembered verdict.
#[derive(Serialize, Deserialize)]
struct Verdict {
    accel: String,
    why: String,
    #[serde(default)]
    kvm_ready_s: Option<f64>,
    /// Seconds since the epoch.
    decided_at: u64,
    /// What the verdict is about, spelled out (the file name is a hash of it).
    identity: String,
}

impl Selector {
    /// Decide the accelerator for `probe.kernel` as `choice` says, probing or using a fresh
    /// remembered verdict for `auto`.
    pub async fn decide(choice: AccelChoice, probe: &Probe<'_>) -> Selector {
        let identity = identity(probe);
        let verdict_file = probe
            .cache_root
            .join("accel")
            .join(format!("{:016x}.json", fnv1a(identity.as_bytes())));
        let fixed = |accel: Accel, why: &str| Selector {
            state: Mutex::new(State {
                accel,
                why: why.into(),
                kvm_ready_s: None,
            }),
            forced: choice != AccelChoice::Auto,
            verdict_file: None,
            identity: identity.clone(),
        };
        match choice {
            AccelChoice::Kvm => return fixed(Accel::Kvm, "forced with --accel kvm"),
            AccelChoice::Tcg => return fixed(Accel::Tcg, "forced with --accel tcg"),
            AccelChoice::Auto if !probe.kvm_device.exists() => {
                return fixed(Accel::Tcg, &format!("no {}", probe.kvm_device.display()))
            }
            AccelChoice::Auto => {}
        }
        let state = match remembered(&verdict_file, &identity, SystemTime::now()) {
            Some(state) => state,
            None => {
                let state = race(probe).await;
                remember(&verdict_file, &identity, &state);
                state
            }
        };
        Selector {
            state: Mutex::new(state),
            forced: false,
            verdict_file: Some(verdict_file),
            identity,
        }
    }

    /// The accelerator to boot the next guest with.
    pub fn current(&self) -> Accel {
        self.lock().accel
    }

    /// Why the current accelerator was chosen, e.g. `kvm: QEMU exited: …` for TCG.
    pub fn why(&self) -> String {
        self.lock().why.clone()
    }

    /// How long a KVM guest may take to start its agent before it is given up.
    pub fn kvm_boot_limit(&self) -> Duration {
        let probed = self
            .lock()
            .kvm_ready_s
            .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s * 5.0));
        probed.max(KVM_BOOT_MIN)
    }

    /// A KVM guest did not come up (`why`): switch this run to TCG and remember that, unless KVM
    /// was forced. Says whether the scenario should be booted again under TCG.
    pub fn fall_back(&self, why: &str) -> bool {
        if self.forced {
            return false;
        }
        let mut state = self.lock();
        if state.accel == Accel::Kvm {
            *state = State {
                accel: Accel::Tcg,
                why: format!("kvm: {why} (at run time)"),
                kvm_ready_s: None,
            };
            if let Some(file) = &self.verdict_file {
                remember(file, &self.identity, &state);
            }
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a verdict depends on: the host's kernel, QEMU, the guest kernel and its machine.
fn identity(probe: &Probe<'_>) -> String {
    let host = |file: &str| {
        std::fs::read_to_string(Path::new("/proc/sys/kernel").join(file))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    format!(
        "host {} {}; qemu {} {}; kernel {}; machine {:?}, {} cpus, {} MiB",
        host("osrelease"),
        host("version"),
        probe.qemu.display(),
        probe.qemu_version,
        probe.kernel.release,
        probe.shape.machine,
        probe.shape.cpus,
        probe.shape.memory_mib
    )
}

/// 64-bit FNV-1a: a stable file name for a verdict's identity.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A verdict remembered for `identity` and younger than [`VERDICT_TTL`] at `now`.
fn remembered(file: &Path, identity: &str, now: SystemTime) -> Option<State> {
    let verdict: Verdict = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    let decided = UNIX_EPOCH + Duration::from_secs(verdict.decided_at);
    let age = now.duration_since(decided).ok()?;
    if verdict.identity != identity || age > VERDICT_TTL {
        return None;
    }
    let accel = match verdict.accel.as_str() {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => return None,
    };
    Some(State {
        accel,
        why: format!("{} (remembered from {} s ago)", verdict.why, age.as_secs()),
        kvm_ready_s: verdict.kvm_ready_s,
    })
}

/// Remember `state` for a day; a cache that cannot be written only costs the next run a probe.
fn remember(file: &Path, identity: &str, state: &State) {
    let verdict = Verdict {
        accel: name(state.accel).into(),
        why: state.why.clone(),
        kvm_ready_s: state.kvm_ready_s,
        decided_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        identity: identity.into(),
    };
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let json = serde_json::to_vec_pretty(&verdict).expect("verdicts serialize");
    let _ = modharness_report::write_atomic(file, &json);
}

/// Boot under KVM and TCG at once; KVM wins only when its agent is up before TCG's.
async fn race(probe: &Probe<'_>) -> State {
    let kvm = boot_to_agent(probe, Accel::Kvm);
    let tcg = boot_to_agent(probe, Accel::Tcg);
    tokio::pin!(kvm, tcg);
    let mut tcg_result: Option<Result<f64, String>> = None;
    loop {
        tokio::select! {
            kvm_result = &mut kvm => {
                return match kvm_result {
                    Ok(s) => State { accel: Accel::Kvm, why: format!("kvm: agent up in {s:.1} s"), kvm_ready_s: Some(s) },
                    Err(e) => State { accel: Accel::Tcg, why: format!("kvm: {e}"), kvm_ready_s: None },
                };
            }
            result = &mut tcg, if tcg_result.is_none() => {
                if let Ok(s) = result {
                    return State {
                        accel: Accel::Tcg,
                        why: format!("kvm: no agent within {s:.1} s, tcg's time"),
                        kvm_ready_s: None,
                    };
                }
                // TCG could not boot either: let KVM finish, the scenarios will tell the rest.
                tcg_result = Some(result);
            }
        }
    }
}

/// Boot the agent-only initramfs under `accel`; the seconds until the agent was up, or why not.
async fn boot_to_agent(probe: &Probe<'_>, accel: Accel) -> Result<f64, String> {
    let work = WorkDir::new().map_err(|e| e.message)?;
    let initrd = plan::write_initrd(&work, &Plan::default(), &[], probe.agent, probe.busybox)
        .map_err(|e| e.message)?;
    let config = probe
        .shape
        .config(probe.qemu, accel, probe.kernel, &work, initrd);
    let clock = Instant::now();
    let mut started = boot::start(&config)
        .await
        .map_err(|e| summary(&e.message))?;
    let events = &mut started.machine.events;
    let wait = async {
        while let Some(event) = events.recv().await {
            match event {
                VmEvent::Control(line) => {
                    if let Some(AgentEvent::Ready { .. }) = AgentEvent::parse_line(&line) {
                        return Ok(clock.elapsed().as_secs_f64());
                    }
                }
                VmEvent::Exited { stderr, .. } => {
                    return Err(summary(&format!(
                        "QEMU exited before the agent was up\n{stderr}"
                    )))
                }
                _ => {}
            }
        }
        Err("QEMU went away".to_string())
    };
    tokio::time::timeout(PROBE_LIMIT, wait)
        .await
        .unwrap_or_else(|_| Err(format!("no agent within {} s", PROBE_LIMIT.as_secs())))
    // Dropping the machine kills QEMU's process group.
}

/// The first two non-empty lines of an error, on one line: what happened and QEMU's first word.
fn summary(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(accel: Accel) -> State {
        State {
            accel,
            why: "kvm: agent up in 0.4 s".into(),
            kvm_ready_s: Some(0.4),
        }
    }

    #[test]
    fn a_verdict_is_remembered_for_a_day_and_for_its_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("accel/v.json");
        remember(&file, "host a", &state(Accel::Kvm));
        let now = SystemTime::now();
        let found = remembered(&file, "host a", now).expect("fresh verdict");
        assert_eq!(found.accel, Accel::Kvm);
        assert!(found.why.contains("remembered"), "{}", found.why);
        assert!(remembered(&file, "host b", now).is_none());
        let tomorrow = now + VERDICT_TTL + Duration::from_secs(60);
        assert!(remembered(&file, "host a", tomorrow).is_none());
    }

    #[test]
    fn a_damaged_verdict_file_means_probing_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.json");
        std::fs::write(&file, b"{\"accel\": \"kvm\"").unwrap();
        assert!(remembered(&file, "x", SystemTime::now()).is_none());
    }

    #[test]
    fn the_kvm_boot_limit_grows_with_a_slow_probe_but_never_below_its_floor() {
        let selector = |kvm_ready_s| Selector {
            state: Mutex::new(State {
                accel: Accel::Kvm,
                why: String::new(),
                kvm_ready_s,
            }),
            forced: false,
            verdict_file: None,
            identity: String::new(),
        };
        assert_eq!(selector(Some(0.3)).kvm_boot_limit(), KVM_BOOT_MIN);
        assert_eq!(selector(None).kvm_boot_limit(), KVM_BOOT_MIN);
        assert_eq!(
            selector(Some(2.0)).kvm_boot_limit(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn falling_back_switches_to_tcg_unless_kvm_was_forced() {
        let mut selector = Selector {
            state: Mutex::new(state(Accel::Kvm)),
            forced: true,
            verdict_file: None,
            identity: String::new(),
        };
        assert!(!selector.fall_back("no agent within 6 s"));
        assert_eq!(selector.current(), Accel::Kvm);
        selector.forced = false;
        assert!(selector.fall_back("no agent within 6 s"));
        assert_eq!(selector.current(), Accel::Tcg);
        assert!(selector.why().contains("no agent within 6 s"));
        assert!(
            selector.fall_back("again"),
            "a later job re-runs under TCG too"
        );
    }

    #[test]
    fn a_qemu_abort_is_summed_up_with_its_first_words() {
        let message = "QEMU did not start the guest: QEMU exited (signal: 6 (SIGABRT))\n\
                       qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69\n\
                       qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: assertion";
        assert_eq!(
            summary(message),
            "QEMU did not start the guest: QEMU exited (signal: 6 (SIGABRT)): \
             qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69"
        );
    }
}
