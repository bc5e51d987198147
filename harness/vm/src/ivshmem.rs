//! Interrupts raised from the host: a one-client server for QEMU's `ivshmem-doorbell` device.
//!
//! The device connects to a unix socket and expects an ivshmem server there (QEMU's
//! docs/specs/ivshmem-spec.rst). The server sends little-endian `i64` messages, some carrying a
//! file descriptor: the protocol version (0), the client's ID, `-1` with the shared memory, then,
//! for each peer, the peer's ID once per vector with that vector's eventfd. Eventfds sent under
//! the client's *own* ID are the guest's interrupt sources: writing to the one of vector `v`
//! makes QEMU raise MSI-X vector `v` in the guest. The harness is the only peer, so it sends only
//! the client's own eventfds and keeps the write ends to ring them.
//!
//! An eventfd is a counter: rings that arrive before QEMU reads it merge into one interrupt.
//! [`DoorbellServer::storm`] therefore reports rings *sent*; the guest counts what arrived.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The protocol version QEMU accepts.
const PROTOCOL_VERSION: i64 = 0;
/// The message that carries the shared memory.
const SHARED_MEMORY_MESSAGE: i64 = -1;
/// The ID the server gives its one client (the guest sees it in the IVPosition register).
const CLIENT_ID: i64 = 0;
/// The chardev id [`device_args`] ties the device to.
const CHARDEV_ID: &str = "ivshmem";
/// Shortest pause between two batches of a storm: shorter sleeps cost more CPU than they gain
/// precision (the two host cores also run the guest).
const MIN_STORM_TICK: Duration = Duration::from_micros(100);

/// A one-client ivshmem server whose doorbells the host rings.
pub struct DoorbellServer {
    listener: UnixListener,
    shared_memory: OwnedFd,
    /// The write ends of the guest's interrupt sources, one per MSI-X vector.
    doorbells: Vec<OwnedFd>,
    /// The connection to QEMU, kept open for as long as the server lives: QEMU treats a closed
    /// connection as the server going away.
    client: Option<UnixStream>,
}

impl DoorbellServer {
    /// Listens on `socket` (a stale file there is replaced) with `vectors` doorbells and
    /// `shm_bytes` of shared memory (a power of two of at least 4 KiB: it becomes a PCI BAR).
    /// Call before QEMU starts: the device connects while QEMU sets up its machine.
    pub fn bind(socket: &Path, vectors: u32, shm_bytes: u64) -> io::Result<DoorbellServer> {
        if vectors == 0 {
            return Err(invalid_input(
                "an ivshmem doorbell device needs at least one vector",
            ));
        }
        if shm_bytes < 4096 || !shm_bytes.is_power_of_two() {
            return Err(invalid_input(&format!(
                "ivshmem shared memory must be a power of two of at least 4096 bytes, not {shm_bytes}"
            )));
        }
        let shared_memory = shared_memory(shm_bytes)?;
        let doorbells = (0..vectors)
            .map(|_| eventfd())
            .collect::<io::Result<Vec<_>>>()?;
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).map_err(|e| with_path(e, socket))?;
        listener.set_nonblocking(true)?;
        Ok(DoorbellServer {
            listener,
            shared_memory,
            doorbells,
            client: None,
        })
    }

    /// Waits for QEMU to connect and serves it the handshake. Bound it with a timeout: QEMU
    /// that never connects leaves this pending.
    pub async fn accept(&mut self) -> io::Result<()> {
        let listener = tokio::net::UnixListener::from_std(self.listener.try_clone()?)?;
        let stream = listener.accept().await?.0.into_std()?;
        // The handshake is a few small messages into an empty socket buffer: it cannot block.
        stream.set_nonblocking(false)?;
        send_handshake(&stream, self.shared_memory.as_fd(), &self.doorbells)?;
        self.client = Some(stream);
        Ok(())
    }

    /// Raises MSI-X `vector` in the guest once (merged with rings QEMU has not read yet).
    pub fn ring(&self, vector: u32) -> io::Result<()> {
        ring_times(self.doorbell(vector)?, 1)
    }

    /// Rings `vector` at `rate_per_s` for `duration` and returns how many rings were sent.
    /// The rate is kept on average: each tick (at least [`MIN_STORM_TICK`] apart) sends the
    /// rings that have fallen due since the last, so a late tick catches up.
    pub async fn storm(&self, vector: u32, rate_per_s: u32, duration: Duration) -> io::Result<u64> {
        let doorbell = self.doorbell(vector)?.try_clone()?;
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let stop_flag = Arc::clone(&stop.0);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        // A thread of its own: tokio's timers tick in whole milliseconds, and the finer timer
        // slack set below must not leak into a pooled thread.
        std::thread::Builder::new()
            .name("ivshmem-storm".into())
            .spawn(move || {
                let _ = done_tx.send(pace(&doorbell, rate_per_s, duration, &stop_flag));
            })?;
        done_rx
            .await
            .map_err(|_| io::Error::other("the ivshmem storm thread died"))?
    }

    fn doorbell(&self, vector: u32) -> io::Result<&OwnedFd> {
        self.doorbells.get(vector as usize).ok_or_else(|| {
            invalid_input(&format!(
                "ivshmem vector {vector} does not exist (the device has {})",
                self.doorbells.len()
            ))
        })
    }
}

/// QEMU arguments that add an `ivshmem-doorbell` device with `vectors` MSI-X vectors, served by
/// the [`DoorbellServer`] listening on `socket`.
pub fn device_args(socket: &Path, vectors: u32) -> Vec<String> {
    let path = crate::argv::chardev_path(socket);
    vec![
        "-chardev".into(),
        format!("socket,id={CHARDEV_ID},path={path}"),
        "-device".into(),
        format!("ivshmem-doorbell,chardev={CHARDEV_ID},vectors={vectors}"),
    ]
}

/// How many rings of a storm at `rate_per_s` are due `elapsed` after it started.
fn rings_due(rate_per_s: u32, elapsed: Duration) -> u64 {
    let due = u128::from(rate_per_s) * elapsed.as_nanos() / 1_000_000_000;
    u64::try_from(due).unwrap_or(u64::MAX)
}

/// The pause between two batches of a storm at `rate_per_s`.
fn storm_tick(rate_per_s: u32) -> Duration {
    let period = Duration::from_secs(1) / rate_per_s.max(1);
    period.max(MIN_STORM_TICK)
}

/// The storm's loop, on its own thread.
fn pace(
    doorbell: &OwnedFd,
    rate_per_s: u32,
    duration: Duration,
    stop: &AtomicBool,
) -> io::Result<u64> {
    // The default 50 µs timer slack would stretch every short sleep; this thread ends with the
    // storm, so the setting goes with it.
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let total = rings_due(rate_per_s, duration);
    let tick = storm_tick(rate_per_s);
    let start = Instant::now();
    let mut sent = 0;
    while sent < total && !stop.load(Ordering::Relaxed) {
        let due = rings_due(rate_per_s, start.elapsed()).min(total);
        if due > sent {
            ring_times(doorbell, due - sent)?;
            sent = due;
        }
        if sent < total {
            std::thread::sleep(tick);
        }
    }
    Ok(sent)
}

/// Sets `stop` when the storm's future is dropped, so a cancelled storm stops ringing.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The server's side of the handshake with one client.
fn send_handshake(
    stream: &UnixStream,
    shared_memory: BorrowedFd,
    doorbells: &[OwnedFd],
) -> io::Result<()> {
    send_message(stream, PROTOCOL_VERSION, None)?;
    send_message(stream, CLIENT_ID, None)?;
    send_message(stream, SHARED_MEMORY_MESSAGE, Some(shared_memory))?;
    // QEMU numbers a peer's eventfds by arrival: the n-th one is vector n.
    for doorbell in doorbells {
        send_message(stream, CLIENT_ID, Some(doorbell.as_fd()))?;
    }
    Ok(())
}

/// Sends one protocol message: `value` as little-endian `i64`, `fd` as SCM_RIGHTS.
fn send_message(stream: &UnixStream, value: i64, fd: Option<BorrowedFd>) -> io::Result<()> {
    let bytes = value.to_le_bytes();
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // u64s keep the control buffer aligned for cmsghdr; 32 bytes hold one descriptor.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data for which all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        let fd_len = std::mem::size_of::<libc::c_int>() as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE only computes a size.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(fd_len) } as usize;
        assert!(msg.msg_controllen <= std::mem::size_of_val(&control));
        // SAFETY: msg_control points at a zeroed, aligned buffer of msg_controllen bytes, so
        // the first header and its data lie inside it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(fd_len) as usize;
            std::ptr::write_unaligned(
                libc::CMSG_DATA(header).cast::<libc::c_int>(),
                fd.as_raw_fd(),
            );
        }
    }
    loop {
        // SAFETY: msg and everything it points to outlive the call. MSG_NOSIGNAL: a QEMU that
        // went away must give EPIPE, not kill the harness with SIGPIPE.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if sent == bytes.len() as isize {
            return Ok(());
        }
        let error = if sent < 0 {
            io::Error::last_os_error()
        } else {
            io::Error::new(io::ErrorKind::WriteZero, "ivshmem message sent in part")
        };
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Adds `times` to an eventfd's counter: one write, however many rings.
fn ring_times(doorbell: &OwnedFd, times: u64) -> io::Result<()> {
    let bytes = times.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to a descriptor we own.
    let written = unsafe { libc::write(doorbell.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if written == bytes.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// An anonymous file of `bytes` bytes for the device's shared-memory BAR.
fn shared_memory(bytes: u64) -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated literal; the result is checked before use.
    let fd = unsafe { libc::memfd_create(c"modharness-ivshmem".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(bytes)?;
    Ok(file.into())
}

/// A new doorbell. Non-blocking: a write only blocks when the counter is near overflow, and a
/// storm must not hang on a guest that stopped taking interrupts.
fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked before use.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn invalid_input(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.to_string())
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One message as QEMU receives it: the value and the descriptor attached, if any.
    fn receive_message(stream: &UnixStream) -> (i64, Option<OwnedFd>) {
        let mut bytes = [0u8; 8];
        let mut iov = libc::iovec {
            iov_base: bytes.as_mut_ptr().cast(),
            iov_len: bytes.len(),
        };
        let mut control = [0u64; 4];
        // SAFETY: all-zero is a valid msghdr.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at live buffers of the sizes it states.
        let received =
            unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        assert_eq!(
            received,
            8,
            "a whole message: {}",
            io::Error::last_os_error()
        );
        // SAFETY: the kernel filled msg_control; CMSG_FIRSTHDR checks the length it reported.
        let fd = unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (!header.is_null()).then(|| {
                assert_eq!((*header).cmsg_type, libc::SCM_RIGHTS);
                OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(header).cast()))
            })
        };
        (i64::from_le_bytes(bytes), fd)
    }

    /// The eventfd's counter, reset to 0 (0 when nothing was written).
    fn take_count(eventfd: &OwnedFd) -> u64 {
        let mut bytes = [0u8; 8];
        // SAFETY: reads 8 bytes into a live buffer.
        let read = unsafe { libc::read(eventfd.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) };
        if read == 8 {
            u64::from_ne_bytes(bytes)
        } else {
            assert_eq!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock);
            0
        }
    }

    fn file_size(fd: &OwnedFd) -> u64 {
        std::fs::File::from(fd.try_clone().unwrap())
            .metadata()
            .unwrap()
            .len()
    }

    /// Connects like QEMU does and reads the whole handshake: the shared memory and the
    /// client's own eventfds, in vector order.
    fn connect_and_handshake(socket: &Path, vectors: u32) -> (UnixStream, OwnedFd, Vec<OwnedFd>) {
        let stream = UnixStream::connect(socket).unwrap();
        assert!(matches!(receive_message(&stream), (PROTOCOL_VERSION, None)));
        let (id, fd) = receive_message(&stream);
        assert!(fd.is_none());
        let (shm_message, shm) = receive_message(&stream);
        assert_eq!(shm_message, -1);
        let mut doorbells = Vec::new();
        for _ in 0..vectors {
            let (peer, doorbell) = receive_message(&stream);
            assert_eq!(
                peer, id,
                "the eventfds of the client's own ID are its interrupts"
            );
            doorbells.push(doorbell.expect("each vector message carries an eventfd"));
        }
        (
            stream,
            shm.expect("the shared memory message carries a descriptor"),
            doorbells,
        )
    }

    async fn served(
        vectors: u32,
        shm_bytes: u64,
    ) -> (tempfile::TempDir, DoorbellServer, OwnedFd, Vec<OwnedFd>) {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("ivshmem.sock");
        let mut server = DoorbellServer::bind(&socket, vectors, shm_bytes).unwrap();
        let client = std::thread::spawn(move || connect_and_handshake(&socket, vectors));
        tokio::time::timeout(Duration::from_secs(10), server.accept())
            .await
            .unwrap()
            .unwrap();
        let (stream, shm, doorbells) = client.join().unwrap();
        drop(stream);
        (dir, server, shm, doorbells)
    }

    #[test]
    fn device_args_name_the_socket_and_the_vector_count() {
        assert_eq!(
            device_args(Path::new("/run/mh/ivshmem.sock"), 4),
            [
                "-chardev",
                "socket,id=ivshmem,path=/run/mh/ivshmem.sock",
                "-device",
                "ivshmem-doorbell,chardev=ivshmem,vectors=4"
            ]
        );
    }

    #[test]
    fn device_args_double_commas_in_the_socket_path() {
        assert_eq!(
            device_args(Path::new("/tmp/a,b/s"), 1)[1],
            "socket,id=ivshmem,path=/tmp/a,,b/s"
        );
    }

    #[test]
    fn rings_due_follow_the_rate_and_never_overflow() {
        assert_eq!(rings_due(20_000, Duration::from_millis(0)), 0);
        assert_eq!(rings_due(20_000, Duration::from_micros(49)), 0);
        assert_eq!(rings_due(20_000, Duration::from_micros(50)), 1);
        assert_eq!(rings_due(20_000, Duration::from_secs(2)), 40_000);
        assert_eq!(rings_due(3, Duration::from_millis(999)), 2);
        assert_eq!(rings_due(u32::MAX, Duration::MAX), u64::MAX);
    }

    #[test]
    fn storm_ticks_follow_the_rate_down_to_a_floor() {
        assert_eq!(storm_tick(100), Duration::from_millis(10));
        assert_eq!(storm_tick(5_000), Duration::from_micros(200));
        assert_eq!(storm_tick(1_000_000), MIN_STORM_TICK);
        assert_eq!(storm_tick(0), Duration::from_secs(1));
    }

    #[test]
    fn bind_rejects_no_vectors_and_memory_that_cannot_be_a_bar() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        for (vectors, bytes) in [(0, 1 << 20), (1, 3 << 20), (1, 2048)] {
            let error = DoorbellServer::bind(&socket, vectors, bytes).err().unwrap();
            assert_eq!(
                error.kind(),
                io::ErrorKind::InvalidInput,
                "{vectors} vectors, {bytes} bytes"
            );
        }
    }

    #[test]
    fn bind_replaces_a_stale_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        std::fs::write(&socket, b"stale").unwrap();
        DoorbellServer::bind(&socket, 1, 4096).unwrap();
    }

    #[tokio::test]
    async fn handshake_hands_over_memory_of_the_asked_size_and_one_eventfd_per_vector() {
        let (_dir, _server, shm, doorbells) = served(3, 1 << 20).await;
        assert_eq!(file_size(&shm), 1 << 20);
        assert_eq!(doorbells.len(), 3);
    }

    #[tokio::test]
    async fn ring_reaches_the_eventfd_of_that_vector_only() {
        let (_dir, server, _shm, doorbells) = served(3, 4096).await;
        server.ring(1).unwrap();
        server.ring(1).unwrap();
        let counts: Vec<u64> = doorbells.iter().map(take_count).collect();
        assert_eq!(counts, [0, 2, 0]);
    }

    #[tokio::test]
    async fn ring_of_a_missing_vector_is_an_error() {
        let (_dir, server, _shm, _doorbells) = served(2, 4096).await;
        assert_eq!(
            server.ring(2).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[tokio::test]
    async fn storm_sends_rate_times_duration_rings_in_about_that_time() {
        let (_dir, server, _shm, doorbells) = served(1, 4096).await;
        let start = Instant::now();
        let sent = server
            .storm(0, 20_000, Duration::from_millis(200))
            .await
            .unwrap();
        let took = start.elapsed();
        assert_eq!(sent, 4_000);
        assert_eq!(take_count(&doorbells[0]), 4_000);
        assert!(took >= Duration::from_millis(199), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
}
