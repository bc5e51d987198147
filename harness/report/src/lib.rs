//! The output side of a modharness run: the report model (`report.json`, schema 1), JUnit XML,
//! a single-file HTML report, a terminal summary table and the merge of several reports.
//!
//! Every file is written with [`write_atomic`], so a reader (a CI job tailing the out dir, a
//! dashboard) never sees half a file.

mod atomic;
mod baseline;
mod bugs;
mod html;
mod junit;
mod kcidb;
mod matrix_html;
mod merge;
mod plot;
mod probe;
mod probe_html;
mod summary;
mod text;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use atomic::write_atomic;
pub use baseline::{BugLabel, Comparison, StatusChange};
pub use modharness_memory::{Growth, Series, Source};
pub use probe::{MassProbeResult, ProbeModuleResult, ProbeRoundResult};

use modharness_memory::Analysis;

/// The `schema` value this crate writes and accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// The report file name inside an out dir.
pub const REPORT_JSON: &str = "report.json";
/// The JUnit XML file name inside an out dir.
pub const JUNIT_XML: &str = "junit.xml";
/// The HTML report file name inside an out dir.
pub const REPORT_HTML: &str = "report.html";
/// The KCIDB (KernelCI results) file name inside an out dir.
pub const REPORT_KCIDB: &str = "report.kcidb.json";

/// A whole run: every kernel, every scenario. Serialized as `report.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// Always [`SCHEMA_VERSION`]; fields are only ever added, never renamed.
    pub schema: u32,
    /// When the run started, RFC 3339 in UTC (see [`rfc3339_utc`]).
    pub started_at: String,
    /// Wall-clock duration of the run in seconds.
    pub duration_s: f64,
    /// What the run ran on.
    pub host: Host,
    /// One entry per kernel.
    pub runs: Vec<Run>,
    /// The distinct bugs of all runs: findings with the same title are the same bug, whatever
    /// the scenario or kernel. Filled by [`Report::collect_bugs`].
    #[serde(default)]
    pub bugs: Vec<Bug>,
    /// What changed since a baseline report, when one was given (see [`Report::compare_with`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// One distinct bug: every finding of a run that has its title.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Bug {
    /// The kind of its first finding.
    pub kind: String,
    /// The title all its findings share.
    pub title: String,
    /// The first module a finding with this title was attributed to.
    #[serde(default)]
    pub module: Option<String>,
    /// Every finding with this title was expected by its scenario.
    pub expected: bool,
    /// Where it was found, in report order; a scenario that found it twice counts once.
    pub occurrences: Vec<Occurrence>,
    /// Against the baseline, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BugLabel>,
}

/// A scenario on a kernel where a bug was found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Occurrence {
    /// The kernel spec, e.g. `debian:6.1.0-54-amd64`.
    pub kernel: String,
    /// The kernel release (`uname -r`).
    pub release: String,
    /// The scenario's name.
    pub scenario: String,
}

/// The host side of a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Host {
    /// QEMU version, e.g. `7.2.22`.
    pub qemu: String,
    /// The accelerator actually used: `kvm` or `tcg` (the first kernel's; each run and scenario
    /// says its own).
    pub accel: String,
}

/// Every scenario run against one kernel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Run {
    /// The kernel the scenarios ran on.
    pub kernel: KernelInfo,
    /// The accelerator its scenarios ended up using: `kvm` or `tcg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// Why, e.g. `kvm: no agent within 2.6 s, tcg's time` (the accelerator probe's words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel_why: Option<String>,
    /// One result per scenario, in the order they ran.
    pub scenarios: Vec<ScenarioResult>,
}

/// Which kernel a run used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KernelInfo {
    /// The spec as given on the command line, e.g. `debian:6.1.0-54-amd64`.
    pub spec: String,
    /// The kernel release (`uname -r`), e.g. `6.1.0-54-amd64`.
    pub release: String,
}

/// The outcome of one scenario on one kernel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ScenarioResult {
    /// The scenario's `name`.
    pub name: String,
    /// The scenario file it came from.
    pub file: String,
    /// The verdict.
    pub status: Status,
    /// How long the scenario took, boot included, in seconds.
    pub duration_s: f64,
    /// Everything triage and the memory check found, expected or not.
    pub findings: Vec<FindingEntry>,
    /// The memory-growth verdict, when the scenario sampled memory.
    #[serde(default)]
    pub memory: Option<MemoryResult>,
    /// The guest console log, relative to the out dir (or absolute after
    /// [`Report::rebase_console_logs`]).
    pub console_log: String,
    /// Why the status is `error` (infrastructure: boot failed, QEMU died, build failed).
    #[serde(default)]
    pub error: Option<String>,
    /// Why the status is `failed`, one human sentence each, e.g.
    /// `unexpected oops: BUG: ... (module x)` or `expected oops from module y did not appear`.
    #[serde(default)]
    pub failures: Vec<String>,
    /// Step counts and throughput.
    #[serde(default)]
    pub steps: StepStats,
    /// Interrupts an `irq_storm` delivered, as the guest counted them (absent without storms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irq: Option<IrqResult>,
    /// What the harness did beyond the plan, e.g. booting again after the guest crashed before
    /// any step ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The accelerator the scenario ran under: `kvm` or `tcg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// What its `mass_probe` step measured, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_probe: Option<MassProbeResult>,
}

/// What the IRQ storms of a scenario delivered, measured in the guest from `/proc/interrupts`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IrqResult {
    /// The storm device(s), e.g. `edu` or `ivshmem`.
    pub device: String,
    /// Interrupts the guest counted for the device during the storms.
    pub delivered: u64,
    /// `delivered` over the storms' total duration.
    pub per_second: f64,
    /// Raise requests the guest agent made (0 when the host raised the storm).
    #[serde(default)]
    pub raised: u64,
}

/// The verdict of a scenario. Serialized in lowercase: `passed`, `failed`, `error`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every expectation was met.
    Passed,
    /// An unexpected finding, or an expected one missing.
    Failed,
    /// The scenario could not be run to a verdict (infrastructure).
    Error,
}

impl Status {
    /// The upper-case word used in the terminal summary: `PASS`, `FAIL`, `ERROR`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Passed => "PASS",
            Status::Failed => "FAIL",
            Status::Error => "ERROR",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
        })
    }
}

/// One finding: a crash report from the console, a memory-growth verdict, a hang.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct FindingEntry {
    /// `oops`, `panic`, `warning`, `kasan`, `leak`, `hang`, … (see DESIGN.md).
    pub kind: String,
    /// The syzbot-style title, e.g. `BUG: unable to handle page fault in __run_timers`.
    pub title: String,
    /// The module the finding is attributed to, when triage could tell.
    #[serde(default)]
    pub module: Option<String>,
    /// Whether the scenario's `expect.findings` asked for it.
    #[serde(default)]
    pub expected: bool,
    /// Seconds since boot (the console timestamp), when known.
    #[serde(default)]
    pub time_s: Option<f64>,
    /// The crash ended in a kernel panic.
    #[serde(default)]
    pub panicked: bool,
    /// The crash report was garbled or cut short, so title and module are less certain.
    #[serde(default)]
    pub corrupted: bool,
    /// The crash site and call trace as printed, `file:line` added where modharness had the
    /// object's debug info, e.g. `heartbeat_fn+0x1d/0x40 [race_timer_buggy] race_timer_buggy.c:47`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<String>,
}

/// The memory-growth verdict of a scenario that repeated load/unload cycles. The fields after
/// `verdict` were added later: a report without them loads with them empty.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct MemoryResult {
    /// Cycles sampled.
    pub cycles: u32,
    /// Robust slope of used memory, in bytes per cycle (negative when memory came back).
    pub leak_bytes_per_cycle: i64,
    /// `leak`, `clean` or `inconclusive`.
    pub verdict: String,
    /// The 95% confidence interval of `leak_bytes_per_cycle`, `[lo, hi]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<[i64; 2]>,
    /// The run's noise floor, bytes per cycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u64>,
    /// The bar the interval was judged against (the scenario's bound, else the floor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bar: Option<u64>,
    /// Cycles left out of the fit at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_up: Option<u32>,
    /// For an inconclusive verdict, the cycles that would decide it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cycles_needed: Option<u32>,
    /// The slab caches and vmalloc callers that grew, largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub growth: Vec<Growth>,
    /// The samples as columns, for plots and for a closer look.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
}

impl MemoryResult {
    /// The result of `analysis`, with the samples' `series`.
    pub fn from_analysis(analysis: &Analysis, series: Series) -> MemoryResult {
        MemoryResult {
            cycles: analysis.cycles,
            leak_bytes_per_cycle: analysis.bytes_per_cycle,
            verdict: analysis.verdict.as_str().to_string(),
            ci: Some([analysis.ci.0, analysis.ci.1]),
            floor: Some(analysis.floor),
            bar: Some(analysis.bar),
            warm_up: Some(analysis.warm_up),
            cycles_needed: analysis.cycles_needed,
            growth: analysis.growth.clone(),
            series: Some(series),
        }
    }
}

/// Step counts of a scenario.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StepStats {
    /// Steps executed (each iteration of a repeat counts).
    pub total: u32,
    /// Steps that failed.
    pub failed: u32,
    /// Load+unload pairs per second, when the scenario did any.
    #[serde(default)]
    pub load_unload_per_s: Option<f64>,
}

/// Scenario counts by status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Totals {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed.
    pub failed: usize,
    /// Scenarios that ended in an infrastructure error.
    pub errors: usize,
}

impl Totals {
    /// All scenarios counted.
    pub fn scenarios(&self) -> usize {
        self.passed + self.failed + self.errors
    }
}

impl fmt::Display for Totals {
    /// `3 scenarios: 2 passed, 1 failed, 0 errors`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.scenarios();
        write!(
            f,
            "{count} scenario{}: {} passed, {} failed, {} error{}",
            if count == 1 { "" } else { "s" },
            self.passed,
            self.failed,
            self.errors,
            if self.errors == 1 { "" } else { "s" },
        )
    }
}

/// Why a report could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read.
    #[error("cannot read report {}: {source}", path.display())]
    Read {
        /// The report file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file is not a valid report.json.
    #[error("{} is not a valid report.json: {source}", path.display())]
    Parse {
        /// The report file.
        path: PathBuf,
        /// Where and why parsing failed (serde_json gives line and column).
        source: serde_json::Error,
    },
    /// The file has a `schema` this version does not understand.
    #[error("{} has report schema {found}, this modharness reads schema {SCHEMA_VERSION}", path.display())]
    UnsupportedSchema {
        /// The report file.
        path: PathBuf,
        /// The schema number found in the file.
        found: u32,
    },
}

/// Formats a time as RFC 3339 in UTC with millisecond precision, e.g.
/// `2025-11-25T11:49:02.123Z`: the format of [`Report::started_at`].
pub fn rfc3339_utc(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Report {
    /// An empty schema-1 report, to which the engine adds runs.
    pub fn new(started_at: SystemTime, host: Host) -> Report {
        Report {
            schema: SCHEMA_VERSION,
            started_at: rfc3339_utc(started_at),
            duration_s: 0.0,
            host,
            runs: Vec::new(),
            bugs: Vec::new(),
            comparison: None,
        }
    }

    /// Recomputes [`Report::bugs`] from every scenario's findings: grouped by title, in the
    /// order titles first appear. Call it once the runs are complete, before writing.
    pub fn collect_bugs(&mut self) {
        self.bugs = bugs::collect(&self.runs);
    }

    /// Counts the scenarios of every run by status.
    pub fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for scenario in self.runs.iter().flat_map(|run| &run.scenarios) {
            match scenario.status {
                Status::Passed => totals.passed += 1,
                Status::Failed => totals.failed += 1,
                Status::Error => totals.errors += 1,
            }
        }
        totals
    }

    /// Writes `out_dir/report.json` (pretty-printed), creating `out_dir` if needed.
    pub fn write_json(&self, out_dir: &Path) -> io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        json.push(b'\n');
        std::fs::create_dir_all(out_dir)?;
        write_atomic(&out_dir.join(REPORT_JSON), &json)
    }

    /// Writes `out_dir/junit.xml`, creating `out_dir` if needed. Each test case carries the tail
    /// of its console log (resolved against `out_dir`) as system-out.
    pub fn write_junit(&self, out_dir: &Path) -> io::Result<()> {
        let xml = junit::render(self, out_dir)?;
        std::fs::create_dir_all(out_dir)?;
        write_atomic(&out_dir.join(JUNIT_XML), xml.as_bytes())
    }

    /// Writes `out_dir/report.kcidb.json`: the run in KernelCI's KCIDB format (schema 5.3), with
    /// the console tails of failed scenarios as log excerpts.
    pub fn write_kcidb(&self, out_dir: &Path) -> io::Result<()> {
        let mut json =
            serde_json::to_vec_pretty(&kcidb::render(self, out_dir)).map_err(io::Error::other)?;
        json.push(b'\n');
        std::fs::create_dir_all(out_dir)?;
        write_atomic(&out_dir.join(REPORT_KCIDB), &json)
    }

    /// Writes every output of a run into `out_dir`: report.json, junit.xml, report.html and
    /// report.kcidb.json.
    pub fn write_all(&self, out_dir: &Path) -> io::Result<()> {
        self.write_json(out_dir)?;
        self.write_junit(out_dir)?;
        self.write_html(out_dir)?;
        self.write_kcidb(out_dir)
    }

    /// Writes `out_dir/report.html`, a self-contained page with no external assets, creating
    /// `out_dir` if needed.
    pub fn write_html(&self, out_dir: &Path) -> io::Result<()> {
        let page = html::render(self);
        std::fs::create_dir_all(out_dir)?;
        write_atomic(&out_dir.join(REPORT_HTML), page.as_bytes())
    }

    /// The terminal summary: one row per (kernel, scenario), two or three lines per mass probe,
    /// then a totals line. Fits in 100 columns; control characters from the guest are replaced
    /// so they cannot drive the terminal.
    pub fn summary(&self) -> String {
        summary::render(self)
    }

    /// Reads a report.json, rejecting other schema versions.
    pub fn load(path: &Path) -> Result<Report, ReportError> {
        let bytes = std::fs::read(path).map_err(|source| ReportError::Read {
            path: path.to_owned(),
            source,
        })?;
        let report: Report =
            serde_json::from_slice(&bytes).map_err(|source| ReportError::Parse {
                path: path.to_owned(),
                source,
            })?;
        if report.schema != SCHEMA_VERSION {
            return Err(ReportError::UnsupportedSchema {
                path: path.to_owned(),
                found: report.schema,
            });
        }
        Ok(report)
    }

    /// Makes every relative `console_log` relative to `base` instead of the report's own out
    /// dir: `base.join(console_log)`. Call it with the loaded report's directory before
    /// [`Report::merge`] when the merged report is written elsewhere, so its links still work.
    pub fn rebase_console_logs(&mut self, base: &Path) {
        for scenario in self.runs.iter_mut().flat_map(|run| &mut run.scenarios) {
            if !scenario.console_log.is_empty() && Path::new(&scenario.console_log).is_relative() {
                scenario.console_log = base.join(&scenario.console_log).display().to_string();
            }
        }
    }

    /// Combines several reports (e.g. the shards of a matrix) into one.
    ///
    /// - Runs of the same kernel `spec` become one run (the first non-empty `release` wins);
    ///   runs are ordered by spec and scenarios by name, each scenario once (a verdict beats an
    ///   infrastructure error), so the order of the inputs does not matter and merging a
    ///   report with itself changes nothing.
    /// - `started_at` is the earliest start.
    /// - `duration_s` is the **span** from the earliest start to the latest end
    ///   (`started_at + duration_s` of each report), which is the wall-clock time whether the
    ///   inputs ran one after another or as parallel shards. When a `started_at` cannot be
    ///   parsed (or a duration is negative or not finite) the span is unknowable and the
    ///   **maximum** duration is used instead.
    /// - `host` fields are kept when all reports agree, otherwise the distinct values are
    ///   sorted and joined with `", "`.
    /// - `bugs` are recomputed over the merged runs.
    /// - Merging no reports gives an empty report with an empty `started_at`.
    pub fn merge(reports: Vec<Report>) -> Report {
        merge::merge(reports)
    }
}
