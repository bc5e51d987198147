//! What the agent does as PID 1 of the initramfs: set up the filesystems, run the plan in a child
//! so that a kernel-killed plan cannot take init down, reap, and power off. PID 1 never exits:
//! that would panic the kernel.

use std::ffi::CString;
use std::time::Duration;

use modharness_protocol::Event;

use crate::channel::Channel;
use crate::{exit_code, Options};

/// How long init lingers after the plan so the host can read the last lines and stop QEMU
/// itself.
const LINGER_BEFORE_POWER_OFF: Duration = Duration::from_secs(2);

/// Become the guest's init: mount, run the plan in a child, report its death if it could not,
/// then power off.
pub fn boot(options: &Options) -> ! {
    // /dev first: missing standard fds are filled from it, so that the other mounts' errors
    // reach the console.
    mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, true);
    ensure_standard_fds();
    mount_proc_sys_tmp_debugfs();
    std::env::set_var("PATH", "/bin:/sbin");

    // SAFETY: init is single-threaded here, so the child may run ordinary Rust code.
    match unsafe { libc::fork() } {
        0 => std::process::exit(crate::run_agent(options)),
        -1 => {
            eprintln!(
                "modharness-agent: fork failed ({}); running the plan in init",
                std::io::Error::last_os_error()
            );
            crate::run_agent(options);
        }
        child => {
            if !plan_child_reported_done(wait_reaping_orphans(child)) {
                send_done_for_dead_child(options);
            }
        }
    }
    power_off()
}

fn mount_proc_sys_tmp_debugfs() {
    const NO_EXTRAS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount("proc", "/proc", "proc", NO_EXTRAS, true);
    mount("sysfs", "/sys", "sysfs", NO_EXTRAS, true);
    mount(
        "tmpfs",
        "/tmp",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        true,
    );
    // Kernels without debugfs are fine: only scenarios that poke at it need it.
    mount("debugfs", "/sys/kernel/debug", "debugfs", NO_EXTRAS, false);
}

fn mount(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, required: bool) {
    // The initramfs writer may not have created the mount points.
    let _ = std::fs::create_dir_all(target);
    let (Ok(c_source), Ok(c_target), Ok(c_fstype)) = (
        CString::new(source),
        CString::new(target),
        CString::new(fstype),
    ) else {
        return;
    };
    // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data string.
    let rc = unsafe {
        libc::mount(
            c_source.as_ptr(),
            c_target.as_ptr(),
            c_fstype.as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 && required {
        eprintln!(
            "modharness-agent: mount {fstype} on {target}: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The kernel gives init /dev/console as fds 0–2 only when the initramfs has that node. Without
/// them the first files the agent opens would become its stdout and stderr, so fill the gaps
/// from devtmpfs before opening anything.
fn ensure_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only asks whether the descriptor is open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        // SAFETY: open, dup2 and close on descriptors this function owns, with literal paths.
        unsafe {
            let mut opened = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
            if opened < 0 {
                opened = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
            if opened >= 0 && opened != fd {
                libc::dup2(opened, fd);
                libc::close(opened);
            }
        }
    }
}

/// Reap every child that dies until the plan child does; returns its wait status, or `None`
/// when it cannot be waited for.
fn wait_reaping_orphans(plan_child: libc::pid_t) -> Option<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid place for waitpid to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == plan_child {
            return Some(status);
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}

/// Whether the plan child ended by reporting `Done` itself.
fn plan_child_reported_done(status: Option<libc::c_int>) -> bool {
    status.is_some_and(|status| {
        libc::WIFEXITED(status)
            && matches!(
                libc::WEXITSTATUS(status),
                exit_code::PASSED | exit_code::FAILED
            )
    })
}

fn send_done_for_dead_child(options: &Options) {
    eprintln!("modharness-agent: the plan died before reporting Done");
    let sent = Channel::open(options.control.as_deref())
        .and_then(|channel| channel.send(&Event::Done { ok: false }));
    if let Err(err) = sent {
        eprintln!("modharness-agent: cannot send Done: {err}");
    }
}

fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers.
    unsafe { libc::sync() };
    std::thread::sleep(LINGER_BEFORE_POWER_OFF);
    // SAFETY: as above.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    eprintln!(
        "modharness-agent: power off failed: {}",
        std::io::Error::last_os_error()
    );
    loop {
        // SAFETY: pause takes no arguments; init waits here for ever rather than exit.
        unsafe { libc::pause() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    fn wait_status_of(script: &str) -> Option<libc::c_int> {
        let status = Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .status()
            .unwrap();
        Some(status.into_raw())
    }

    #[test]
    fn a_child_that_exited_after_done_needs_no_stand_in() {
        for code in [exit_code::PASSED, exit_code::FAILED] {
            assert!(plan_child_reported_done(wait_status_of(&format!(
                "exit {code}"
            ))));
        }
    }

    #[test]
    fn a_child_killed_or_failing_to_send_done_needs_a_stand_in() {
        assert!(!plan_child_reported_done(wait_status_of(&format!(
            "exit {}",
            exit_code::NO_DONE
        ))));
        assert!(!plan_child_reported_done(wait_status_of("exit 101")));
        assert!(!plan_child_reported_done(wait_status_of("kill -9 $$")));
        assert!(!plan_child_reported_done(None));
    }
}
