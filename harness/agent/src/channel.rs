//! The control channel: one JSON line per event, written whole so lines never interleave.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use modharness_protocol::{Event, CONTROL_TTY};

/// Where events go. Shared by every thread of the agent.
pub struct Channel {
    out: Mutex<Box<dyn Write + Send>>,
}

impl Channel {
    /// A channel writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Channel {
            out: Mutex::new(out),
        }
    }

    /// Open the control port: `path` when given (for tests and manual runs; created if missing
    /// and appended to, so that init's stand-in `Done` follows the plan child's lines), else
    /// [`CONTROL_TTY`], falling back to stdout when the guest has no such port.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let file = match path {
            Some(path) => open_for_writing(path, true)
                .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?,
            None => match open_for_writing(Path::new(CONTROL_TTY), false) {
                Ok(file) => file,
                Err(_) => return Ok(Channel::new(Box::new(io::stdout()))),
            },
        };
        make_raw_if_terminal(&file);
        Ok(Channel::new(Box::new(file)))
    }

    /// Write `event` as one line with a single write and flush it.
    pub fn send(&self, event: &Event) -> io::Result<()> {
        let mut line = event.to_line();
        line.push('\n');
        // A thread that panicked while holding the lock left no partial line behind: a line is
        // one write, so the writer is still usable.
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        out.write_all(line.as_bytes())?;
        out.flush()
    }
}

fn open_for_writing(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(create)
        .append(create)
        // Opening a tty must not make it the agent's controlling terminal.
        .custom_flags(libc::O_NOCTTY)
        .open(path)
}

/// Raw mode: no `\n` to `\r\n` translation, no echo, no line discipline between the agent's
/// bytes and the host. Files that are not terminals are left alone.
fn make_raw_if_terminal(file: &File) {
    let fd = file.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it before cfmakeraw and tcsetattr read it.
    unsafe {
        let mut settings: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut settings) == 0 {
            libc::cfmakeraw(&mut settings);
            libc::tcsetattr(fd, libc::TCSANOW, &settings);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Captured {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }

        /// Every line, parsed; panics on a line that is not an event.
        pub(crate) fn events(&self) -> Vec<Event> {
            self.text()
                .lines()
                .map(|line| {
                    Event::parse_line(line).unwrap_or_else(|| panic!("not an event: {line}"))
                })
                .collect()
        }
    }

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_event_is_one_json_line() {
        let captured = Captured::default();
        let channel = Channel::new(Box::new(captured.clone()));
        channel.send(&Event::Ready { uptime_s: 1.25 }).unwrap();
        channel.send(&Event::Done { ok: true }).unwrap();
        let text = captured.text();
        assert!(text.ends_with('\n'));
        assert_eq!(text.lines().count(), 2);
        assert_eq!(
            captured.events(),
            vec![Event::Ready { uptime_s: 1.25 }, Event::Done { ok: true }]
        );
    }

    #[test]
    fn a_multi_line_shell_output_stays_on_one_line() {
        let captured = Captured::default();
        let channel = Channel::new(Box::new(captured.clone()));
        let event = Event::Step {
            id: "0".into(),
            op: "shell".into(),
            module: None,
            ok: true,
            error: None,
            start_s: 0.0,
            ms: 0.0,
            output: Some("one\ntwo\r\n".into()),
        };
        channel.send(&event).unwrap();
        assert_eq!(captured.text().lines().count(), 1);
        assert_eq!(captured.events(), vec![event]);
    }

    #[test]
    fn lines_from_many_threads_never_interleave() {
        let captured = Captured::default();
        let channel = Channel::new(Box::new(captured.clone()));
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let channel = &channel;
                scope.spawn(move || {
                    for _ in 0..50 {
                        channel
                            .send(&Event::Memory {
                                cycle: thread,
                                uptime_s: 0.5,
                                meminfo: (0..20).map(|i| (format!("Field{i}"), i)).collect(),
                                label: Default::default(),
                                slab: (0..200).map(|i| (format!("cache-{i}"), i)).collect(),
                                vmalloc: Default::default(),
                                modules: Default::default(),
                            })
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(captured.events().len(), 200);
    }

    #[test]
    fn an_explicit_control_path_is_created_then_appended_to() {
        let path =
            std::env::temp_dir().join(format!("modharness-agent-{}.ctl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        for ok in [true, false] {
            let channel = Channel::open(Some(&path)).unwrap();
            channel.send(&Event::Done { ok }).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            text,
            "{\"event\":\"done\",\"ok\":true}\n{\"event\":\"done\",\"ok\":false}\n"
        );
    }
}
