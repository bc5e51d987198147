//! The kernel-facing side of the agent, behind [`Kernel`] so that plans can run against a fake
//! on the host: tests must never load or unload a real module outside a VM.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// What the agent asks of the kernel.
pub trait Kernel: Sync {
    /// Load the module file at `path` with a `k=v k2=v2` parameter string.
    fn load(&self, path: &Path, params: &str) -> io::Result<()>;
    /// Unload the module called `name` (underscores, as the kernel spells it), without waiting.
    fn unload(&self, name: &str) -> io::Result<()>;
    /// The text of `/proc/meminfo`.
    fn meminfo(&self) -> io::Result<String>;
    /// The text of `/proc/slabinfo` (root only).
    fn slabinfo(&self) -> io::Result<String>;
    /// The text of `/proc/vmallocinfo`.
    fn vmallocinfo(&self) -> io::Result<String>;
    /// The text of `/proc/modules`.
    fn modules(&self) -> io::Result<String>;
    /// Send `command` (`scan`, `clear`) to kmemleak.
    fn kmemleak(&self, command: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no kmemleak for {command}"),
        ))
    }
    /// Have kmemleak print each unreferenced object on the console as a scan finds it.
    fn kmemleak_verbose(&self, on: bool) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no kmemleak verbose={on}"),
        ))
    }
    /// Shrink the slab caches named (every one for `None`), which also takes their freed
    /// objects out of KASAN's quarantine.
    fn shrink_slab_caches(&self, only: Option<&[String]>) -> io::Result<()> {
        let _ = only;
        Ok(())
    }
    /// The start address of each section of the loaded module `name`.
    fn module_sections(&self, name: &str) -> io::Result<BTreeMap<String, u64>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no sections for {name}"),
        ))
    }
}

const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";
const KMEMLEAK_VERBOSE: &str = "/sys/module/kmemleak/parameters/verbose";

/// The running Linux kernel, through `finit_module`, `delete_module` and `/proc`.
pub struct LinuxKernel;

impl Kernel for LinuxKernel {
    fn load(&self, path: &Path, params: &str) -> io::Result<()> {
        let file = File::open(path).map_err(|err| {
            io::Error::new(err.kind(), format!("cannot open the module file: {err}"))
        })?;
        let params = c_string(params)?;
        // SAFETY: the fd and the NUL-terminated string outlive the call; flags 0 asks for nothing
        // special.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_finit_module,
                file.as_raw_fd(),
                params.as_ptr(),
                0 as libc::c_int,
            )
        };
        check(rc)
    }

    fn unload(&self, name: &str) -> io::Result<()> {
        let name = c_string(name)?;
        // SAFETY: the NUL-terminated name outlives the call. O_NONBLOCK makes a busy module fail
        // with EAGAIN instead of blocking the agent until its users go away.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_delete_module,
                name.as_ptr(),
                libc::O_NONBLOCK as libc::c_uint,
            )
        };
        check(rc)
    }

    fn meminfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/meminfo")
    }

    fn slabinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/slabinfo")
    }

    fn vmallocinfo(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/vmallocinfo")
    }

    fn modules(&self) -> io::Result<String> {
        std::fs::read_to_string("/proc/modules")
    }

    fn kmemleak(&self, command: &str) -> io::Result<()> {
        std::fs::write(KMEMLEAK, command)
    }

    fn kmemleak_verbose(&self, on: bool) -> io::Result<()> {
        std::fs::write(KMEMLEAK_VERBOSE, if on { "1" } else { "0" })
    }

    fn shrink_slab_caches(&self, only: Option<&[String]>) -> io::Result<()> {
        let dir = Path::new("/sys/kernel/slab");
        let names: Vec<String> = match only {
            Some(names) => names.to_vec(),
            None => std::fs::read_dir(dir)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
        };
        for name in names {
            // A cache may be gone already, and a name may not be a file name.
            if !name.contains('/') {
                let _ = std::fs::write(dir.join(name).join("shrink"), "1");
            }
        }
        Ok(())
    }

    fn module_sections(&self, name: &str) -> io::Result<BTreeMap<String, u64>> {
        let mut sections = BTreeMap::new();
        for entry in std::fs::read_dir(format!("/sys/module/{name}/sections"))? {
            let entry = entry?;
            let text = std::fs::read_to_string(entry.path())?;
            if let Some(address) = text
                .trim()
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                sections.insert(entry.file_name().to_string_lossy().into_owned(), address);
            }
        }
        Ok(sections)
    }
}

fn c_string(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text:?} contains a NUL byte"),
        )
    })
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The running kernel's release (`uname -r`), or `unknown`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data that uname fills in.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    // SAFETY: the kernel NUL-terminates every utsname field.
    let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

/// The name the kernel knows a module by: file names may use `-`, the kernel always uses `_`.
pub fn kernel_module_name(module: &str) -> String {
    module.replace('-', "_")
}

/// The parameter string `finit_module` takes: `k=v` pairs separated by spaces. A value holding
/// whitespace is double-quoted, the one quoting the kernel's parameter parser understands.
pub fn module_params(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(key, value)| {
            if value.chars().any(char::is_whitespace) {
                format!("{key}=\"{value}\"")
            } else {
                format!("{key}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Seconds since boot, the clock the kernel's console timestamps are close to.
pub fn uptime_s() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_join_as_key_value_pairs_with_spaces_quoted() {
        let params = BTreeMap::from([
            ("delay_ms".to_string(), "5".to_string()),
            ("name".to_string(), "a b".to_string()),
        ]);
        assert_eq!(module_params(&params), "delay_ms=5 name=\"a b\"");
        assert_eq!(module_params(&BTreeMap::new()), "");
    }

    #[test]
    fn dashes_in_module_names_become_underscores() {
        assert_eq!(kernel_module_name("race-timer-buggy"), "race_timer_buggy");
    }

    #[test]
    fn uptime_moves_forward() {
        let before = uptime_s();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(uptime_s() >= before + 0.004);
    }
}
