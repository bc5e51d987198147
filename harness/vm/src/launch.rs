//! Starting QEMU, talking to it, and making sure it ends.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use qapi::futures::{QapiService, QmpStreamTokio};
use tokio::io::{AsyncReadExt, WriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::argv::{argv, VmConfig};

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU could not be run at all.
    #[error("cannot run {qemu}: {source} (is qemu-system-x86 installed?)")]
    Spawn {
        qemu: String,
        #[source]
        source: io::Error,
    },
    /// QEMU exited or stalled before the guest could start; `stderr` is what QEMU said.
    #[error("QEMU did not start the guest: {why}\n{stderr}")]
    Start { why: String, stderr: String },
    /// A socket could not be set up.
    #[error("{path}: {source}")]
    Socket {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Something that happened to a running VM.
#[derive(Debug, PartialEq)]
pub enum VmEvent {
    /// Bytes the guest wrote to its console.
    Console(Vec<u8>),
    /// A line the agent wrote to the control port (without its newline).
    Control(String),
    /// QMP `GUEST_PANICKED` (from the pvpanic device).
    GuestPanicked,
    /// QMP `SHUTDOWN`, with QEMU's reason (e.g. `guest-reset` after a panic with `panic=-1`).
    Shutdown(String),
    /// The QEMU process ended; `None` when killed by a signal. `stderr` is what it printed.
    Exited { code: Option<i32>, stderr: String },
}

/// Process groups of running VMs, for [`kill_all`].
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// SIGKILL every running VM's process group at once (for a second Ctrl-C).
pub fn kill_all() {
    for pgid in LIVE_GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: plain syscall on a process group this process started.
        unsafe { libc::killpg(*pgid, libc::SIGKILL) };
    }
}

/// A running QEMU. Dropping it kills the whole process group, so no path, not even a panic,
/// leaves a QEMU behind.
pub struct Vm {
    child: Child,
    pgid: i32,
    qmp: QapiService<QmpStreamTokio<WriteHalf<UnixStream>>>,
    /// Everything the VM does, in order of arrival.
    pub events: mpsc::Receiver<VmEvent>,
}

impl Drop for Vm {
    fn drop(&mut self) {
        // SAFETY: plain syscall on the process group this VM owns.
        unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
        LIVE_GROUPS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&g| g != self.pgid);
    }
}

impl Vm {
    /// End QEMU politely: QMP `quit`, then SIGTERM to the group after `grace`, then SIGKILL.
    pub async fn shutdown(mut self, grace: Duration) {
        let quit = self.qmp.execute(qapi::qmp::quit {});
        let _ = tokio::time::timeout(grace, quit).await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            // SAFETY: plain syscall on the process group this VM owns.
            unsafe { libc::killpg(self.pgid, libc::SIGTERM) };
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                // SAFETY: as above.
                unsafe { libc::killpg(self.pgid, libc::SIGKILL) };
                let _ = self.child.wait().await;
            }
        }
    }
}

/// Start QEMU for `cfg` and connect console, control port and QMP. Fails with QEMU's own stderr
/// when QEMU exits or takes longer than `start_timeout` to connect.
pub async fn launch(cfg: &VmConfig, start_timeout: Duration) -> Result<Vm, VmError> {
    let listen = |path: &Path| {
        let _ = std::fs::remove_file(path);
        UnixListener::bind(path).map_err(|source| VmError::Socket {
            path: path.display().to_string(),
            source,
        })
    };
    let console = listen(&cfg.console_socket)?;
    let control = listen(&cfg.control_socket)?;
    let _ = std::fs::remove_file(&cfg.qmp_socket);

    let mut command = Command::new(&cfg.qemu);
    command
        .args(argv(cfg))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if cfg.machine != crate::Machine::Microvm {
        // qboot.rom, which `pc` and `q35` boot.
        command.args(["-L", "/usr/share/qemu"]);
    }
    let mut child = command.spawn().map_err(|source| VmError::Spawn {
        qemu: cfg.qemu.display().to_string(),
        source,
    })?;
    let pgid = child.id().expect("a child that was just spawned has a pid") as i32;
    LIVE_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(pgid);
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let stderr_text = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        String::from_utf8_lossy(&buf).into_owned()
    });

    let connect = async {
        let (console, _) = console.accept().await?;
        let (control, _) = control.accept().await?;
        let qmp = connect_qmp(&cfg.qmp_socket).await?;
        io::Result::Ok((console, control, qmp))
    };
    let connected = tokio::select! {
        r = tokio::time::timeout(start_timeout, connect) => r,
        status = child.wait() => {
            let stderr = stderr_text.await.unwrap_or_default();
            return Err(VmError::Start {
                why: format!("QEMU exited ({})", status.map(|s| s.to_string()).unwrap_or_default()),
                stderr,
            });
        }
    };
    let (console, control, qmp) = match connected {
        Ok(Ok(parts)) => parts,
        Ok(Err(e)) => {
            // Usually QEMU died while the sockets connected: what it said is the real reason.
            let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            // SAFETY: plain syscall on the group just started.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
            let _ = child.wait().await;
            return Err(VmError::Start {
                why: format!("connecting to QEMU failed: {e}"),
                stderr: stderr_text.await.unwrap_or_default(),
            });
        }
        Err(_) => {
            // SAFETY: plain syscall on the group just started.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
            let _ = child.wait().await;
            return Err(VmError::Start {
                why: format!("QEMU did not connect within {start_timeout:?}"),
                stderr: stderr_text.await.unwrap_or_default(),
            });
        }
    };

    let (tx, events) = mpsc::channel(1024);
    let (service, qmp_events) = qmp.into_parts();
    tokio::spawn(forward_bytes(console, tx.clone()));
    tokio::spawn(forward_lines(control, tx.clone()));
    tokio::spawn(forward_qmp(qmp_events, tx.clone()));
    let vm = Vm {
        child,
        pgid,
        qmp: service,
        events,
    };
    tokio::spawn(watch_exit(pgid, stderr_text, tx));
    Ok(vm)
}

type QmpEvents = qapi::futures::QapiEvents<QmpStreamTokio<tokio::io::ReadHalf<UnixStream>>>;
type QmpStream = qapi::futures::QapiStream<
    QmpStreamTokio<tokio::io::ReadHalf<UnixStream>>,
    QmpStreamTokio<WriteHalf<UnixStream>>,
>;

/// QEMU creates the QMP socket while it starts: retry briefly, then greet and negotiate.
async fn connect_qmp(path: &Path) -> io::Result<QmpStream> {
    let mut last = None;
    for _ in 0..100 {
        match QmpStreamTokio::open_uds(path).await {
            Ok(negotiation) => return negotiation.negotiate().await,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| io::Error::other("no QMP socket")))
}

async fn forward_bytes(mut stream: UnixStream, tx: mpsc::Sender<VmEvent>) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 || tx.send(VmEvent::Console(buf[..n].to_vec())).await.is_err() {
            break;
        }
    }
}

/// The longest control line kept: an agent event is a few KiB at most (a memory sample with
/// every slab cache), so anything longer is a guest writing garbage, and is dropped.
const MAX_CONTROL_LINE: usize = 1 << 20;

async fn forward_lines(mut stream: UnixStream, tx: mpsc::Sender<VmEvent>) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        for line in take_lines(&mut pending, MAX_CONTROL_LINE) {
            if tx.send(VmEvent::Control(line)).await.is_err() {
                return;
            }
        }
    }
}

/// The complete lines at the front of `pending`, without their newlines; a line longer than
/// `max` is dropped, and so is an unfinished one that has grown past it.
fn take_lines(pending: &mut Vec<u8>, max: usize) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(at) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=at).collect();
        if line.len() <= max {
            lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
    }
    if pending.len() > max {
        pending.clear();
    }
    lines
}

async fn forward_qmp(mut events: QmpEvents, tx: mpsc::Sender<VmEvent>) {
    while let Some(Ok(event)) = events.next().await {
        let mapped = match event {
            qapi::qmp::Event::GUEST_PANICKED { .. } => VmEvent::GuestPanicked,
            qapi::qmp::Event::SHUTDOWN { data, .. } => VmEvent::Shutdown(
                serde_json::to_value(data.reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            ),
            _ => continue,
        };
        if tx.send(mapped).await.is_err() {
            break;
        }
    }
}

/// Wait for the QEMU process without owning the `Child` (the `Vm` keeps it for `shutdown`).
async fn watch_exit(pgid: i32, stderr: tokio::task::JoinHandle<String>, tx: mpsc::Sender<VmEvent>) {
    // stderr closes when QEMU exits; then reap the status with a non-blocking waitid peek.
    let stderr = stderr.await.unwrap_or_default();
    let code = exit_code_of(pgid).await;
    let _ = tx.send(VmEvent::Exited { code, stderr }).await;
}

/// The exit code of process `pid` once it has exited, without reaping it (so the owning `Child`
/// still can).
async fn exit_code_of(pid: i32) -> Option<i32> {
    for _ in 0..200 {
        match peek_exit(pid) {
            Some(status) => return status,
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    None
}

/// `Some(exit code or None for a signal)` once `pid` has exited, `None` while it runs.
fn peek_exit(pid: i32) -> Option<Option<i32>> {
    // SAFETY: siginfo is plain data; WNOWAIT leaves the zombie for Child::wait.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Some(None);
    }
    // SAFETY: si_pid/si_status are valid in the siginfo waitid fills.
    if unsafe { info.si_pid() } != pid {
        return None;
    }
    Some((info.si_code == libc::CLD_EXITED).then(|| unsafe { info.si_status() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_are_split_and_a_partial_one_waits_for_its_end() {
        let mut pending = b"{\"a\":1}\n{\"b\"".to_vec();
        assert_eq!(take_lines(&mut pending, 100), ["{\"a\":1}"]);
        assert_eq!(pending, b"{\"b\"");
    }

    #[test]
    fn a_guest_cannot_grow_the_control_buffer_without_bound() {
        let mut pending = vec![b'x'; 300];
        assert!(take_lines(&mut pending, 256).is_empty());
        assert!(pending.is_empty(), "an endless line is dropped");
        let mut pending = [vec![b'y'; 300], b"\nok\n".to_vec()].concat();
        assert_eq!(
            take_lines(&mut pending, 256),
            ["ok"],
            "an over-long line is dropped"
        );
    }
}
