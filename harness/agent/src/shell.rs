//! `shell` steps: `/bin/sh -c COMMAND` with stdout and stderr captured together.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How much output a step keeps.
pub const OUTPUT_LIMIT: usize = 4096;

/// How long to wait for the output pipe to close once the shell has exited. A command that
/// leaves a background process holding the pipe open must not stall the plan.
const PIPE_GRACE: Duration = Duration::from_millis(200);

/// What a shell step produced.
pub struct ShellRun {
    /// How the shell ended, or why it could not start.
    pub status: io::Result<ExitStatus>,
    /// Stdout and stderr interleaved as written, cut at [`OUTPUT_LIMIT`] bytes.
    pub output: String,
}

/// Run `command` with `/bin/sh -c` and wait for it.
pub fn run(command: &str) -> ShellRun {
    match spawn_and_wait(command) {
        Ok((status, output)) => ShellRun {
            status: Ok(status),
            output,
        },
        Err(err) => ShellRun {
            status: Err(err),
            output: String::new(),
        },
    }
}

fn spawn_and_wait(command: &str) -> io::Result<(ExitStatus, String)> {
    let (reader, writer) = pipe()?;
    // One pipe for both streams keeps their relative order.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer.try_clone()?))
        .stderr(Stdio::from(writer))
        .spawn()?;
    // The Command kept no copy of the write end: the reader sees EOF when the shell's side closes.
    let collected = Arc::new(Mutex::new(Vec::new()));
    let (finished_tx, finished_rx) = mpsc::channel();
    {
        let collected = Arc::clone(&collected);
        std::thread::spawn(move || {
            drain(File::from(reader), &collected);
            let _ = finished_tx.send(());
        });
    }
    let status = child.wait()?;
    let _ = finished_rx.recv_timeout(PIPE_GRACE);
    let bytes = collected.lock().unwrap_or_else(|p| p.into_inner());
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Read until EOF, keeping the first [`OUTPUT_LIMIT`] bytes and discarding the rest so that the
/// command never blocks on a full pipe.
fn drain(mut pipe: File, collected: &Mutex<Vec<u8>>) {
    let mut buffer = [0u8; 4096];
    loop {
        match pipe.read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => {
                let mut kept = collected.lock().unwrap_or_else(|p| p.into_inner());
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..read.min(room)]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn stdout_and_stderr_are_captured_in_order() {
        let run = run("echo out; echo err >&2; echo again");
        assert!(run.status.unwrap().success());
        assert_eq!(run.output, "out\nerr\nagain\n");
    }

    #[test]
    fn a_non_zero_exit_is_reported() {
        let run = run("exit 3");
        assert_eq!(run.status.unwrap().code(), Some(3));
    }

    #[test]
    fn output_is_cut_at_the_limit_and_the_command_still_finishes() {
        let run = run("i=0; while [ $i -lt 2000 ]; do echo 0123456789abcdef; i=$((i+1)); done");
        assert!(run.status.unwrap().success());
        assert_eq!(run.output.len(), OUTPUT_LIMIT);
    }

    #[test]
    fn a_background_process_holding_the_pipe_does_not_stall_the_step() {
        let started = Instant::now();
        let run = run("echo before; sleep 3 &");
        assert!(run.status.unwrap().success());
        assert_eq!(run.output, "before\n");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
