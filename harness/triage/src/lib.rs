//! Reads a kernel console log and finds the crashes in it, titled and attributed to a module.
//!
//! The console is untrusted bytes (invalid UTF-8, control characters, `\r\n`, lines cut across
//! reads); [`Triage`] reads it incrementally, [`triage`] reads a whole log with the same engine,
//! and any chunking of the same bytes gives the same findings.
//!
//! **One crash is one finding.** An oops followed by `Kernel panic - not syncing: Fatal
//! exception` is one [`Kind::Oops`] finding with `panicked: true`; a panic with no report before
//! it is a [`Kind::Panic`] finding. A stall or leak reported again with the same title is not
//! reported twice.
//!
//! **Titles** follow syzbot's conventions (`BUG: unable to handle page fault in __run_timers`,
//! `WARNING in foo_exit`, `KASAN: slab-use-after-free Read in bar`, `INFO: task hung in baz`):
//! the function is the guilty frame, the first frame of the faulting site or the stack that is not
//! reporting machinery, a sanitizer, an allocator, a lock, a string helper, a wait primitive or
//! entry code. Numbers and addresses never appear in titles.
//!
//! **Module attribution**, first rule that answers wins:
//! 1. the `[mod]` tag of the faulting site (`RIP:`, the function a WARNING, KASAN or KFENCE report
//!    names);
//! 2. `[last unloaded: mod]` when the crash is in freed module memory: the `RIP:` is a bare
//!    module-area address, the page fault address is in the module area (or its KASAN shadow), or
//!    the stack holds a bare module-area address (the unload race; also a notifier left behind
//!    that crashes inside another module's load);
//! 3. the tag of the guilty frame;
//! 4. `[last unloaded: mod]` when the `RIP:` is an address the kernel could not symbolise
//!    (`RIP: 0010:0x0`: a call through a pointer a gone module left behind);
//! 5. the first tagged frame of the stack;
//! 6. a function the report names as related (ODEBUG `hint:`, `Workqueue:`, `in-flight:`);
//! 7. a module marked loading `(+)` or unloading `(-)` in `Modules linked in:` when the stack
//!    runs through module load or unload;
//! 8. any tagged frame elsewhere in the report (KASAN allocation stacks, lockdep chains).
//!
//! **Collateral damage**: a report printed by a kernel that had already oopsed (taint flag `D`)
//! right after that oops, in the same context, is folded into the oops's finding (a task dying
//! of its oops faults again; the stall that follows). One from another context that names no
//! module is blamed on the module of the oops that killed the kernel.
//!
//! **Frames**: each finding lists its crash site (`RIP:`) and first call trace as printed
//! (`func+0xOFFSET/0xSIZE [mod]`); a [`Symbolizer`] given the module objects (and optionally a
//! vmlinux) with debug info adds `file:line` to them.
//!
//! With `CONFIG_PRINTK_CALLER` (`[  T123]`, `[    C1]`) each report only takes the lines of
//! the context that started it, so reports interleaved with other CPUs' output stay whole.

mod console;
mod fragments;
mod frames;
mod layout;
mod report;
mod starts;
mod symbolize;

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use console::{Caller, Line, LineSplitter};
pub use fragments::blame_as_fragment_of;
pub use layout::{
    accessed_address, bare_addresses, blame_bare_addresses, LoadHistory, LoadedModule, Located,
};
use report::{Report, State, Step};
use starts::{Ending, Role};
pub use symbolize::Symbolizer;

/// The kind of a finding (the `kind` of report.json).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An oops: page fault, NULL dereference, general protection fault, `kernel BUG at`,
    /// divide error, invalid opcode, double fault, stack overflow.
    Oops,
    /// `Kernel panic - not syncing` with no report before it.
    Panic,
    /// `WARNING: CPU: … at …` (also refcount_t, ODEBUG and list-corruption warnings).
    Warning,
    /// A KASAN report.
    Kasan,
    /// A UBSAN report.
    Ubsan,
    /// A KFENCE report.
    Kfence,
    /// A KCSAN data-race report.
    Kcsan,
    /// A lockdep report: possible deadlock, inconsistent lock state, bad unlock balance, …
    Lockdep,
    /// `INFO: task … blocked for more than … seconds`.
    HungTask,
    /// `BUG: soft lockup`.
    SoftLockup,
    /// `Watchdog detected hard LOCKUP`.
    HardLockup,
    /// `INFO: rcu_… detected stalls`.
    RcuStall,
    /// `BUG: workqueue lockup`.
    WorkqueueLockup,
    /// A kmemleak `unreferenced object`.
    Kmemleak,
    /// `BUG: Bad page state`, `BUG: Bad page map`, `BUG: Bad rss-counter state`.
    BadPage,
    /// Another `BUG:` report after which the kernel goes on: scheduling while atomic, sleeping
    /// function called from invalid context, spinlock bad magic, workqueue leaked lock, …
    Bug,
    /// `unregister_netdevice: waiting for DEV to become free`: a leaked device reference.
    NetdevRefLeak,
}

impl Kind {
    /// Every kind, in declaration order (a new variant belongs here too: `every_kind_is_listed_once`
    /// checks the names are distinct and round-trip).
    pub const ALL: [Kind; 17] = [
        Kind::Oops,
        Kind::Panic,
        Kind::Warning,
        Kind::Kasan,
        Kind::Ubsan,
        Kind::Kfence,
        Kind::Kcsan,
        Kind::Lockdep,
        Kind::HungTask,
        Kind::SoftLockup,
        Kind::HardLockup,
        Kind::RcuStall,
        Kind::WorkqueueLockup,
        Kind::Kmemleak,
        Kind::BadPage,
        Kind::Bug,
        Kind::NetdevRefLeak,
    ];

    /// The snake_case name, as serialized.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Oops => "oops",
            Kind::Panic => "panic",
            Kind::Warning => "warning",
            Kind::Kasan => "kasan",
            Kind::Ubsan => "ubsan",
            Kind::Kfence => "kfence",
            Kind::Kcsan => "kcsan",
            Kind::Lockdep => "lockdep",
            Kind::HungTask => "hung_task",
            Kind::SoftLockup => "soft_lockup",
            Kind::HardLockup => "hard_lockup",
            Kind::RcuStall => "rcu_stall",
            Kind::WorkqueueLockup => "workqueue_lockup",
            Kind::Kmemleak => "kmemleak",
            Kind::BadPage => "bad_page",
            Kind::Bug => "bug",
            Kind::NetdevRefLeak => "netdev_ref_leak",
        }
    }

    /// Kinds a kernel keeps reporting while the problem lasts: a repeat with the same title and
    /// module is the same finding.
    fn repeats(&self) -> bool {
        matches!(
            self,
            Kind::HungTask
                | Kind::SoftLockup
                | Kind::HardLockup
                | Kind::RcuStall
                | Kind::WorkqueueLockup
                | Kind::Kmemleak
                | Kind::NetdevRefLeak
        )
    }
}

/// One crash found on the console.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Finding {
    /// What kind of crash.
    pub kind: Kind,
    /// The syzbot-style title, e.g. `BUG: unable to handle page fault in __run_timers`.
    pub title: String,
    /// Other titles the same crash may get (other candidate frames, older kernels' wording), for
    /// deduplication.
    pub alt_titles: Vec<String>,
    /// The module to blame, when the report tells.
    pub module: Option<String>,
    /// The report was cut short or garbled: no stack where one was due.
    pub corrupted: bool,
    /// The report ended in `Kernel panic - not syncing`.
    pub panicked: bool,
    /// The printk timestamp of the report's first line, in seconds since boot.
    pub time_s: Option<f64>,
    /// The function the title names.
    pub guilty_frame: Option<String>,
    /// The report's lines, timestamps kept.
    pub report: String,
    /// The crash site (the first kernel-mode `RIP:` before the stack) and the first call trace,
    /// innermost first; frames the kernel could not name are left out. `file` and `line` are
    /// filled by [`Symbolizer::symbolize`].
    #[serde(default)]
    pub frames: Vec<Frame>,
    /// Bare module-area addresses of the report placed in the modules that lay there
    /// ([`blame_bare_addresses`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub located: Vec<Located>,
}

/// One frame of a finding's stack, as printed (`func+0xOFFSET/0xSIZE [module]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Frame {
    /// The symbol, compiler suffixes kept (`foo.cold`).
    pub function: String,
    /// Bytes from the start of the function.
    pub offset: u64,
    /// The function's size in bytes.
    pub size: u64,
    /// The module the function is in; `None` for the kernel image.
    pub module: Option<String>,
    /// Not marked `?` by the unwinder (a `?` frame may be a stale stack word).
    pub reliable: bool,
    /// A stack entry, where a call returns to; false for a `RIP:`, the instruction that ran.
    pub return_address: bool,
    /// The source file, once symbolized.
    pub file: Option<String>,
    /// The source line, once symbolized; for a return address, the line of the call.
    pub line: Option<u32>,
}

impl std::fmt::Display for Frame {
    /// As the kernel prints it, then the source line when known:
    /// `? foo_fn+0x1d/0x40 [foo] /src/foo/foo.c:47`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.reliable {
            f.write_str("? ")?;
        }
        write!(f, "{}+{:#x}/{:#x}", self.function, self.offset, self.size)?;
        if let Some(module) = &self.module {
            write!(f, " [{module}]")?;
        }
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, " {file}:{line}"),
            _ => Ok(()),
        }
    }
}

/// Lines kept per printk context before a report starts (`cut here`, a WARN message, `=====`).
const RECENT_LINES: usize = 8;
/// Printk contexts whose recent lines are kept.
const RECENT_CONTEXTS: usize = 64;

/// The incremental console reader.
#[derive(Default)]
pub struct Triage {
    splitter: LineSplitter,
    /// Reports being read, in the order they started; at most one per printk context.
    reports: Vec<Report>,
    /// Recent lines outside any report, per printk context, most recently used first.
    recent: Vec<(Option<Caller>, VecDeque<Line>)>,
    /// (kind, title, module) of findings of repeating kinds already given out.
    reported: HashSet<(Kind, String, Option<String>)>,
    /// The module blamed for the last oops: the kernel has been dying of it since.
    killed_by: Option<String>,
}

impl Triage {
    /// A reader that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads more console bytes; returns the findings they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Finding> {
        let mut lines = Vec::new();
        self.splitter
            .push(bytes, |raw| lines.push(Line::parse(raw)));
        let mut findings = Vec::new();
        for line in lines {
            self.read_line(line, &mut findings);
        }
        findings
    }

    /// Whether a report has started and not ended: more of the console belongs to it.
    ///
    /// A report that has ended is given out once it is clear that no `Kernel panic` of its own
    /// follows (about twenty ordinary lines later), or by [`Triage::settle`] or
    /// [`Triage::finish`].
    pub fn in_report(&self) -> bool {
        self.reports.iter().any(|r| r.state != State::Tail)
    }

    /// Gives out the reports that have ended but were still waiting for a panic that would
    /// belong to them. For a console that has gone quiet; later bytes can then no longer mark
    /// those findings `panicked`.
    pub fn settle(&mut self) -> Vec<Finding> {
        let mut findings = Vec::new();
        let (waiting, rest): (Vec<Report>, Vec<Report>) = std::mem::take(&mut self.reports)
            .into_iter()
            .partition(|r| r.state == State::Tail);
        self.reports = rest;
        for report in waiting {
            self.emit(report, &mut findings);
        }
        findings
    }

    /// Ends the log: reads an unterminated last line and returns every report still open.
    pub fn finish(mut self) -> Vec<Finding> {
        let mut last = None;
        self.splitter.flush(|raw| last = Some(Line::parse(raw)));
        let mut findings = Vec::new();
        if let Some(line) = last {
            self.read_line(line, &mut findings);
        }
        for report in std::mem::take(&mut self.reports) {
            self.emit(report, &mut findings);
        }
        findings
    }

    fn read_line(&mut self, line: Line, out: &mut Vec<Finding>) {
        let start = starts::classify(line.msg());
        let mut target = match start {
            None => self.route(&line),
            Some(_) => None,
        };
        // Every other report sees the line go by (tail windows, silent contexts, stalls).
        let mut index = 0;
        while index < self.reports.len() {
            let same_context = self.reports[index].key == line.caller;
            if Some(index) == target || !self.reports[index].observe_passing(&line, same_context) {
                index += 1;
                continue;
            }
            let report = self.reports.remove(index);
            target = target.map(|t| if t > index { t - 1 } else { t });
            self.emit(report, out);
        }
        let Some(start) = start else {
            match target {
                Some(i) => {
                    if self.reports[i].state == State::Tail {
                        self.remember(&line);
                    }
                    if self.reports[i].consume(&line) == Step::Done {
                        let report = self.reports.remove(i);
                        self.emit(report, out);
                    }
                }
                None => self.remember(&line),
            }
            return;
        };
        let own = self.foreground(line.caller);
        match (&start.role, own) {
            (Role::Panic { .. }, Some(i)) if self.reports[i].state == State::Panic => {
                // A panic while panicking: part of the first one.
                self.reports[i].consume(&line);
            }
            (Role::Panic { consequence }, Some(i))
                if *consequence || self.reports[i].state == State::Open =>
            {
                self.reports[i].attach_panic(&line);
            }
            (Role::Panic { consequence: true }, None) => {
                let waiting = self.reports.iter().rposition(|r| r.state == State::Tail);
                match waiting {
                    Some(i) => self.reports[i].attach_panic(&line),
                    None => self.begin(start, &line, out),
                }
            }
            (Role::DieHeader, Some(i)) if self.reports[i].takes_die_header() => {
                self.reports[i].take_die_header(&line);
            }
            _ => self.begin(start, &line, out),
        }
    }

    /// The report of a printk context that its next line continues: the open one, else the one
    /// panicking, else the one waiting for a panic. Without caller tags two oopses can be open at
    /// once (one interrupted the other); the line goes to the one it fits best.
    fn route(&self, line: &Line) -> Option<usize> {
        let in_context = |state: State| {
            self.reports
                .iter()
                .enumerate()
                .filter(move |(_, r)| r.key == line.caller && r.state == state)
                .map(|(i, _)| i)
        };
        let open: Vec<usize> = in_context(State::Open).collect();
        if open.len() > 1 {
            // Ties go to the later report, the one printing in the foreground.
            return open
                .into_iter()
                .max_by_key(|&i| (self.reports[i].fit(line.msg()), i));
        }
        open.first()
            .copied()
            .or_else(|| in_context(State::Panic).next_back())
            .or_else(|| in_context(State::Tail).next_back())
    }

    /// The report a first line of `key` relates to: the latest open, panicking or waiting one.
    fn foreground(&self, key: Option<Caller>) -> Option<usize> {
        [State::Open, State::Panic, State::Tail]
            .into_iter()
            .find_map(|state| {
                self.reports
                    .iter()
                    .rposition(|r| r.key == key && r.state == state)
            })
    }

    /// Starts a report. The reports its printk context had end, except that without caller
    /// tags an oops or WARNING still being printed is only interrupted (another CPU's oops
    /// interleaves with it), and that the latest finished oops is held back in case the new
    /// report is its collateral damage.
    fn begin(&mut self, start: starts::Start, line: &Line, out: &mut Vec<Finding>) {
        let key = line.caller;
        let interrupted = self
            .reports
            .iter()
            .rposition(|r| r.key == key && r.state == State::Open)
            .filter(|&i| {
                key.is_none()
                    && start.ending == Ending::EndTrace
                    && self.reports[i].can_be_interrupted()
            });
        let earlier = self
            .reports
            .iter()
            .rposition(|r| r.key == key && r.state == State::Tail && r.died());
        let mut held = None;
        let mut ended = Vec::new();
        for (i, report) in std::mem::take(&mut self.reports).into_iter().enumerate() {
            if report.key != key || Some(i) == interrupted {
                self.reports.push(report);
            } else if Some(i) == earlier {
                held = Some(report);
            } else {
                ended.push(report);
            }
        }
        for report in ended {
            self.emit(report, out);
        }
        // Keep chains one deep: the report held back is settled with the one it held.
        let held = held.map(|mut earlier| match earlier.take_predecessor() {
            Some(mut first) if earlier.after_oops() && first.died() => {
                first.absorb(earlier);
                first
            }
            Some(first) => {
                self.emit(first, out);
                earlier
            }
            None => earlier,
        });
        let before: Vec<Line> = self.recent_mut(key).drain(..).collect();
        let mut report = Report::begin(start, line, &before);
        if interrupted.is_some() {
            report.mark_interleaved();
        }
        if let Some(earlier) = held {
            report.hold_predecessor(earlier);
        }
        self.reports.push(report);
    }

    /// Turns a report into a finding, unless it is collateral damage of the oops before it
    /// (printed by a kernel already tainted `D`), which it then joins.
    fn emit(&mut self, mut report: Report, out: &mut Vec<Finding>) {
        if let Some(mut earlier) = report.take_predecessor() {
            if report.after_oops() && earlier.died() {
                earlier.absorb(report);
                report = earlier;
            } else {
                self.give_out(earlier, out);
            }
        }
        self.give_out(report, out);
    }

    /// Adds a finished report's finding, unless it repeats one already given.
    fn give_out(&mut self, report: Report, out: &mut Vec<Finding>) {
        let after_oops = report.after_oops();
        let mut finding = report.finish();
        // A kernel that has oopsed (taint `D`) may crash again anywhere, on any CPU, in code
        // that trips over what the first crash left: a report that names no module of its own
        // is blamed on what killed the kernel.
        if after_oops && finding.module.is_none() {
            finding.module.clone_from(&self.killed_by);
        }
        if finding.kind == Kind::Oops && finding.module.is_some() {
            self.killed_by.clone_from(&finding.module);
        }
        if finding.kind.repeats() && !finding.panicked {
            let key = (finding.kind, finding.title.clone(), finding.module.clone());
            if !self.reported.insert(key) {
                return;
            }
        }
        out.push(finding);
    }

    fn remember(&mut self, line: &Line) {
        let recent = self.recent_mut(line.caller);
        if recent.len() == RECENT_LINES {
            recent.pop_front();
        }
        recent.push_back(line.clone());
    }

    fn recent_mut(&mut self, key: Option<Caller>) -> &mut VecDeque<Line> {
        let index = match self.recent.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.recent.truncate(RECENT_CONTEXTS - 1);
                self.recent.insert(0, (key, VecDeque::new()));
                0
            }
        };
        if index != 0 {
            let entry = self.recent.remove(index);
            self.recent.insert(0, entry);
        }
        &mut self.recent[0].1
    }
}

/// Reads a whole log; the same as feeding it to a [`Triage`] and finishing.
pub fn triage(bytes: &[u8]) -> Vec<Finding> {
    let mut reader = Triage::new();
    let mut findings = reader.feed(bytes);
    findings.extend(reader.finish());
    findings
}
