//! Stack frames, `RIP:` lines, `Modules linked in:` lines, and which frames are too generic to
//! name a crash after.

use std::sync::LazyLock;

use regex::Regex;

/// One entry of a stack trace, a `RIP:` line, or a symbol named in a header.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Frame {
    /// The function, compiler suffixes (`.cold`, `.constprop.0`, …) removed; `None` for a bare
    /// address the kernel could not symbolise (typically freed module text).
    pub(crate) func: Option<String>,
    /// The `[module]` tag.
    pub(crate) module: Option<String>,
    /// The address of an unsymbolised frame.
    pub(crate) addr: Option<u64>,
    /// Not marked `?` by the unwinder.
    pub(crate) reliable: bool,
    /// The symbol exactly as printed, for symbolization.
    pub(crate) printed: Option<PrintedSymbol>,
}

/// `func+0xOFFSET/0xSIZE` as the kernel printed it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PrintedSymbol {
    /// The symbol name, compiler suffixes kept (`foo.cold` is its own symbol).
    pub(crate) name: String,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    /// A stack entry (where a call returns to) rather than a `RIP:` (the instruction running).
    pub(crate) return_address: bool,
}

/// `func+0x1a2/0x2c0 [mod]` (the tag may carry a build id), anywhere in a line.
static SYMBOL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?<func>[A-Za-z_$][\w.$]*)\+0x(?<offset>[0-9a-fA-F]+)/0x(?<size>[0-9a-fA-F]+)(?:\s+\[(?<module>[\w-]+)(?:\s+[0-9a-f]+)?\])?",
    )
    .expect("valid regex")
});

/// A stack-trace line: indentation, optional `[<address>]`, optional `?`, then a symbol or a
/// bare address.
static FRAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^\s*(?:\[<[0-9a-fA-F]+>\]\s*)?(?<unreliable>\?\s+)?",
        r"(?:(?<func>[A-Za-z_$][\w.$]*)\+0x(?<offset>[0-9a-fA-F]+)/0x(?<size>[0-9a-fA-F]+)(?:\s+\[(?<module>[\w-]+)(?:\s+[0-9a-f]+)?\])?",
        r"|0x(?<addr>[0-9a-fA-F]{1,16}))(?:\s|$)"
    ))
    .expect("valid regex")
});

/// `RIP: 0010:…`; the code segment tells kernel (`0010`) from user (`0033`) mode.
static RIP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^RIP: ([0-9a-fA-F]{4}):(.*)$").expect("valid regex"));

/// Removes the suffixes GCC and LLVM append to cloned or split functions.
pub(crate) fn base_name(func: &str) -> &str {
    func.split('.').next().unwrap_or(func)
}

/// A frame from the captures of [`SYMBOL`], [`FRAME`] or a bare `%ps` symbol.
fn symbol_frame(caps: &regex::Captures, reliable: bool, return_address: bool) -> Option<Frame> {
    let func = caps.name("func")?.as_str();
    let hex = |group: &str| u64::from_str_radix(caps.name(group)?.as_str(), 16).ok();
    let printed = match (hex("offset"), hex("size")) {
        (Some(offset), Some(size)) => Some(PrintedSymbol {
            name: func.to_string(),
            offset,
            size,
            return_address,
        }),
        _ => None,
    };
    Some(Frame {
        func: Some(base_name(func).to_string()),
        module: caps.name("module").map(|m| m.as_str().to_string()),
        addr: None,
        reliable,
        printed,
    })
}

/// Parses a stack-trace line (message part, leading space kept).
pub(crate) fn parse_frame(msg: &str) -> Option<Frame> {
    if !msg.starts_with([' ', '\t', '[']) {
        return None;
    }
    let caps = FRAME.captures(msg)?;
    let reliable = caps.name("unreliable").is_none();
    if caps.name("func").is_some() {
        return symbol_frame(&caps, reliable, true);
    }
    let addr = u64::from_str_radix(caps.name("addr")?.as_str(), 16).ok()?;
    Some(Frame {
        func: None,
        module: None,
        addr: Some(addr),
        reliable,
        printed: None,
    })
}

/// A `RIP:` line in kernel mode, as a frame. User-mode `RIP: 0033:` lines give `None`.
pub(crate) fn parse_rip(msg: &str) -> Option<Frame> {
    let caps = RIP.captures(msg)?;
    if &caps[1] == "0033" {
        return None;
    }
    let rest = caps[2].trim();
    if let Some(sym) = find_symbol(rest) {
        return Some(sym);
    }
    // Old kernels print `[<ffffffff81234567>]`; new ones a bare `0xffffffffc0a1b040`.
    let hex = rest
        .trim_start_matches("[<")
        .split(|c: char| !c.is_ascii_hexdigit() && c != 'x')
        .next()?;
    let addr = u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok()?;
    Some(Frame {
        func: None,
        module: None,
        addr: Some(addr),
        reliable: true,
        printed: None,
    })
}

/// The first `func+0x…/0x… [mod]` symbol in a line.
pub(crate) fn find_symbol(text: &str) -> Option<Frame> {
    symbol_frame(&SYMBOL.captures(text)?, true, false)
}

/// A symbol printed without offset (`%ps`), e.g. `foo_work_fn [foo]`, at the start of `text`.
pub(crate) fn parse_bare_symbol(text: &str) -> Option<Frame> {
    static BARE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?<func>[A-Za-z_$][\w.$]*)(?:\+0x(?<offset>[0-9a-fA-F]+)/0x(?<size>[0-9a-fA-F]+))?(?:\s+\[(?<module>[\w-]+)(?:\s+[0-9a-f]+)?\])?")
            .expect("valid regex")
    });
    symbol_frame(&BARE.captures(text.trim_start())?, true, false)
}

/// Is this an address inside x86_64's module mapping area (`0xffffffffc0000000` up to
/// `0xffffffffff000000` with KASLR), or inside the KASAN shadow of that area?
pub(crate) fn in_module_area(addr: u64) -> bool {
    const MODULES: std::ops::Range<u64> = 0xffff_ffff_c000_0000..0xffff_ffff_ff00_0000;
    const KASAN_SHADOW_OFFSET: u64 = 0xdfff_fc00_0000_0000;
    let shadow = (MODULES.start >> 3).wrapping_add(KASAN_SHADOW_OFFSET)
        ..(MODULES.end >> 3).wrapping_add(KASAN_SHADOW_OFFSET);
    MODULES.contains(&addr) || shadow.contains(&addr)
}

/// What a `Modules linked in:` line (and its continuation lines) says.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ModuleList {
    /// Loaded modules with their flags: taint letters plus `+` (loading) or `-` (unloading).
    pub(crate) modules: Vec<(String, String)>,
    /// `[last unloaded: mod]`.
    pub(crate) last_unloaded: Option<String>,
}

static MODULE_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([\w-]+)(?:\(([A-Z+-]*)\))?$").expect("valid regex"));
static LAST_UNLOADED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\[last unloaded: ([\w-]+)(?:\([A-Z+-]*\))?\]").expect("valid regex")
});

/// The module a `[last unloaded: mod]` anywhere in `text` names.
pub(crate) fn last_unloaded(text: &str) -> Option<String> {
    LAST_UNLOADED.captures(text).map(|caps| caps[1].to_string())
}

impl ModuleList {
    /// Reads a module list (the text after `Modules linked in:`, or a continuation line).
    /// Returns false, reading nothing, when the text does not look like one.
    pub(crate) fn read(&mut self, text: &str) -> bool {
        let last = LAST_UNLOADED.captures(text);
        let list = match &last {
            Some(caps) => text[..caps.get(0).map_or(0, |m| m.start())].trim(),
            None => text.trim(),
        };
        let tokens: Vec<_> = list.split_whitespace().collect();
        if tokens.iter().any(|t| !MODULE_TOKEN.is_match(t)) {
            return false;
        }
        if last.is_none() && tokens.is_empty() {
            return false;
        }
        for token in tokens {
            if let Some(caps) = MODULE_TOKEN.captures(token) {
                let flags = caps.get(2).map_or("", |m| m.as_str());
                self.modules.push((caps[1].to_string(), flags.to_string()));
            }
        }
        if let Some(caps) = last {
            self.last_unloaded = Some(caps[1].to_string());
        }
        true
    }

    /// The first module whose flags contain `marker` (`+` loading, `-` unloading).
    pub(crate) fn marked(&self, marker: char) -> Option<&str> {
        self.modules
            .iter()
            .find(|(_, flags)| flags.contains(marker))
            .map(|(name, _)| name.as_str())
    }
}

/// Frames that never name a crash: the reporting machinery (printk, dump_stack, WARN, die,
/// the page-fault path), sanitizer internals, allocators, locking primitives, string and copy
/// helpers, the scheduler and wait primitives a hung task sleeps in, delay loops, interrupt and
/// syscall entry, and the timer/RCU machinery that detects stalls.
static GENERIC: LazyLock<Regex> = LazyLock::new(|| {
    let patterns = [
        // reporting
        r"dump_stack(_lvl)?|show_stack|show_trace_log_lvl|show_regs|__show_regs|_?printk|vprintk\w*",
        r"__warn|__warn_printk|warn_slowpath\w*|report_bug|handle_bug|panic|vpanic|nmi_panic|check_panic_on_warn",
        r"__?die(_body|_header|_addr)?|oops_\w+|page_fault_oops|kernelmode_fixup_or_oops|show_fault_oops",
        r"_?_?bad_area\w*|do_user_addr_fault|exc_\w+|do_trap|do_error_trap|handle_page_fault|fixup_exception",
        r"do_int3\w*|die_\w+|notify_die|spurious_kernel_fault|no_context|is_prefetch|__schedule_bug|print_\w+",
        r"debug_print_object|__?debug_check_no_obj_freed|debug_object_\w+|__list_(add|del)\w*|list_(add|del)\w*",
        r"refcount_\w+|__refcount_\w+|lockup_detector\w*|watchdog_timer_fn|watchdog|softlockup_fn",
        r"check_hung_\w+|debug_show_all_locks|sched_show_task|show_state_filter|dump_cpu_task",
        r"nmi_\w+|default_do_nmi|end_repeat_nmi|repeat_nmi|arch_trigger_cpumask_backtrace|trigger_\w+_backtrace",
        // sanitizers
        r"_?_?kasan\w*|_?_?kfence\w*|_?_?ubsan\w*|_?_?kcsan\w*|_?_?kmsan\w*|__asan\w*|__tsan\w*|__msan\w*",
        r"check_memory_region\w*|memory_is_poisoned\w*|__sanitizer\w*|describe_object\w*|complete_report_info",
        // allocators
        r"_?_?kmalloc\w*|_?_?kmem_cache\w*|_?_?kfree\w*|kvfree\w*|_?_?kvmalloc\w*|_?_?vmalloc\w*|vzalloc\w*",
        r"_?_?vfree\w*|__vunmap|remove_vm_area|kzalloc\w*|kcalloc\w*|krealloc\w*|kmemdup\w*|kstrdup\w*",
        r"_*slab_\w+|slub_\w+|new_slab|alloc_slab\w*|free_slab|discard_slab|__do_kmalloc\w*|kmemleak_\w+",
        r"__kmemleak\w*|_?_?alloc_pages\w*|_?_?free_pages\w*|free_unref_page\w*|__put_page|put_page",
        r"free_pcppages_bulk|__folio_alloc\w*|folio_alloc\w*|memcg_slab_\w+|\w+_noprof",
        r"bad_page|free_pcp_prepare|free_page_is_bad\w*|free_pages_prepare|__free_one_page",
        r"module_memfree|execmem_free|free_mod_mem",
        // locking
        r"_?_?raw_\w+|do_raw_\w+|queued_\w+|native_queued_\w+|__pv_queued_\w+|spin_\w+|_?_?mutex_\w+",
        r"rt_mutex\w*|__rt_mutex\w*|_?_?down\w*|_?_?up_\w+|up|_?_?rwsem_\w+|percpu_(down|up)\w*",
        r"_?_?lock_acquire\w*|_?_?lock_release\w*|lock_(is_held|acquired|contended)\w*|lockdep_\w+",
        r"check_(noncircular|prev_add|prevs_add|irq_usage|deadlock|flags)\w*|validate_chain|mark_lock\w*",
        r"mark_usage|valid_state|debug_lockdep_\w+|_atomic_dec_and_\w+|lock_timer_base|trace_hardirqs_\w+",
        r"__might_sleep|__might_resched|__might_fault|___might_sleep|might_sleep|__cant_sleep",
        r"_?_?rcu_read_(un)?lock\w*",
        // string and copy helpers
        r"_?_?mem(cpy|set|move|cmp|chr|scan)\w*|_?_?str(n?cpy|n?cmp|n?len|scpy|lcpy|r?chr|str|n?cat|dup)\w*",
        r"_?copy_(to|from)_user\w*|__copy_user\w*|rep_movs\w*|raw_copy_\w+|_?_?check_object_size",
        r"check_copy_size|usercopy_\w+|__fortify\w*|fortify_\w+",
        // MMIO accessors: the driver that called them is at fault
        r"ioread\d+\w*|iowrite\d+\w*|read[bwlq](_relaxed)?|write[bwlq](_relaxed)?",
        // sleeping and waiting
        r"__schedule|schedule|schedule_(timeout|hrtimeout|preempt_disabled|idle)\w*|preempt_schedule\w*|io_schedule\w*|_?_?cond_resched",
        r"_?_?wait_for_common\w*|do_wait_for_common|wait_for_completion\w*|_?_?wait_rcu_gp",
        r"msleep\w*|usleep_range\w*|ssleep|__wait_event\w*|wait_woken|prepare_to_wait\w*|finish_wait",
        r"bit_wait\w*|__wait_on_bit\w*|out_of_line_wait_on_bit\w*",
        r"cpu_relax|delay_tsc|delay_halt\w*|__const_udelay|__udelay|udelay|mdelay|__delay",
        // entry, interrupts, timers, stall detection
        r"do_syscall_(64|x64)|entry_SYSCALL_64\w*|x64_sys_call|__x64_sys_\w+|__se_sys_\w+|__ia32_sys_\w+",
        r"asm_\w+|ret_from_fork\w*|kthread|kthread_complete_and_exit|kthread_exit|__pfx_\w+",
        r"sysvec_\w+|__sysvec_\w+|irq_exit\w*|__irq_exit\w*|common_interrupt|__common_interrupt",
        r"__do_softirq|handle_softirqs|do_softirq\w*|__irq_exit_rcu|call_timer_fn|expire_timers",
        r"rcu_dump_cpu_stacks|print_(cpu|other_cpu)_stall\w*|check_cpu_stall|rcu_pending|rcu_sched_clock_irq",
        r"update_process_times|tick_sched_\w+|tick_nohz_handler|__hrtimer_run_queues|hrtimer_interrupt",
    ];
    Regex::new(&format!("^(?:{})$", patterns.join("|"))).expect("valid regex")
});

/// Is this function too generic to name a crash after?
pub(crate) fn is_generic(func: &str) -> bool {
    GENERIC.is_match(func)
}

/// Does the stack run through module loading?
pub(crate) fn is_module_load(func: &str) -> bool {
    matches!(
        func,
        "load_module"
            | "do_init_module"
            | "do_one_initcall"
            | "init_module_from_file"
            | "idempotent_init_module"
            | "__do_sys_finit_module"
            | "__do_sys_init_module"
            | "__x64_sys_finit_module"
            | "__x64_sys_init_module"
    )
}

/// Does the stack run through module unloading?
pub(crate) fn is_module_unload(func: &str) -> bool {
    matches!(
        func,
        "delete_module"
            | "free_module"
            | "__do_sys_delete_module"
            | "__x64_sys_delete_module"
            | "__se_sys_delete_module"
            | "mod_sysfs_teardown"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_with_tags_unreliable_marks_and_raw_addresses_parse() {
        let f = parse_frame(" race_timer_buggy_fn+0x10/0x20 [race_timer_buggy]").unwrap();
        assert_eq!(f.func.as_deref(), Some("race_timer_buggy_fn"));
        assert_eq!(f.module.as_deref(), Some("race_timer_buggy"));
        assert!(f.reliable);

        let f = parse_frame(" ? __die_body.cold+0x1a/0x1f").unwrap();
        assert_eq!(f.func.as_deref(), Some("__die_body"));
        assert!(!f.reliable);

        let f = parse_frame("    [<00000000c2d54c1a>] kmalloc_trace+0x26/0x90").unwrap();
        assert_eq!(f.func.as_deref(), Some("kmalloc_trace"));

        let f = parse_frame(" 0xffffffffc0a1b040").unwrap();
        assert_eq!(f.addr, Some(0xffffffffc0a1b040));
        assert!(in_module_area(f.addr.unwrap()));

        let f = parse_frame(" foo+0x1/0x2 [foo 0123abcd]").unwrap();
        assert_eq!(f.module.as_deref(), Some("foo"));
    }

    #[test]
    fn printed_symbols_keep_suffixes_offset_and_size() {
        let f = parse_frame(" ? __die_body.cold+0x1a/0x1f").unwrap();
        let printed = f.printed.unwrap();
        assert_eq!(printed.name, "__die_body.cold");
        assert_eq!((printed.offset, printed.size), (0x1a, 0x1f));
        assert!(printed.return_address);
        let rip = parse_rip("RIP: 0010:foo_read+0x2a/0x60 [foo]").unwrap();
        assert!(!rip.printed.unwrap().return_address);
        // An offset too long for 64 bits still names the function, without a position.
        let f = parse_frame(" foo+0x123456789abcdef0123/0x10").unwrap();
        assert_eq!(f.func.as_deref(), Some("foo"));
        assert!(f.printed.is_none());
    }

    #[test]
    fn prose_is_not_a_frame() {
        assert!(parse_frame("Call Trace:").is_none());
        assert!(parse_frame(" <IRQ>").is_none());
        assert!(parse_frame("  hex dump (first 32 bytes):").is_none());
        assert!(parse_frame("    00 00 00 00 00 00 00 00  ........").is_none());
        assert!(parse_frame("foo+0x1/0x2").is_none(), "frames are indented");
    }

    #[test]
    fn rip_lines_give_kernel_frames_only() {
        let f = parse_rip("RIP: 0010:__run_timers+0x1b3/0x2e0").unwrap();
        assert_eq!(f.func.as_deref(), Some("__run_timers"));
        let f = parse_rip("RIP: 0010:0xffffffffc0a1b040").unwrap();
        assert_eq!(f.addr, Some(0xffffffffc0a1b040));
        assert!(f.func.is_none());
        assert!(parse_rip("RIP: 0033:0x7f5e1c2d3e4f").is_none());
        let f = parse_rip("RIP: 0010:foo_read+0x2a/0x60 [foo]").unwrap();
        assert_eq!(f.module.as_deref(), Some("foo"));
    }

    #[test]
    fn module_lists_give_markers_and_the_last_unloaded_module() {
        let mut list = ModuleList::default();
        assert!(list.read(" foo(OE+) bar(-) baz [last unloaded: race_timer_buggy(OE)]"));
        assert_eq!(list.marked('+'), Some("foo"));
        assert_eq!(list.marked('-'), Some("bar"));
        assert_eq!(list.last_unloaded.as_deref(), Some("race_timer_buggy"));

        let mut list = ModuleList::default();
        assert!(list.read(" [last unloaded: race_timer_buggy(OE)]"));
        assert!(list.modules.is_empty());
        assert!(!ModuleList::default().read("CR2: ffffffffc0a1b040"));
    }

    #[test]
    fn generic_frames_are_recognised_and_real_code_is_not() {
        for generic in [
            "dump_stack_lvl",
            "_raw_spin_lock_irqsave",
            "__kmalloc_cache_noprof",
            "kasan_report",
            "asm_exc_page_fault",
            "do_syscall_64",
            "__schedule",
            "wait_for_completion",
            "call_timer_fn",
            "refcount_warn_saturate",
            "ioread32",
        ] {
            assert!(is_generic(generic), "{generic}");
        }
        for real in [
            "__run_timers",
            "process_one_work",
            "free_module",
            "proc_entry_rundown",
            "update_curr",
            "upstream_fn",
            "foo_init",
            "readahead_folio",
        ] {
            assert!(!is_generic(real), "{real}");
        }
    }

    #[test]
    fn module_area_covers_module_text_and_its_kasan_shadow_only() {
        assert!(in_module_area(0xffffffffc0a1b040));
        assert!(in_module_area(0xfffffbfff8143608));
        assert!(!in_module_area(0xffffffff81234567));
        assert!(!in_module_area(0x0));
        assert!(!in_module_area(0xffff888004a3c118));
    }
}
