//! Turning raw console bytes into lines: splitting, sanitising, and reading the printk prefixes
//! (`[    2.450000]` timestamp, `[  T123]` / `[    C1]` caller tag).

/// Longer lines are cut here. Kernel records are under 1 KiB; the cap only bounds memory when a
/// guest writes garbage without newlines. It is counted in bytes of the stream, so where a cut
/// falls never depends on how the stream was chunked.
const MAX_LINE_BYTES: usize = 4096;

/// Splits a byte stream into lines, whatever the chunking.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Adds bytes and calls `on_line` for every line they complete (without its `\n`).
    pub(crate) fn push(&mut self, mut bytes: &[u8], mut on_line: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let room = MAX_LINE_BYTES - self.pending.len();
            let window = &bytes[..bytes.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.pending.extend_from_slice(&window[..end]);
                    on_line(&self.pending);
                    self.pending.clear();
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.pending.extend_from_slice(window);
                    bytes = &bytes[window.len()..];
                    if self.pending.len() == MAX_LINE_BYTES {
                        on_line(&self.pending);
                        self.pending.clear();
                    }
                }
            }
        }
    }

    /// Hands out the unterminated last line, if any.
    pub(crate) fn flush(&mut self, mut on_line: impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            on_line(&self.pending);
            self.pending.clear();
        }
    }
}

/// The printk context that wrote a line (`CONFIG_PRINTK_CALLER`): a task or a CPU in interrupt
/// context. Lines of one report share it, which is how interleaved reports are kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    Task(u32),
    Cpu(u32),
}

/// One console line.
#[derive(Clone, Debug)]
pub(crate) struct Line {
    /// The whole line, valid UTF-8 without control characters, prefixes kept.
    pub(crate) text: String,
    /// Where the message starts in `text`, after the printk prefixes.
    msg_start: usize,
    pub(crate) time_s: Option<f64>,
    pub(crate) caller: Option<Caller>,
}

impl Line {
    /// Decodes raw bytes: lossy UTF-8, `\r` and NUL dropped, other control characters replaced.
    pub(crate) fn parse(bytes: &[u8]) -> Line {
        let text: String = String::from_utf8_lossy(bytes)
            .chars()
            .filter(|&c| c != '\r' && c != '\0')
            .map(|c| {
                if c != '\t' && c.is_control() {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect();
        let (time_s, caller, msg_start) = parse_prefixes(&text);
        Line {
            text,
            msg_start,
            time_s,
            caller,
        }
    }

    /// The message, after the printk prefixes (frames keep their leading space).
    pub(crate) fn msg(&self) -> &str {
        &self.text[self.msg_start..]
    }
}

/// Reads `<N>` (syslog level), `[ seconds.micros]`, `[ T123]` / `[ C1]` and the one space that
/// separates them from the message. Returns (time, caller, message offset).
fn parse_prefixes(text: &str) -> (Option<f64>, Option<Caller>, usize) {
    let mut rest = text;
    if let Some(after) = rest.strip_prefix('<') {
        if let Some(close) = after.find('>') {
            if close <= 2 && close > 0 && after[..close].bytes().all(|b| b.is_ascii_digit()) {
                rest = &after[close + 1..];
            }
        }
    }
    let mut time_s = None;
    if let Some((inner, after)) = bracketed(rest) {
        if let Ok(t) = inner.trim_start().parse::<f64>() {
            if inner.contains('.') && t.is_finite() {
                time_s = Some(t);
                rest = after;
            }
        }
    }
    let mut caller = None;
    let candidate = rest.strip_prefix(' ').filter(|r| r.starts_with('['));
    for attempt in [Some(rest), candidate].into_iter().flatten() {
        if let Some((inner, after)) = bracketed(attempt) {
            if let Some(c) = parse_caller(inner.trim_start()) {
                caller = Some(c);
                rest = after;
                break;
            }
        }
    }
    if (time_s.is_some() || caller.is_some()) && rest.starts_with(' ') {
        rest = &rest[1..];
    }
    // kmemleak prints every line of a verbose report with its own prefix; the report's
    // structure (indented frames) is what follows it.
    if let Some(after) = rest.strip_prefix("kmemleak: ") {
        rest = after;
    }
    (time_s, caller, text.len() - rest.len())
}

/// `[inner]rest` → (inner, rest), for a short bracket at the very start.
fn bracketed(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    (close <= 20).then(|| (&inner[..close], &inner[close + 1..]))
}

fn parse_caller(tag: &str) -> Option<Caller> {
    let (make, digits): (fn(u32) -> Caller, &str) = if let Some(d) = tag.strip_prefix('T') {
        (Caller::Task, d)
    } else {
        (Caller::Cpu, tag.strip_prefix('C')?)
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(make)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |l| lines.push(l.to_vec()));
        }
        splitter.flush(|l| lines.push(l.to_vec()));
        lines
    }

    #[test]
    fn a_line_split_across_chunks_is_joined() {
        let lines = split_all(&[b"ab", b"c\nde", b"f\n", b"tail"]);
        assert_eq!(
            lines,
            vec![b"abc".to_vec(), b"def".to_vec(), b"tail".to_vec()]
        );
    }

    #[test]
    fn overlong_lines_are_cut_at_the_same_place_whatever_the_chunking() {
        let data = vec![b'x'; MAX_LINE_BYTES * 2 + 10];
        let whole = split_all(&[&data]);
        let pieces: Vec<&[u8]> = data.chunks(777).collect();
        assert_eq!(whole, split_all(&pieces));
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].len(), MAX_LINE_BYTES);
    }

    #[test]
    fn timestamp_and_caller_are_read_and_stripped() {
        let line = Line::parse(b"[    2.450000][  T123] BUG: foo\r");
        assert_eq!(line.time_s, Some(2.45));
        assert_eq!(line.caller, Some(Caller::Task(123)));
        assert_eq!(line.msg(), "BUG: foo");

        let line = Line::parse(b"[   12.5][    C1]  __run_timers+0x1a2/0x2c0");
        assert_eq!(line.caller, Some(Caller::Cpu(1)));
        assert_eq!(line.msg(), " __run_timers+0x1a2/0x2c0");

        let line = Line::parse(b"<4>[    3.000001] WARNING: CPU: 0 PID: 1 at x");
        assert_eq!(line.time_s, Some(3.000001));
        assert_eq!(line.caller, None);
        assert_eq!(line.msg(), "WARNING: CPU: 0 PID: 1 at x");
    }

    #[test]
    fn lines_without_prefixes_are_kept_whole() {
        let line = Line::parse(b"[last unloaded: foo]");
        assert_eq!(line.time_s, None);
        assert_eq!(line.msg(), "[last unloaded: foo]");
        assert_eq!(Line::parse(b" foo+0x1/0x2").msg(), " foo+0x1/0x2");
        let line =
            Line::parse(b"[   33.5] kmemleak:     [<000000003b9f1b0e>] kmalloc_trace+0x26/0x90");
        assert_eq!(
            line.msg(),
            "    [<000000003b9f1b0e>] kmalloc_trace+0x26/0x90"
        );
    }

    #[test]
    fn invalid_utf8_and_control_bytes_become_replacement_characters() {
        let line = Line::parse(b"a\xff\x1b[0mb\0c");
        assert_eq!(line.text, "a\u{FFFD}\u{FFFD}[0mbc");
    }
}
