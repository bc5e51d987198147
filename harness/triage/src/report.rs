//! One crash report being read: its lines, frames and clues, and how it becomes a [`Finding`].

use crate::console::{Caller, Line};
use crate::frames::{
    find_symbol, in_module_area, is_generic, is_module_load, is_module_unload, parse_bare_symbol,
    parse_frame, parse_rip, Frame, ModuleList,
};
use crate::starts::{Ending, Role, Start, Title};
use crate::{Finding, Kind};

impl Frame {
    /// The public frame of a named frame: the crash site or an entry of the call trace.
    fn public(&self) -> Option<crate::Frame> {
        let printed = self.printed.as_ref()?;
        Some(crate::Frame {
            function: printed.name.clone(),
            offset: printed.offset,
            size: printed.size,
            module: self.module.clone(),
            reliable: self.reliable,
            return_address: printed.return_address,
            file: None,
            line: None,
        })
    }
}

/// Consecutive ordinary lines after which an open report is considered over (its end was lost).
const MAX_ORDINARY_RUN: usize = 40;
/// Ordinary lines a finished report waits for a `Kernel panic` that would belong to it.
const TAIL_ORDINARY_LINES: usize = 20;
/// Lines of other printk contexts after which a report whose context fell silent is over.
const MAX_FOREIGN_RUN: usize = 300;
/// Lines kept in a report's text; the rest of a runaway report is dropped.
const MAX_REPORT_LINES: usize = 1500;
/// Frames a finding lists; kernel stacks are shallower, stall reports with every CPU's stack
/// are not.
const MAX_FINDING_FRAMES: usize = 100;

/// Where a report is in its life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum State {
    /// Lines still belong to it.
    Open,
    /// Finished; waiting whether a `Kernel panic - not syncing` follows.
    Tail,
    /// A panic belongs to it; reading the panic's own lines.
    Panic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum TraceState {
    NotStarted,
    Active,
    Ended,
}

/// What a line did to a report.
#[derive(Debug, PartialEq)]
pub(crate) enum Step {
    Continue,
    Done,
}

/// A crash report being read.
pub(crate) struct Report {
    pub(crate) key: Option<Caller>,
    pub(crate) kind: Kind,
    pub(crate) state: State,
    pub(crate) panicked: bool,
    title: Title,
    ending: Ending,
    expects_stack: bool,
    implicit_trace: bool,
    lines: Vec<String>,
    /// `lines.len()` after the last line that was not ordinary, to trim a runaway end.
    meaningful_len: usize,
    time_s: Option<f64>,
    /// Frames that name the crash site before any stack: the function in the first line, the
    /// first kernel `RIP:`, a workqueue's `last function:`.
    header_frames: Vec<Frame>,
    /// The first `RIP:` line, even when it is a bare address.
    rip: Option<Frame>,
    /// The first stack trace.
    trace: Vec<Frame>,
    trace_state: TraceState,
    /// `[mod]` tags of reliable frames anywhere in the report (allocation stacks, lock chains).
    other_tags: Vec<String>,
    /// Symbols the report names as related (ODEBUG hint, `Workqueue:`, `in-flight:`).
    hints: Vec<Frame>,
    modules: ModuleList,
    in_module_list: bool,
    fault_addr: Option<u64>,
    /// An unsymbolised frame in the module area: code of a module that is gone.
    raw_module_frame: bool,
    saw_frame: bool,
    die_header_seen: bool,
    /// `Read` / `Write` of a KASAN report.
    access: Option<&'static str>,
    ordinary_run: usize,
    /// Lines of other contexts since the last line of this one.
    foreign_run: usize,
    tail_ordinary: usize,
    tail_lines: Vec<String>,
    /// Forced corrupted: a consequence panic whose report was lost.
    lost_report: bool,
    /// The first `CPU:` line has been read.
    cpu_line_seen: bool,
    /// The kernel had already died once when this report began (taint flag `D`).
    after_oops: bool,
    /// The report just before this one in the same context, kept back in case this one turns
    /// out to be its collateral damage.
    predecessor: Option<Box<Report>>,
    /// Began in the middle of another report (no caller tags to tell their lines apart).
    interleaved: bool,
    /// Position in [`REGISTER_ORDER`] of the last register line of the current dump.
    last_register: Option<usize>,
}

/// The order of an x86_64 register dump; which report a register line continues when two are
/// printed at once.
const REGISTER_ORDER: [&str; 14] = [
    "RIP:", "Code:", "RSP:", "RAX:", "RDX:", "RBP:", "R10:", "R13:", "FS:", "CS:", "CR2:", "DR0:",
    "DR3:", "PKRU:",
];

impl Report {
    /// Starts a report at `line`, taking from `before` (recent lines of the same context) the
    /// ones that belong to it: from `------------[ cut here ]------------` on, or a `=====` rule.
    pub(crate) fn begin(start: Start, line: &Line, before: &[Line]) -> Report {
        let leading = leading_lines(before, &start);
        let mut report = Report {
            key: line.caller,
            kind: start.kind,
            state: State::Open,
            panicked: matches!(start.role, Role::Panic { .. }),
            title: start.title,
            ending: start.ending,
            expects_stack: start.expects_stack,
            implicit_trace: start.implicit_trace,
            lines: Vec::new(),
            meaningful_len: 0,
            time_s: leading.first().unwrap_or(line).time_s,
            header_frames: start.header.into_iter().collect(),
            rip: None,
            trace: Vec::new(),
            trace_state: TraceState::NotStarted,
            other_tags: Vec::new(),
            hints: Vec::new(),
            modules: ModuleList::default(),
            in_module_list: false,
            fault_addr: start.fault_addr,
            raw_module_frame: false,
            saw_frame: false,
            die_header_seen: start.role == Role::DieHeader,
            access: None,
            ordinary_run: 0,
            foreign_run: 0,
            tail_ordinary: 0,
            tail_lines: Vec::new(),
            lost_report: matches!(start.role, Role::Panic { consequence: true }),
            cpu_line_seen: false,
            after_oops: false,
            predecessor: None,
            interleaved: false,
            last_register: None,
        };
        for pre in leading {
            report.refine_from_message(pre.msg());
            report.push(&pre.text);
        }
        report.push(&line.text);
        if report.ending == Ending::Immediate {
            report.state = State::Tail;
        }
        report
    }

    /// Keeps `earlier`, a finished report of the same context that holds none itself, until
    /// this one tells whether it is collateral damage of it.
    pub(crate) fn hold_predecessor(&mut self, earlier: Report) {
        debug_assert!(earlier.predecessor.is_none(), "chains stay one deep");
        self.predecessor = Some(Box::new(earlier));
    }

    pub(crate) fn take_predecessor(&mut self) -> Option<Report> {
        self.predecessor.take().map(|p| *p)
    }

    /// Whether this report, or the one it holds back, is an oops: the kernel died.
    pub(crate) fn died(&self) -> bool {
        self.kind == Kind::Oops
            || self
                .predecessor
                .as_ref()
                .is_some_and(|p| p.kind == Kind::Oops)
    }

    /// Printed by a kernel that had already oopsed (`Tainted: … D …`).
    pub(crate) fn after_oops(&self) -> bool {
        self.after_oops
    }

    /// Folds a later report, collateral damage of this one, into it.
    pub(crate) fn absorb(&mut self, later: Report) {
        self.panicked |= later.panicked;
        for line in later.lines {
            self.push(&line);
        }
    }

    /// Marks a report that began while another was being printed.
    pub(crate) fn mark_interleaved(&mut self) {
        self.interleaved = true;
    }

    /// Whether another CPU's oops starting now interrupts this report rather than ending it:
    /// an oops or WARNING whose stack is not printed yet.
    pub(crate) fn can_be_interrupted(&self) -> bool {
        self.state == State::Open
            && self.ending == Ending::EndTrace
            && self.trace_state != TraceState::Ended
    }

    /// How well a line continues this report (0 not at all, 1 possibly, 2 surely), to share
    /// the lines of two interleaved reports.
    pub(crate) fn fit(&self, msg: &str) -> u8 {
        let header = [
            "#PF:",
            "PGD ",
            "Oops",
            "CPU: ",
            "Tainted: ",
            "Hardware name:",
        ];
        if header.iter().any(|h| msg.starts_with(h)) {
            return if self.cpu_line_seen { 0 } else { 2 };
        }
        if msg.starts_with("Modules linked in:") {
            return if self.modules == ModuleList::default() {
                2
            } else {
                0
            };
        }
        if let Some(position) = register_position(msg) {
            if position == 0 {
                return match self.trace_state {
                    TraceState::NotStarted if self.rip.is_none() && self.cpu_line_seen => 2,
                    TraceState::NotStarted if self.rip.is_some() => 0,
                    _ => 1,
                };
            }
            return match self.last_register {
                Some(last) if position > last && position <= last + 2 => 2,
                _ if self.trace_state == TraceState::Ended => 0,
                _ => 1,
            };
        }
        let trimmed = msg.trim();
        if trimmed == "Call Trace:" {
            return match (self.trace_state, self.last_register) {
                (TraceState::NotStarted, Some(last)) if last >= 10 => 2,
                (TraceState::NotStarted, _) => 1,
                _ => 0,
            };
        }
        if parse_frame(msg).is_some() || is_trace_marker(trimmed) {
            return u8::from(self.trace_state == TraceState::Active);
        }
        1
    }

    /// Whether an oops header line (`Oops: 0002 [#1] …`) continues this report.
    pub(crate) fn takes_die_header(&self) -> bool {
        self.kind == Kind::Oops
            && self.state == State::Open
            && !self.die_header_seen
            && self.trace_state == TraceState::NotStarted
            && self.rip.is_none()
    }

    pub(crate) fn take_die_header(&mut self, line: &Line) {
        self.die_header_seen = true;
        self.push(&line.text);
    }

    /// A `Kernel panic - not syncing` that belongs to this report.
    pub(crate) fn attach_panic(&mut self, line: &Line) {
        self.panicked = true;
        self.state = State::Panic;
        for tail_line in std::mem::take(&mut self.tail_lines) {
            self.push(&tail_line);
        }
        self.push(&line.text);
    }

    /// Reads a line of this report's printk context.
    pub(crate) fn consume(&mut self, line: &Line) -> Step {
        self.foreign_run = 0;
        let msg = line.msg();
        if msg.starts_with("---[ end Kernel panic") {
            self.panicked = true;
            self.push(&line.text);
            return Step::Done;
        }
        let ordinary = !is_report_line(msg);
        match self.state {
            State::Open => self.consume_open(line, ordinary),
            State::Tail => {
                if ordinary {
                    self.tail_ordinary += 1;
                    if self.tail_ordinary > TAIL_ORDINARY_LINES {
                        return Step::Done;
                    }
                }
                if self.tail_lines.len() < MAX_REPORT_LINES {
                    self.tail_lines.push(line.text.clone());
                }
                Step::Continue
            }
            State::Panic => {
                if ordinary {
                    return Step::Done;
                }
                self.push(&line.text);
                Step::Continue
            }
        }
    }

    /// A line that went to another report or context. Returns true when this report is over.
    pub(crate) fn observe_passing(&mut self, line: &Line, same_context: bool) -> bool {
        let ordinary = !is_report_line(line.msg());
        self.foreign_run += 1;
        if self.foreign_run > MAX_FOREIGN_RUN {
            // Its context fell silent (a killed task): what was printed is all there will be.
            return true;
        }
        match self.state {
            State::Tail if ordinary => {
                self.tail_ordinary += 1;
                self.tail_ordinary > TAIL_ORDINARY_LINES
            }
            // Stall detectors make other CPUs print their stacks in their own contexts.
            State::Open
                if !same_context
                    && !ordinary
                    && matches!(self.kind, Kind::RcuStall | Kind::HardLockup) =>
            {
                self.consume_open(line, false);
                false
            }
            _ => false,
        }
    }

    fn consume_open(&mut self, line: &Line, ordinary: bool) -> Step {
        let msg = line.msg();
        if msg.starts_with("---[ end trace") || (self.ending == Ending::Rule && is_rule_line(msg)) {
            self.push(&line.text);
            self.state = State::Tail;
            return Step::Continue;
        }
        self.observe(msg);
        if ordinary {
            self.ordinary_run += 1;
            let over = match self.ending {
                Ending::AfterTrace => self.trace_state == TraceState::Ended,
                Ending::Ordinary => true,
                _ => false,
            };
            if over || self.ordinary_run > MAX_ORDINARY_RUN {
                self.lines.truncate(self.meaningful_len);
                self.state = State::Tail;
                self.tail_ordinary = 1;
                return Step::Continue;
            }
            if self.lines.len() < MAX_REPORT_LINES {
                self.lines.push(line.text.clone());
            }
        } else {
            self.ordinary_run = 0;
            self.push(&line.text);
        }
        Step::Continue
    }

    fn push(&mut self, text: &str) {
        if self.lines.len() < MAX_REPORT_LINES {
            self.lines.push(text.to_string());
        }
        self.meaningful_len = self.lines.len();
    }

    /// Messages printed just before the first line of a WARNING or BUG (after `cut here`) that
    /// say what kind of bug it is.
    fn refine_from_message(&mut self, msg: &str) {
        let Title::InFunc(prefix) = &mut self.title else {
            return;
        };
        if !matches!(self.kind, Kind::Warning | Kind::Oops) {
            return;
        }
        if msg.starts_with("refcount_t: ") {
            *prefix = "refcount bug".into();
        } else if let Some(rest) = msg.strip_prefix("ODEBUG: ") {
            *prefix = "WARNING: ODEBUG bug".into();
            if let Some(hint) = rest.split("hint: ").nth(1).and_then(parse_bare_symbol) {
                self.hints.push(hint);
            }
        } else if msg.starts_with("list_add corruption") || msg.starts_with("list_del corruption") {
            *prefix = "BUG: corrupted list".into();
        } else if msg.starts_with("DEBUG_LOCKS_WARN_ON(") {
            *prefix = "WARNING: locking bug".into();
        }
    }

    /// Collects frames and clues from a line of the open report.
    fn observe(&mut self, msg: &str) {
        if let Some(rest) = msg.strip_prefix("Modules linked in:") {
            self.modules.read(rest);
            self.in_module_list = true;
            return;
        }
        if self.in_module_list {
            self.in_module_list = false;
            if self.modules.read(msg) {
                self.in_module_list = true;
                return;
            }
        }
        if !self.cpu_line_seen && msg.starts_with("CPU: ") {
            self.cpu_line_seen = true;
            self.after_oops = msg
                .split_once("Tainted: ")
                .is_some_and(|(_, flags)| died_before(flags));
        } else if msg.starts_with("Tainted: [") && msg.contains("[D]=DIE") {
            self.after_oops = true;
        }
        let trimmed = msg.trim();
        if trimmed == "Call Trace:" || trimmed == "Call trace:" {
            if self.trace_state == TraceState::NotStarted {
                self.trace_state = TraceState::Active;
            }
            return;
        }
        if is_trace_marker(trimmed) {
            return;
        }
        if let Some(position) = register_position(msg) {
            self.last_register = Some(position);
        }
        if let Some(rip) = parse_rip(msg) {
            self.saw_frame = true;
            self.note_raw(&rip);
            match self.trace_state {
                TraceState::NotStarted if self.rip.is_none() => {
                    self.rip = Some(rip.clone());
                    self.header_frames.push(rip);
                }
                TraceState::Active => self.trace.push(rip),
                _ => {}
            }
            return;
        }
        if let Some(frame) = parse_frame(msg) {
            self.saw_frame = true;
            self.note_raw(&frame);
            if let (true, Some(module)) = (frame.reliable, &frame.module) {
                self.other_tags.push(module.clone());
            }
            match self.trace_state {
                TraceState::NotStarted if self.implicit_trace => {
                    self.trace_state = TraceState::Active;
                    self.trace.push(frame);
                }
                TraceState::Active => self.trace.push(frame),
                _ => {}
            }
            return;
        }
        if self.trace_state == TraceState::Active
            && !trimmed.is_empty()
            && !is_register_line(trimmed)
        {
            self.trace_state = TraceState::Ended;
        }
        self.observe_clue(trimmed);
    }

    fn note_raw(&mut self, frame: &Frame) {
        if frame.func.is_none() && frame.addr.is_some_and(in_module_area) {
            self.raw_module_frame = true;
        }
    }

    /// Lines that name functions or modules outside any stack.
    fn observe_clue(&mut self, trimmed: &str) {
        if let Some(rest) = trimmed.strip_prefix("last function: ") {
            // The work function that returned with a lock held or in atomic context.
            self.header_frames.extend(parse_bare_symbol(rest));
        } else if let Some(rest) = trimmed.strip_prefix("Workqueue: ") {
            let function = rest.split_once(' ').map(|(_, f)| f);
            self.hints.extend(function.and_then(parse_bare_symbol));
        } else if let Some(rest) = trimmed.strip_prefix("in-flight: ") {
            for item in rest.split(',') {
                let item = item.trim();
                let function = item.split_once(':').map_or(item, |(_, f)| f);
                self.hints.extend(parse_bare_symbol(function));
            }
        } else if self.access.is_none() && self.kind == Kind::Kasan {
            if trimmed.starts_with("Read of size") {
                self.access = Some("Read");
            } else if trimmed.starts_with("Write of size") {
                self.access = Some("Write");
            }
        } else if trimmed.starts_with("Preemption disabled at:") || trimmed.starts_with("ODEBUG:") {
            self.hints.extend(find_symbol(trimmed));
        }
    }

    /// The frames a title may name, in order of preference.
    fn candidates(&self) -> Vec<&Frame> {
        let mut trace: &[Frame] = &self.trace;
        if self.kind == Kind::RcuStall {
            // When the detector dumps its own stack, its frames run up to the timer interrupt
            // and what was running on the CPU comes after it. (A stack taken by NMI from
            // another CPU has no detector frames: its interrupt part is what was running.)
            if let Some(pos) = trace.iter().rposition(is_interrupt_entry) {
                let detector = trace[..pos]
                    .iter()
                    .any(|f| f.func.as_deref().is_some_and(is_stall_detector));
                if detector && pos + 1 < trace.len() {
                    trace = &trace[pos + 1..];
                }
            }
        }
        let named = |f: &&Frame| f.func.as_deref().is_some_and(|func| !is_generic(func));
        let reliable: Vec<&Frame> = self
            .header_frames
            .iter()
            .chain(trace)
            .filter(|f| f.reliable)
            .filter(named)
            .collect();
        if !reliable.is_empty() || !self.jumped_into_freed_code() {
            return reliable;
        }
        // Execution jumped into freed module text: the unwinder finds no reliable frame, but the
        // `?` return addresses left on the stack name the code that made the call
        // (`call_timer_fn`, `process_one_work`, `rcu_do_batch`, `kthread`).
        trace.iter().filter(named).collect()
    }

    /// The instruction pointer is a bare address in the module area: code that was unloaded.
    fn jumped_into_freed_code(&self) -> bool {
        self.rip
            .as_ref()
            .is_some_and(|r| r.func.is_none() && r.addr.is_some_and(in_module_area))
    }

    fn title_prefix(&self) -> Option<String> {
        let Title::InFunc(prefix) = &self.title else {
            return None;
        };
        match self.access {
            // Frees have no access direction (`double-free`, `invalid-free`).
            Some(access)
                if !prefix.ends_with("double-free") && !prefix.ends_with("invalid-free") =>
            {
                Some(format!("{prefix} {access}"))
            }
            _ => Some(prefix.clone()),
        }
    }

    /// The module to blame, by the rules in the crate documentation.
    fn module(&self, guilty: Option<&Frame>) -> Option<String> {
        let tagged = |f: &&Frame| f.reliable && f.module.is_some();
        let header = self.header_frames.iter().find(tagged);
        let freed_code = self.jumped_into_freed_code()
            || self.fault_addr.is_some_and(in_module_area)
            || self.raw_module_frame;
        let freed_module = self.modules.last_unloaded.as_ref().filter(|_| freed_code);
        let in_trace = self.trace.iter().find(tagged);
        let lifecycle = || {
            let funcs = || self.trace.iter().filter_map(|f| f.func.as_deref());
            if funcs().any(is_module_load) {
                self.modules.marked('+')
            } else if funcs().any(is_module_unload) {
                self.modules.marked('-')
            } else {
                None
            }
        };
        // Code the kernel could not symbolise (`RIP: 0010:0x0`, a call through a stale
        // pointer) is in no loaded module: when nothing names the culprit better, the module
        // unloaded last left that pointer behind.
        let unsymbolised_rip = self.rip.as_ref().is_some_and(|r| r.func.is_none());
        let stale_pointer = self
            .modules
            .last_unloaded
            .as_ref()
            .filter(|_| unsymbolised_rip);
        header
            .and_then(|f| f.module.clone())
            .or_else(|| freed_module.cloned())
            .or_else(|| guilty.and_then(|f| f.module.clone()))
            .or_else(|| stale_pointer.cloned())
            .or_else(|| in_trace.and_then(|f| f.module.clone()))
            .or_else(|| self.hints.iter().find_map(|f| f.module.clone()))
            .or_else(|| lifecycle().map(str::to_string))
            .or_else(|| self.other_tags.first().cloned())
    }

    /// The finished finding.
    pub(crate) fn finish(self) -> Finding {
        let candidates = self.candidates();
        let guilty = candidates.first().copied();
        let func = |f: &Frame| f.func.clone().unwrap_or_default();
        let (title, alt_titles) = match self.title_prefix() {
            None => match &self.title {
                Title::Fixed(title) => (title.clone(), Vec::new()),
                Title::InFunc(_) => unreachable!("title_prefix is None only for fixed titles"),
            },
            Some(prefix) => {
                let title = match guilty {
                    Some(frame) => format!("{prefix} in {}", func(frame)),
                    None => prefix.clone(),
                };
                // The next candidate frames, and other spellings of the title itself.
                let mut alt: Vec<String> = candidates
                    .iter()
                    .skip(1)
                    .take(2)
                    .map(|frame| format!("{prefix} in {}", func(frame)))
                    .collect();
                for alias in aliases(&prefix) {
                    alt.push(match guilty {
                        Some(frame) => format!("{alias} in {}", func(frame)),
                        None => alias,
                    });
                }
                alt.retain(|t| *t != title);
                alt.dedup();
                (title, alt)
            }
        };
        let module = self.module(guilty);
        let frames = self
            .rip
            .iter()
            .chain(&self.trace)
            .filter_map(Frame::public)
            .take(MAX_FINDING_FRAMES)
            .collect();
        Finding {
            kind: self.kind,
            title,
            alt_titles,
            module,
            corrupted: self.lost_report
                || self.interleaved
                || (self.expects_stack && !self.saw_frame),
            panicked: self.panicked,
            time_s: self.time_s,
            guilty_frame: guilty.map(func),
            report: self.lines.join("\n"),
            frames,
            located: Vec::new(),
        }
    }
}

/// Other spellings of a title prefix (older kernels, KASAN's naming before 6.5).
fn aliases(prefix: &str) -> Vec<String> {
    let pairs = [
        (
            "BUG: unable to handle page fault",
            "BUG: unable to handle kernel paging request",
        ),
        (
            "BUG: kernel NULL pointer dereference",
            "BUG: unable to handle kernel NULL pointer dereference",
        ),
        ("KASAN: slab-use-after-free", "KASAN: use-after-free"),
    ];
    let mut out = Vec::new();
    for (a, b) in pairs {
        if let Some(rest) = prefix.strip_prefix(a) {
            out.push(format!("{b}{rest}"));
        } else if let Some(rest) = prefix.strip_prefix(b) {
            if !rest.starts_with('-') {
                out.push(format!("{a}{rest}"));
            }
        }
    }
    out
}

/// The lines just before a first line that belong to its report.
fn leading_lines<'a>(before: &'a [Line], start: &Start) -> &'a [Line] {
    let cut_here = before
        .iter()
        .rposition(|l| l.msg().contains("[ cut here ]"));
    if let (Some(index), Kind::Warning | Kind::Oops | Kind::Bug | Kind::Ubsan) =
        (cut_here, start.kind)
    {
        return &before[index..];
    }
    match before.last() {
        Some(last)
            if is_rule_line(last.msg())
                || last
                    .msg()
                    .starts_with("kernel tried to execute NX-protected page")
                || last.msg().starts_with("unable to execute userspace code") =>
        {
            &before[before.len() - 1..]
        }
        _ => &[],
    }
}

/// Where a register dump line stands in [`REGISTER_ORDER`] (kernel-mode `RIP:` only).
fn register_position(msg: &str) -> Option<usize> {
    if msg.starts_with("RIP: 0033:") {
        return None;
    }
    REGISTER_ORDER.iter().position(|r| msg.starts_with(r))
}

/// Do the taint flags of a `CPU:` line (`G      D W  OE      6.12.0 …`) hold `D`, an earlier
/// oops? The flags are the capital letters before the kernel release.
fn died_before(flags: &str) -> bool {
    flags
        .split_whitespace()
        .take_while(|word| word.bytes().all(|b| b.is_ascii_uppercase()))
        .any(|word| word.contains('D'))
}

/// Frames of the RCU stall detector printing its own CPU's stack.
fn is_stall_detector(func: &str) -> bool {
    func.starts_with("rcu_")
        || func.starts_with("print_cpu_stall")
        || matches!(
            func,
            "check_cpu_stall" | "dump_cpu_task" | "nmi_trigger_cpumask_backtrace"
        )
}

fn is_interrupt_entry(frame: &Frame) -> bool {
    frame.func.as_deref().is_some_and(|f| {
        f.starts_with("asm_sysvec_")
            || f.starts_with("sysvec_apic_timer")
            || f == "apic_timer_interrupt"
            || f == "smp_apic_timer_interrupt"
    })
}

/// `<IRQ>`, `</TASK>`, … between the frames of a stack trace.
fn is_trace_marker(trimmed: &str) -> bool {
    trimmed.len() <= 12
        && ((trimmed.starts_with("</") || trimmed.starts_with('<')) && trimmed.ends_with('>'))
        && trimmed
            .trim_start_matches(['<', '/'])
            .trim_end_matches('>')
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '#')
}

/// Register dump lines, which a trace interleaves with its frames.
fn is_register_line(trimmed: &str) -> bool {
    const REGISTERS: [&str; 24] = [
        "RIP:", "RSP:", "RAX:", "RBX:", "RCX:", "RDX:", "RSI:", "RDI:", "RBP:", "R08:", "R09:",
        "R10:", "R11:", "R12:", "R13:", "R14:", "R15:", "FS:", "GS:", "CS:", "CR2:", "DR0:",
        "DR3:", "Code:",
    ];
    REGISTERS.iter().any(|r| trimmed.starts_with(r))
        || trimmed.starts_with("PKRU:")
        || trimmed.starts_with("DR6:")
}

/// A line of `=` (sanitizer reports open and close with one).
pub(crate) fn is_rule_line(msg: &str) -> bool {
    let trimmed = msg.trim();
    trimmed.len() >= 20 && trimmed.bytes().all(|b| b == b'=')
}

/// Is this a line crash reports print (frames, registers, lock lists, KASAN shadow dumps, …)
/// rather than ordinary console output? Ordinary lines are what tell a report without an end
/// marker that it is over.
pub(crate) fn is_report_line(msg: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "Call Trace:",
        "Call trace:",
        "Modules linked in:",
        "---[ ",
        "CPU: ",
        "Hardware name:",
        "Workqueue:",
        "#PF:",
        "PGD ",
        "Oops",
        "Kernel Offset:",
        "Tainted:",
        "note: ",
        "Preemption disabled at:",
        "irq event stamp:",
        "hardirqs last",
        "softirqs last",
        "[<",
        "NMI backtrace for cpu",
        "Sending NMI from CPU",
        "Showing all locks held",
        "Showing busy workqueues",
        "Showing backtraces",
        "workqueue ",
        "pool ",
        "task:",
        "\"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\"",
        "rcu: ",
        "Allocated by task",
        "Freed by task",
        "Last potentially related",
        "Second to last potentially related",
        "The buggy address",
        "page:",
        "page_type:",
        "flags:",
        "raw:",
        "head:",
        "memcg:",
        "page dumped because",
        "page_owner",
        "Memory state around",
        ">",
        "=",
        "-",
        "kfence-#",
        "allocated by task",
        "freed by task",
        "Use-after-free",
        "Out-of-bounds",
        "Invalid free",
        "Invalid read",
        "Invalid write",
        "Corrupted memory",
        "index ",
        "shift exponent",
        "left shift",
        "load of value",
        "signed integer overflow",
        "member access",
        "negation of",
        "division ",
        "Read of size",
        "Write of size",
        "other info that might help",
        "Possible unsafe locking scenario",
        "Possible interrupt unsafe locking scenario",
        "*** DEADLOCK ***",
        "which lock already depends",
        "the existing dependency chain",
        "but task is already holding",
        "is trying to acquire",
        "stack backtrace:",
        "lock(",
        "no locks held",
        "Chain exists of",
        "in_atomic():",
        "preempt_count:",
        "RCU nest depth:",
        "Kernel panic",
        "Rebooting in",
        "Shutting down cpus",
        "ODEBUG:",
        "refcount_t:",
        "list_add corruption",
        "list_del corruption",
        "The code is fine",
        "you didn't initialize",
        "turning off the locking correctness validator",
        "INFO: lockdep is turned off",
        "last function:",
        "caller is",
        "kernel tried to execute",
        "unable to execute userspace",
        "ref_tracker:",
        "Dumping ftrace",
        "but there are no more locks",
        "inconsistent {",
        "other info",
        "read to ",
        "write to ",
        "value changed:",
        "Reported by Kernel Concurrency Sanitizer",
        "DEBUG_LOCKS_WARN_ON",
        "MMIO Stale Data",
        "BUG: KASAN",
        "KASAN: ",
        "Disabling lock debugging",
    ];
    if msg.trim().is_empty() || msg.starts_with(char::is_whitespace) {
        return true;
    }
    if PREFIXES.iter().any(|p| msg.starts_with(p))
        || is_register_line(msg)
        || msg.contains("[ cut here ]")
    {
        return true;
    }
    // `2 locks held by kworker/0:1/23:`, `1 lock held by rmmod/123:`
    let mut words = msg.split(' ');
    words
        .next()
        .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        && matches!(words.next(), Some("lock" | "locks"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_markers_are_recognised() {
        for marker in [
            "<IRQ>",
            "</IRQ>",
            "<TASK>",
            "</TASK>",
            "<NMI>",
            "<#DF>",
            "</SOFTIRQ>",
        ] {
            assert!(is_trace_marker(marker), "{marker}");
        }
        assert!(!is_trace_marker("<foo bar>"));
        assert!(!is_trace_marker("Call Trace:"));
    }

    #[test]
    fn report_lines_and_ordinary_lines_are_told_apart() {
        for line in [
            " __run_timers+0x1a2/0x2c0",
            "RAX: 0000000000000000 RBX: ffff888003a4c000 RCX: 0000000000000000",
            "Code: Unable to access opcode bytes at 0xffffffffc0a1b016.",
            "2 locks held by kworker/0:1/23:",
            "",
        ] {
            assert!(is_report_line(line), "{line:?}");
        }
        for line in [
            "race_timer_buggy: heartbeat every 10 ms",
            "random: crng init done",
            "EXT4-fs (vda): mounted filesystem",
            "RPC: Registered named UNIX socket transport module.",
        ] {
            assert!(!is_report_line(line), "{line:?}");
        }
    }

    #[test]
    fn the_die_taint_flag_is_read_from_the_flags_only() {
        assert!(died_before(
            "G      D W  OE      6.12.117+deb12-amd64 #1  Debian 6.12.117-1~deb12u1"
        ));
        assert!(!died_before(
            "G           OE      6.1.0-54-amd64 #1  Debian 6.1.0-54"
        ));
        assert!(!died_before(
            "G           OE      6.1.0-54-amd64 #1 DEBIAN D"
        ));
    }

    #[test]
    fn rule_lines_need_twenty_equals() {
        assert!(is_rule_line(
            "=================================================================="
        ));
        assert!(!is_rule_line("==="));
        assert!(!is_rule_line(
            "------------------------------------------------------"
        ));
    }
}
