//! The first line of every crash report the kernel prints, and what it tells about the report:
//! kind, title, how the report ends, whether it carries a stack.

use std::sync::LazyLock;

use regex::{Captures, Regex, RegexSet};

use crate::frames::{find_symbol, Frame};
use crate::Kind;

/// How a title is completed once the report is read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Title {
    /// `PREFIX in FUNC`, FUNC being the guilty frame (just `PREFIX` when there is none).
    InFunc(String),
    /// A complete title.
    Fixed(String),
}

/// What ends a report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Ending {
    /// `---[ end trace … ]---` (oopses, WARNINGs).
    EndTrace,
    /// A line of `=` (KASAN, KFENCE, KCSAN, UBSAN), or `---[ end trace`.
    Rule,
    /// The first ordinary line once the stack trace is over (lockdep, hung task, stalls, …).
    AfterTrace,
    /// The first ordinary line (reports that may have no stack at all).
    Ordinary,
    /// The report is its first line.
    Immediate,
}

/// What a first line is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Role {
    /// It starts a report.
    Report,
    /// An oops header (`Oops: 0010 [#1]`, `invalid opcode: 0000 [#1]`, …): part of the report
    /// that a line like `kernel BUG at …` or `BUG: unable to handle …` just began, or else the
    /// start of one.
    DieHeader,
    /// `Kernel panic - not syncing: MESSAGE`.
    Panic {
        /// The panic is the consequence of a report just printed (`Fatal exception`,
        /// `panic_on_warn set`, `hung_task: blocked tasks`, …) rather than a crash of its own.
        consequence: bool,
    },
}

/// A recognised first line.
#[derive(Clone, Debug)]
pub(crate) struct Start {
    pub(crate) kind: Kind,
    pub(crate) title: Title,
    pub(crate) ending: Ending,
    pub(crate) role: Role,
    /// A report without any frame is corrupted.
    pub(crate) expects_stack: bool,
    /// The stack follows without a `Call Trace:` line (KFENCE, KCSAN, kmemleak).
    pub(crate) implicit_trace: bool,
    /// A function the first line names (`WARNING: … at file:line FUNC`, `BUG: KASAN: … in FUNC`).
    pub(crate) header: Option<Frame>,
    /// The faulting address, for page faults.
    pub(crate) fault_addr: Option<u64>,
}

impl Start {
    fn new(kind: Kind, title: Title, ending: Ending) -> Start {
        Start {
            kind,
            title,
            ending,
            role: Role::Report,
            expects_stack: true,
            implicit_trace: false,
            header: None,
            fault_addr: None,
        }
    }

    fn func(kind: Kind, prefix: &str, ending: Ending) -> Start {
        Start::new(kind, Title::InFunc(prefix.to_string()), ending)
    }

    fn without_stack(mut self) -> Start {
        self.expects_stack = false;
        self
    }

    fn implicit_trace(mut self) -> Start {
        self.implicit_trace = true;
        self
    }

    fn with_header(mut self, text: Option<&str>) -> Start {
        self.header = text.and_then(find_symbol);
        self
    }

    fn die_header(mut self) -> Start {
        self.role = Role::DieHeader;
        self
    }
}

type Build = fn(&Captures) -> Start;

/// Most specific first: the first rule that matches wins.
static RULES: LazyLock<Vec<(&'static str, Build)>> = LazyLock::new(|| {
    use Ending::*;
    use Kind::*;
    let rules: Vec<(&'static str, Build)> = vec![
        (r"^Kernel panic - not syncing: ?(.*)$", |c| {
            let message = &c[1];
            let mut start = Start::new(
                Panic,
                Title::Fixed(format!("kernel panic: {}", normalize_message(message))),
                AfterTrace,
            )
            .without_stack();
            start.role = Role::Panic {
                consequence: CONSEQUENCE.is_match(message),
            };
            start.header = find_symbol(message);
            start
        }),
        // Oops headers; on 6.12 they gain an `Oops: ` prefix.
        (r"^(?:Oops: )*general protection fault\b", |_| {
            Start::func(Oops, "general protection fault", EndTrace).die_header()
        }),
        (r"^(?:Oops: )*divide error: [0-9a-f]{4}\b", |_| {
            Start::func(Oops, "divide error", EndTrace).die_header()
        }),
        (r"^(?:Oops: )*invalid opcode: [0-9a-f]{4}\b", |_| {
            Start::func(Oops, "invalid opcode", EndTrace).die_header()
        }),
        (r"^(?:Oops: )*stack segment: [0-9a-f]{4}\b", |_| {
            Start::func(Oops, "stack segment fault", EndTrace).die_header()
        }),
        (
            r"^(?:Oops: )*(?:double fault|kernel stack overflow \(double-fault\)): [0-9a-f]{4}\b",
            |_| Start::func(Oops, "double fault", EndTrace).die_header(),
        ),
        (r"^Oops: (?:Oops: )?[0-9a-f]{4} \[#\d+\]", |_| {
            Start::func(Oops, "Oops", EndTrace).die_header()
        }),
        // Any other trap that kills the kernel (`Oops: int3: 0000 [#1]`, `bounds`, `overflow`…).
        (
            r"^(?:Oops: )+([a-z][a-z0-9 ]*[a-z0-9]): [0-9a-f]{4} \[#\d+\]",
            |c| Start::func(Oops, &c[1], EndTrace).die_header(),
        ),
        // The lines that open an oops.
        (
            r"^BUG: unable to handle (?:page fault for address|kernel paging request at):? (?:0x)?([0-9a-fA-F]+)",
            |c| {
                let mut s = Start::func(Oops, "BUG: unable to handle page fault", EndTrace);
                s.fault_addr = u64::from_str_radix(&c[1], 16).ok();
                s
            },
        ),
        (
            r"^BUG: (?:unable to handle )?kernel NULL pointer dereference(?:, address:| at) (?:0x)?([0-9a-fA-F]+)",
            |c| {
                let mut s = Start::func(Oops, "BUG: kernel NULL pointer dereference", EndTrace);
                s.fault_addr = u64::from_str_radix(&c[1], 16).ok();
                s
            },
        ),
        (r"^BUG: stack guard page was hit at", |_| {
            Start::func(Oops, "BUG: stack guard page was hit", EndTrace)
        }),
        (r"^kernel BUG at ([^:\s]+):\d+!", |c| {
            let prefix = if c[1].ends_with("list_debug.c") {
                "BUG: corrupted list"
            } else {
                "kernel BUG"
            };
            Start::func(Oops, prefix, EndTrace)
        }),
        (r"^(?:traps: )?PANIC: double fault", |_| {
            Start::func(Oops, "double fault", EndTrace)
        }),
        // Sanitizers.
        (r"^BUG: KASAN: ([\w-]+(?: or [\w-]+)?)(?: in (.*))?", |c| {
            Start::func(Kasan, &format!("KASAN: {}", &c[1]), Rule)
                .with_header(c.get(2).map(|m| m.as_str()))
        }),
        (r"^BUG: KFENCE: (.+?)(?: in (.*))?$", |c| {
            Start::func(Kfence, &format!("KFENCE: {}", &c[1]), Rule)
                .with_header(c.get(2).map(|m| m.as_str()))
                .implicit_trace()
        }),
        (r"^BUG: KCSAN: (.*)$", |c| {
            Start::new(
                Kcsan,
                Title::Fixed(format!("KCSAN: {}", normalize_message(&c[1]))),
                Rule,
            )
            .implicit_trace()
        }),
        (r"^UBSAN: (.+?) in \S+", |c| {
            Start::func(Ubsan, &format!("UBSAN: {}", &c[1]), Rule)
        }),
        // Lockdep.
        (
            r"^WARNING: (?:possible circular locking dependency|possible recursive locking|possible irq lock inversion dependency) detected",
            |_| Start::func(Lockdep, "possible deadlock", AfterTrace),
        ),
        (
            r"^WARNING: \w+-(?:READ-)?safe -> \w+-(?:READ-)?unsafe lock order detected",
            |_| Start::func(Lockdep, "possible deadlock", AfterTrace),
        ),
        (r"^WARNING: inconsistent lock state", |_| {
            Start::func(Lockdep, "inconsistent lock state", AfterTrace)
        }),
        (r"^WARNING: bad unlock balance detected", |_| {
            Start::func(Lockdep, "WARNING: bad unlock balance", AfterTrace)
        }),
        (r"^(?:WARNING|BUG): held lock freed", |_| {
            Start::func(Lockdep, "WARNING: held lock freed", AfterTrace)
        }),
        (r"^WARNING: lock held when returning to user space", |_| {
            Start::func(
                Lockdep,
                "WARNING: lock held when returning to user space",
                AfterTrace,
            )
        }),
        (r"^WARNING: suspicious RCU usage", |_| {
            Start::func(Lockdep, "WARNING: suspicious RCU usage", AfterTrace)
        }),
        (r"^WARNING: Nested lock was not taken", |_| {
            Start::func(Lockdep, "WARNING: nested lock was not taken", AfterTrace)
        }),
        (r"^INFO: trying to register non-static key", |_| {
            Start::func(
                Lockdep,
                "INFO: trying to register non-static key",
                AfterTrace,
            )
        }),
        (r"^BUG: (MAX_\w+ too low!)", |c| {
            Start::new(Lockdep, Title::Fixed(format!("BUG: {}", &c[1])), AfterTrace)
        }),
        // WARN().
        (r"^WARNING: (?:CPU: \d+ PID: \d+ )?at (.*)$", |c| {
            Start::func(Warning, "WARNING", EndTrace).with_header(Some(&c[1]))
        }),
        // Stalls and lockups.
        (r"^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck", |_| {
            Start::func(SoftLockup, "BUG: soft lockup", AfterTrace)
        }),
        (
            r"^(?:(?:NMI )?watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+",
            |_| Start::func(HardLockup, "BUG: hard lockup", AfterTrace),
        ),
        (
            r"^(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stall",
            |_| Start::func(RcuStall, "INFO: rcu detected stall", AfterTrace),
        ),
        (
            r"^INFO: task \S.*:\d+ blocked for more than \d+ seconds",
            |_| Start::func(HungTask, "INFO: task hung", AfterTrace),
        ),
        (r"^BUG: workqueue lockup\b", |_| {
            Start::new(
                WorkqueueLockup,
                Title::Fixed("BUG: workqueue lockup".into()),
                Ordinary,
            )
            .without_stack()
        }),
        // Leaks.
        (
            r"^(?:kmemleak: )?unreferenced object 0x[0-9a-fA-F]+ \(size \d+\):",
            |_| Start::func(Kmemleak, "memory leak", AfterTrace).implicit_trace(),
        ),
        (
            r"^unregister_netdevice: waiting for \S+ to become free",
            |_| {
                Start::new(
                    NetdevRefLeak,
                    Title::Fixed("unregister_netdevice: waiting for DEV to become free".into()),
                    Ordinary,
                )
                .without_stack()
            },
        ),
        // Page state.
        (r"^BUG: Bad page (state|map)\b", |c| {
            Start::func(BadPage, &format!("BUG: Bad page {}", &c[1]), AfterTrace)
        }),
        (r"^BUG: Bad rss-counter state", |_| {
            Start::new(
                BadPage,
                Title::Fixed("BUG: Bad rss-counter state".into()),
                Immediate,
            )
            .without_stack()
        }),
        // Other BUG: reports after which the kernel goes on.
        (r"^BUG: scheduling while atomic", |_| {
            Start::func(Bug, "BUG: scheduling while atomic", AfterTrace)
        }),
        (
            r"^BUG: sleeping function called from invalid context",
            |_| {
                Start::func(
                    Bug,
                    "BUG: sleeping function called from invalid context",
                    AfterTrace,
                )
            },
        ),
        (r"^BUG: using ([\w()]+) in preemptible", |c| {
            Start::func(
                Bug,
                &format!("BUG: using {} in preemptible code", &c[1]),
                AfterTrace,
            )
        }),
        (
            r"^BUG: (spinlock|rwlock|seqlock) ([a-z ]+?) on CPU#\d+",
            |c| Start::func(Bug, &format!("BUG: {} {}", &c[1], &c[2]), AfterTrace),
        ),
        (
            r"^BUG: workqueue leaked (?:lock or atomic|atomic, lock or RCU)",
            |_| Start::func(Bug, "BUG: workqueue leaked lock or atomic", AfterTrace),
        ),
        (r"^BUG: (.+)$", |c| {
            Start::new(
                Bug,
                Title::Fixed(format!("BUG: {}", normalize_message(&c[1]))),
                Ordinary,
            )
            .without_stack()
        }),
    ];
    rules
});

static RULE_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new(RULES.iter().map(|(pattern, _)| *pattern)).expect("valid regexes")
});
static RULE_REGEXES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    RULES
        .iter()
        .map(|(pattern, _)| Regex::new(pattern).expect("valid regex"))
        .collect()
});

/// Panics that follow from a report just printed rather than being crashes of their own.
static CONSEQUENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:Fatal exception|.*panic_on_warn set|.*panic_on_oops|hung_task: blocked tasks|",
        r"softlockup: hung tasks|hardlockup: hung tasks|Hard LOCKUP|Machine halted|RCU Stall|",
        r"rcu_stall|Attempted to kill init|Attempted to kill the idle task|Aiee, killing interrupt handler|",
        r"Fatal hardware error|kmemleak|KASAN|KFENCE|UBSAN)"
    ))
    .expect("valid regex")
});

/// Recognises the first line of a report (the message, printk prefixes removed).
pub(crate) fn classify(msg: &str) -> Option<Start> {
    if msg.starts_with(char::is_whitespace) {
        return None;
    }
    let index = RULE_SET.matches(msg).into_iter().next()?;
    let caps = RULE_REGEXES[index].captures(msg)?;
    Some((RULES[index].1)(&caps))
}

/// Removes what varies between two occurrences of the same crash: addresses, numbers, symbol
/// offsets and module tags, then tidies the spacing.
pub(crate) fn normalize_message(message: &str) -> String {
    static SYMBOL_OFFSET: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\+0x[0-9a-fA-F]+/0x[0-9a-fA-F]+(?:\s+\[[\w-]+(?:\s+[0-9a-f]+)?\])?")
            .expect("valid regex")
    });
    static KEY_NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b\w+=(?:0x)?[0-9a-fA-F]+\b").expect("valid regex"));
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"#?\b(?:0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+(?:\.\d+)?)\b").expect("valid regex")
    });
    static EMPTY_GROUP: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\([\s,:/.-]*\)|\[[\s,:/.-]*\]|\{[\s,:/.-]*\}").expect("valid regex")
    });
    static DANGLING_SEPARATOR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"([(\[{])[\s,]+|[\s,]+([)\]}])").expect("valid regex"));
    static SPACES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\s+").expect("valid regex"));
    let text = SYMBOL_OFFSET.replace_all(message, "");
    let text = KEY_NUMBER.replace_all(&text, "");
    let text = NUMBER.replace_all(&text, "");
    let text = DANGLING_SEPARATOR.replace_all(&text, "$1$2");
    let text = EMPTY_GROUP.replace_all(&text, "");
    let text = SPACES.replace_all(&text, " ");
    text.trim()
        .trim_end_matches([' ', ',', ':', ';', '-', '/'])
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn title(msg: &str) -> Option<Title> {
        classify(msg).map(|s| s.title)
    }

    #[test]
    fn oops_first_lines_are_recognised() {
        let s = classify("BUG: unable to handle page fault for address: ffffffffc0a1b040").unwrap();
        assert_eq!(s.kind, Kind::Oops);
        assert_eq!(s.fault_addr, Some(0xffffffffc0a1b040));
        assert_eq!(
            s.title,
            Title::InFunc("BUG: unable to handle page fault".into())
        );
        let s =
            classify("BUG: kernel NULL pointer dereference, address: 0000000000000008").unwrap();
        assert_eq!(s.fault_addr, Some(8));
        assert_eq!(
            title("kernel BUG at lib/list_debug.c:56!"),
            Some(Title::InFunc("BUG: corrupted list".into()))
        );
        assert_eq!(
            title("kernel BUG at drivers/foo/foo.c:12!"),
            Some(Title::InFunc("kernel BUG".into()))
        );
    }

    #[test]
    fn oops_headers_of_both_kernel_generations_are_die_headers() {
        for header in [
            "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
            "Oops: invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
            "Oops: 0010 [#1] PREEMPT SMP NOPTI",
            "Oops: Oops: 0002 [#1] PREEMPT SMP NOPTI",
            "general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN NOPTI",
            "Oops: general protection fault, probably for non-canonical address 0x6b6b6b6b6b6b6b6b: 0000 [#1] PREEMPT SMP NOPTI",
        ] {
            assert_eq!(classify(header).unwrap().role, Role::DieHeader, "{header}");
        }
    }

    #[test]
    fn every_kind_of_first_line_gets_its_kind_and_title() {
        use Kind::*;
        let cases: &[(&str, Kind, &str)] = &[
            ("BUG: stack guard page was hit at 00000000e3b0d4a1 (stack is 0..1)", Oops, "BUG: stack guard page was hit"),
            ("traps: PANIC: double fault, error_code: 0x0", Oops, "double fault"),
            ("divide error: 0000 [#1] PREEMPT SMP NOPTI", Oops, "divide error"),
            ("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI", Oops, "int3"),
            ("Oops: stack segment: 0000 [#1] PREEMPT SMP KASAN NOPTI", Oops, "stack segment fault"),
            ("BUG: KASAN: double-free in mh_exit+0x1c/0x40 [mh]", Kasan, "KASAN: double-free"),
            ("BUG: KASAN: slab-out-of-bounds in foo+0x1/0x2", Kasan, "KASAN: slab-out-of-bounds"),
            ("BUG: KFENCE: out-of-bounds write in foo+0x1/0x2", Kfence, "KFENCE: out-of-bounds write"),
            ("UBSAN: shift-out-of-bounds in drivers/foo.c:12:9", Ubsan, "UBSAN: shift-out-of-bounds"),
            ("WARNING: possible recursive locking detected", Lockdep, "possible deadlock"),
            ("WARNING: possible irq lock inversion dependency detected", Lockdep, "possible deadlock"),
            ("WARNING: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected", Lockdep, "possible deadlock"),
            ("WARNING: HARDIRQ-READ-safe -> HARDIRQ-unsafe lock order detected", Lockdep, "possible deadlock"),
            ("WARNING: inconsistent lock state", Lockdep, "inconsistent lock state"),
            ("WARNING: bad unlock balance detected!", Lockdep, "WARNING: bad unlock balance"),
            ("WARNING: held lock freed!", Lockdep, "WARNING: held lock freed"),
            ("WARNING: lock held when returning to user space!", Lockdep, "WARNING: lock held when returning to user space"),
            ("WARNING: suspicious RCU usage", Lockdep, "WARNING: suspicious RCU usage"),
            ("INFO: trying to register non-static key.", Lockdep, "INFO: trying to register non-static key"),
            ("WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x1/0x2", Warning, "WARNING"),
            ("watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [insmod:121]", SoftLockup, "BUG: soft lockup"),
            ("NMI watchdog: Watchdog detected hard LOCKUP on cpu 1", HardLockup, "BUG: hard lockup"),
            ("rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", RcuStall, "INFO: rcu detected stall"),
            ("rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21002 jiffies", RcuStall, "INFO: rcu detected stall"),
            ("INFO: task kworker/0:1:23 blocked for more than 120 seconds.", HungTask, "INFO: task hung"),
            ("unreferenced object 0xffff888004b1c000 (size 64):", Kmemleak, "memory leak"),
            ("BUG: Bad page map in process cat  pte:8000000004a3c025 pmd:04b3e067", BadPage, "BUG: Bad page map"),
            ("BUG: using smp_processor_id() in preemptible [00000000] code: insmod/124", Bug, "BUG: using smp_processor_id() in preemptible code"),
            ("BUG: spinlock bad magic on CPU#0, insmod/124", Bug, "BUG: spinlock bad magic"),
            ("BUG: workqueue leaked atomic, lock or RCU: kworker/1:2[51]", Bug, "BUG: workqueue leaked lock or atomic"),
        ];
        for (line, kind, prefix) in cases {
            let start = classify(line).unwrap_or_else(|| panic!("not recognised: {line}"));
            assert_eq!(start.kind, *kind, "{line}");
            assert_eq!(start.title, Title::InFunc(prefix.to_string()), "{line}");
        }
        let fixed: &[(&str, Kind, &str)] = &[
            ("BUG: KCSAN: data-race in mh_inc / mh_inc", Kcsan, "KCSAN: data-race in mh_inc / mh_inc"),
            ("BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!", WorkqueueLockup, "BUG: workqueue lockup"),
            ("BUG: Bad rss-counter state mm:00000000a1b2c3d4 type:MM_ANONPAGES val:1", BadPage, "BUG: Bad rss-counter state"),
            ("unregister_netdevice: waiting for lo to become free. Usage count = 2", NetdevRefLeak, "unregister_netdevice: waiting for DEV to become free"),
            ("BUG: MAX_LOCKDEP_KEYS too low!", Lockdep, "BUG: MAX_LOCKDEP_KEYS too low!"),
            ("BUG: Dentry 00000000a1b2c3d4{i=3c,n=mh}  still in use (1) [unmount of tmpfs tmpfs]", Bug, "BUG: Dentry {n=mh} still in use [unmount of tmpfs tmpfs]"),
        ];
        for (line, kind, title) in fixed {
            let start = classify(line).unwrap_or_else(|| panic!("not recognised: {line}"));
            assert_eq!(start.kind, *kind, "{line}");
            assert_eq!(start.title, Title::Fixed(title.to_string()), "{line}");
        }
    }

    #[test]
    fn look_alikes_are_not_reports() {
        for line in [
            "traps: cat[123] general protection fault ip:7f0e2c1d sp:7ffd1e2f error:0 in libc.so.6[7f0e2c000+155000]",
            "INFO: lockdep is turned off.",
            "race_timer_buggy: module verification failed: signature and/or required key missing - tainting kernel",
            "race_timer_buggy: loading out-of-tree module taints kernel.",
            "EXT4-fs warning (device vda): ext4_multi_mount_protect:328: MMP interval 42 higher than expected",
            "Disabling lock debugging due to kernel taint",
            "INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.234 msecs",
            " WARNING: indented text is never a first line",
        ] {
            assert!(classify(line).is_none(), "{line}");
        }
    }

    #[test]
    fn panics_tell_consequences_from_crashes_of_their_own() {
        let s = classify("Kernel panic - not syncing: Fatal exception in interrupt").unwrap();
        assert_eq!(s.role, Role::Panic { consequence: true });
        let s = classify(
            "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        )
        .unwrap();
        assert_eq!(s.role, Role::Panic { consequence: false });
        assert_eq!(
            s.title,
            Title::Fixed("kernel panic: VFS: Unable to mount root fs on unknown-block".into())
        );
    }

    #[test]
    fn normalisation_removes_numbers_addresses_and_offsets() {
        assert_eq!(
            normalize_message("Attempted to kill init! exitcode=0x0000000b"),
            "Attempted to kill init!"
        );
        assert_eq!(
            normalize_message(
                "stack-protector: Kernel stack is corrupted in: foo_init+0x4a/0x50 [foo]"
            ),
            "stack-protector: Kernel stack is corrupted in: foo_init"
        );
        assert_eq!(
            normalize_message("no vfat at (8,1) on 0x1f"),
            "no vfat at on"
        );
    }
}
