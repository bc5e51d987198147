//! The modharness guest agent: runs a plan's steps inside the VM and reports each result.
//!
//! As PID 1 of the initramfs it also sets up the guest (see [`init`]); started any other way it
//! just runs the plan. The kernel-facing calls sit behind [`kernel::Kernel`] so that plans can be
//! run against a fake on the host.

pub mod channel;
pub mod debug_checks;
pub mod init;
pub mod irq;
pub mod kernel;
pub mod modalias;
pub mod probe;
pub mod probe_tree;
pub mod runner;
pub mod shell;

use std::path::PathBuf;

use modharness_protocol::{Event, Plan, PLAN_PATH};

use crate::channel::Channel;
use crate::kernel::LinuxKernel;

/// The agent's exit codes. As PID 1, init reads them from the plan child: anything else (a
/// signal, a Rust panic's 101) means the plan died without reporting `Done`.
pub mod exit_code {
    /// `Done { ok: true }` was sent.
    pub const PASSED: i32 = 0;
    /// `Done { ok: false }` was sent.
    pub const FAILED: i32 = 1;
    /// `Done` could not be sent.
    pub const NO_DONE: i32 = 2;
}

/// Where the agent reads its plan and writes its events.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The plan file (`--plan`); [`PLAN_PATH`] by default.
    pub plan: PathBuf,
    /// The control channel (`--control`); the control serial port by default.
    pub control: Option<PathBuf>,
}

impl Options {
    /// Parse the arguments after the program name. As PID 1 the agent also receives whatever
    /// words of the kernel command line the kernel did not understand, so unknown arguments are
    /// reported and skipped rather than fatal.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            plan: PathBuf::from(PLAN_PATH),
            control: None,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--plan" => {
                    options.plan = args.next().ok_or("--plan needs a path")?.into();
                }
                "--control" => {
                    options.control = Some(args.next().ok_or("--control needs a path")?.into());
                }
                other => eprintln!("modharness-agent: ignoring argument {other:?}"),
            }
        }
        Ok(options)
    }
}

/// Entry point of the `modharness-agent` binary.
pub fn main() -> i32 {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("modharness-agent: {message}");
            // As PID 1 a bad argument must not stop the guest from reporting.
            if std::process::id() != 1 {
                return 2;
            }
            Options::parse(Vec::new()).expect("no arguments always parse")
        }
    };
    if std::process::id() == 1 {
        init::boot(&options)
    }
    run_agent(&options)
}

/// Read the plan, run it on this kernel and report on the control channel. Returns one of
/// [`exit_code`]'s codes.
pub fn run_agent(options: &Options) -> i32 {
    let channel = match Channel::open(options.control.as_deref()) {
        Ok(channel) => channel,
        Err(err) => {
            eprintln!("modharness-agent: cannot open the control channel: {err}");
            return exit_code::NO_DONE;
        }
    };
    let result = match read_plan(options) {
        Ok(plan) => runner::run_plan(&plan, &LinuxKernel, &channel),
        Err(message) => {
            // No Ready: the host learns from a bare Done that the plan never ran.
            eprintln!("modharness-agent: {message}");
            channel.send(&Event::Done { ok: false }).map(|()| false)
        }
    };
    match result {
        Ok(true) => exit_code::PASSED,
        Ok(false) => exit_code::FAILED,
        Err(err) => {
            eprintln!("modharness-agent: cannot send Done: {err}");
            exit_code::NO_DONE
        }
    }
}

fn read_plan(options: &Options) -> Result<Plan, String> {
    let path = options.plan.display();
    let bytes = std::fs::read(&options.plan).map_err(|err| format!("cannot read {path}: {err}"))?;
    serde_json::from_slice(&bytes).map_err(|err| format!("{path} is not a valid plan: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| word.to_string()).collect()
    }

    #[test]
    fn options_default_to_the_guest_paths() {
        let options = Options::parse(args(&[])).unwrap();
        assert_eq!(options.plan, PathBuf::from(PLAN_PATH));
        assert_eq!(options.control, None);
    }

    #[test]
    fn options_take_overrides_and_skip_kernel_leftovers() {
        let options =
            Options::parse(args(&["splash", "--plan", "/p.json", "--control", "/c"])).unwrap();
        assert_eq!(options.plan, PathBuf::from("/p.json"));
        assert_eq!(options.control, Some(PathBuf::from("/c")));
        assert!(Options::parse(args(&["--plan"])).is_err());
    }

    /// A plan and a control file in a fresh directory; the plan touches no module.
    fn run_in_scratch(name: &str, plan: Option<&str>) -> (i32, String) {
        let dir =
            std::env::temp_dir().join(format!("modharness-agent-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let options = Options {
            plan: dir.join("plan.json"),
            control: Some(dir.join("control")),
        };
        if let Some(plan) = plan {
            std::fs::write(&options.plan, plan).unwrap();
        }
        let code = run_agent(&options);
        let control = std::fs::read_to_string(dir.join("control")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        (code, control)
    }

    #[test]
    fn the_exit_code_tells_whether_the_plan_passed() {
        let (passed, control) = run_in_scratch(
            "pass",
            Some(r#"{"steps": [{"shell": {"command": "true"}}], "modules": {}}"#),
        );
        assert_eq!(passed, exit_code::PASSED);
        assert!(
            control.ends_with("{\"event\":\"done\",\"ok\":true}\n"),
            "{control}"
        );
        let (failed, _) = run_in_scratch(
            "fail",
            Some(r#"{"steps": [{"shell": {"command": "false"}}], "modules": {}}"#),
        );
        assert_eq!(failed, exit_code::FAILED);
    }

    #[test]
    fn an_unreadable_plan_is_answered_with_a_bare_failed_done() {
        let (code, control) = run_in_scratch("missing", None);
        assert_eq!(code, exit_code::FAILED);
        assert_eq!(control, "{\"event\":\"done\",\"ok\":false}\n");
        let (code, control) = run_in_scratch("garbage", Some("{\"steps\": 3"));
        assert_eq!(code, exit_code::FAILED);
        assert_eq!(control, "{\"event\":\"done\",\"ok\":false}\n");
    }
}
