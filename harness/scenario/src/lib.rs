//! Scenario YAML: parsing, validation with file:line:column errors, and expectation matching.
//!
//! A scenario file is checked completely before anything boots: [`parse`] (or [`load`]) turns it
//! into a [`Scenario`] whose steps are the agent's [`Step`]s, or into a [`ScenarioError`] that
//! names `file:line:column` and says what was expected. [`Scenario::check_modules`] adds the one
//! check that needs to know which modules exist. After a run, [`judge`] compares what was found
//! with what the scenario expected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use modharness_protocol::Step;
use serde::Deserialize;

mod devices;
mod locate;
mod matrix;
mod probe_args;
mod step_args;
mod yaml;

pub use devices::{DEVICES, INSTALLER, INSTALLER_DEVICES};
use locate::Segment;
pub use matrix::{load_matrix, parse_matrix, KernelCells, Matrix, MatrixKernel};

/// The step kinds this version runs, as written in a scenario file.
pub const STEP_KINDS: &[&str] = &[
    "load",
    "unload",
    "sleep",
    "repeat",
    "parallel",
    "shell",
    "irq_storm",
    "mass_probe",
];

/// The finding kinds an expectation may name.
pub const FINDING_KINDS: &[&str] = &[
    "oops",
    "panic",
    "warning",
    "kasan",
    "ubsan",
    "kfence",
    "kcsan",
    "lockdep",
    "hung_task",
    "soft_lockup",
    "hard_lockup",
    "rcu_stall",
    "workqueue_lockup",
    "kmemleak",
    "bad_page",
    "bug",
    "netdev_ref_leak",
    "leak",
    "hang",
    "vm_crash",
];

/// A validated scenario file.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The scenario's name; equal to the file's stem.
    pub name: String,
    /// What the scenario checks, for people (empty when not given).
    pub description: String,
    /// The file it was read from.
    pub file: PathBuf,
    /// The guest machine.
    pub vm: VmSettings,
    /// Modules to make available in the guest beyond those the steps name (normalized names,
    /// in file order).
    pub modules: Vec<String>,
    /// What the agent does, in order (module names normalized).
    pub steps: Vec<Step>,
    /// What a run must find, and nothing else.
    pub expect: Expect,
    /// Takes minutes (a whole-tree mass probe): left out of the default suite, run by name.
    pub long: bool,
}

/// The guest machine a scenario asks for (`vm:`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "VM settings: a mapping with keys cpus, memory, cmdline, timeout, devices"
)]
pub struct VmSettings {
    /// Virtual CPUs, 1 to 8 (default 2).
    #[serde(deserialize_with = "yaml::cpus")]
    pub cpus: u32,
    /// Guest memory in MiB (default 512); written `512M`, `1G` or `256`.
    #[serde(rename = "memory", deserialize_with = "yaml::memory_mib")]
    pub memory_mib: u32,
    /// Extra kernel command-line arguments (default none).
    #[serde(deserialize_with = "yaml::kernel_args")]
    pub cmdline: String,
    /// How long the whole run may take before it counts as a hang (default 120s); written
    /// `500ms`, `60s`, `2m` or `1h`.
    #[serde(deserialize_with = "yaml::timeout")]
    pub timeout: Duration,
    /// Emulated devices to add (names from [`DEVICES`], presets such as [`INSTALLER`]
    /// expanded, each once); any device puts the guest on a PC machine instead of `microvm`,
    /// which has no PCI.
    #[serde(deserialize_with = "devices::devices")]
    pub devices: Vec<String>,
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            cpus: 2,
            memory_mib: 512,
            cmdline: String::new(),
            timeout: Duration::from_secs(120),
            devices: Vec::new(),
        }
    }
}

/// What a run of the scenario must produce (`expect:`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    expecting = "expectations: a mapping with keys findings, memory"
)]
pub struct Expect {
    /// Findings that must appear; any finding matching none of them fails the scenario. Empty
    /// (the default) means nothing may be found.
    pub findings: Vec<ExpectedFinding>,
    /// A bound on memory growth across load/unload cycles, if the scenario sets one.
    pub memory: Option<MemoryExpectation>,
}

/// One finding a run must produce.
#[derive(Clone, Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an expected finding: a mapping with keys kind, module, title"
)]
pub struct ExpectedFinding {
    /// Any of these [`FINDING_KINDS`] (`kind: oops` or `kind: [oops, kasan]`).
    #[serde(rename = "kind", deserialize_with = "yaml::finding_kinds")]
    pub kinds: Vec<String>,
    /// The module the finding must be attributed to (normalized); any when `None`.
    #[serde(default, deserialize_with = "yaml::optional_module")]
    pub module: Option<String>,
    /// A pattern the finding's title must contain a match of; any title when `None`.
    #[serde(default, deserialize_with = "yaml::optional_title")]
    pub title: Option<regex::Regex>,
}

impl PartialEq for ExpectedFinding {
    fn eq(&self, other: &Self) -> bool {
        self.kinds == other.kinds
            && self.module == other.module
            && self.title.as_ref().map(regex::Regex::as_str)
                == other.title.as_ref().map(regex::Regex::as_str)
    }
}

impl ExpectedFinding {
    /// Whether `found` is a finding this expectation describes.
    pub fn matches(&self, found: &FoundFinding<'_>) -> bool {
        self.kinds.iter().any(|kind| kind == found.kind)
            && self.module.as_ref().is_none_or(|module| {
                found.module.map(normalize_module_name).as_ref() == Some(module)
            })
            && self
                .title
                .as_ref()
                .is_none_or(|title| title.is_match(found.title))
    }
}

/// A bound on memory that does not come back after unloading (`expect.memory`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a memory expectation: a mapping with key max_leak_bytes_per_cycle"
)]
pub struct MemoryExpectation {
    /// The largest growth per load/unload cycle still counted as clean; written `4096` or `4K`.
    #[serde(deserialize_with = "yaml::bytes")]
    pub max_leak_bytes_per_cycle: u64,
}

/// Why a scenario file was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_error(file, *line, *column, message))]
pub struct ScenarioError {
    /// The scenario file (or the argument that should have named one).
    pub file: PathBuf,
    /// 1-based line; 0 when the error concerns the whole file.
    pub line: usize,
    /// 1-based column; 0 when the error concerns the whole file.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

fn render_error(file: &Path, line: usize, column: usize, message: &str) -> String {
    if line == 0 {
        format!("{}: {message}", file.display())
    } else {
        format!("{}:{line}:{column}: {message}", file.display())
    }
}

impl ScenarioError {
    /// An error about the whole file (unreadable, empty, ...).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        ScenarioError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
        }
    }

    /// An error at a position, or about the whole file when the position is unknown.
    fn at(file: &Path, position: Option<(usize, usize)>, message: impl Into<String>) -> Self {
        let (line, column) = position.unwrap_or((0, 0));
        ScenarioError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Rewords a serde_yaml_ng error: its position goes into the fields, and the message loses
    /// the `at line L column C` suffix and the `steps[0].load:` path prefix, which the position
    /// makes redundant.
    fn from_yaml(file: &Path, error: &serde_yaml_ng::Error) -> Self {
        let mut message = error.to_string();
        let position = error.location().map(|location| {
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(start) = message.find(&suffix) {
                message.replace_range(start..start + suffix.len(), "");
            }
            (location.line(), location.column())
        });
        if let Some((prefix, rest)) = message.split_once(": ") {
            let is_path = !prefix.is_empty()
                && !prefix.contains(|c: char| c.is_whitespace() || c == '`' || c == ':');
            if is_path {
                message = rest.to_owned();
            }
        }
        // serde speaks of struct fields; a scenario author writes keys.
        for (field_word, key_word) in [
            ("unknown field ", "unknown key "),
            ("missing field ", "missing key "),
        ] {
            if let Some(rest) = message.strip_prefix(field_word) {
                message = format!("{key_word}{rest}");
            }
        }
        ScenarioError::at(file, position, message)
    }
}

/// Normalizes a module name the way the kernel does: `-` becomes `_`.
pub fn normalize_module_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses and validates a scenario; `file` is where `text` came from, used in errors and
/// checked against the scenario's name when it ends in `.yaml` or `.yml`.
pub fn parse(text: &str, file: &Path) -> Result<Scenario, ScenarioError> {
    if !has_content(text) {
        return Err(ScenarioError::whole_file(
            file,
            "the file is empty; expected a scenario with at least `name` and `steps`",
        ));
    }
    locate::reject_duplicate_keys(text).map_err(|error| ScenarioError::from_yaml(file, &error))?;
    let raw: yaml::RawScenario =
        serde_yaml_ng::from_str(text).map_err(|error| ScenarioError::from_yaml(file, &error))?;
    check_name_matches_file(&raw.name, text, file)?;
    check_mass_probe_placement(&raw.steps.0, text, file)?;
    Ok(Scenario {
        name: raw.name,
        description: raw.description,
        file: file.to_path_buf(),
        vm: raw.vm,
        modules: raw.modules.into_iter().map(|module| module.0).collect(),
        steps: raw.steps.0,
        expect: raw.expect,
        long: raw.long,
    })
}

/// A mass probe restarts its VM when a module crashes it, and goes on from there: that needs it
/// at the top level of the steps, and once.
fn check_mass_probe_placement(
    steps: &[Step],
    text: &str,
    file: &Path,
) -> Result<(), ScenarioError> {
    let is_probe = |s: &Step| matches!(s, Step::MassProbe { .. });
    let mut top_level = steps.iter().enumerate().filter(|(_, s)| is_probe(s));
    if let Some((second, _)) = top_level.nth(1) {
        let path = [
            Segment::Key("steps"),
            Segment::Index(second),
            Segment::Key("mass_probe"),
        ];
        return Err(ScenarioError::at(
            file,
            locate::locate(text, &path),
            "a second `mass_probe` step; expected at most one per scenario (use `rounds` to \
             probe again)",
        ));
    }
    for (index, step) in steps.iter().enumerate() {
        let nested = match step {
            Step::Repeat { steps, .. } => modharness_protocol::any_step(steps, &is_probe),
            Step::Parallel { branches } => branches
                .iter()
                .any(|b| modharness_protocol::any_step(b, &is_probe)),
            _ => false,
        };
        if nested {
            let path = [Segment::Key("steps"), Segment::Index(index)];
            return Err(ScenarioError::at(
                file,
                locate::locate(text, &path),
                "`mass_probe` inside `repeat` or `parallel`; expected it as a top-level step \
                 (its `rounds` repeat it)",
            ));
        }
    }
    Ok(())
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ScenarioError::whole_file(path, format!("cannot read the file: {error}"))
    })?;
    parse(&text, path)
}

/// Whether the text holds anything but blank lines, comments and document markers.
fn has_content(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !(line.is_empty() || line.starts_with('#') || line == "---" || line == "...")
    })
}

/// Reports and reports are keyed by name, and `modharness run NAME` finds `NAME.yaml`: the two
/// must agree.
fn check_name_matches_file(name: &str, text: &str, file: &Path) -> Result<(), ScenarioError> {
    let is_yaml = file
        .extension()
        .is_some_and(|extension| extension == "yaml" || extension == "yml");
    let Some(stem) = file.file_stem().and_then(|stem| stem.to_str()) else {
        return Ok(());
    };
    if !is_yaml || stem == name {
        return Ok(());
    }
    let file_name = file.file_name().unwrap_or_default().to_string_lossy();
    Err(ScenarioError::at(
        file,
        locate::locate(text, &[Segment::Key("name")]),
        format!(
            "scenario name `{name}` does not match the file name `{file_name}`; \
             expected `name: {stem}` (or rename the file to `{name}.yaml`)"
        ),
    ))
}

impl Scenario {
    /// Every module the scenario names, in `modules:` or in a step (normalized).
    pub fn module_names(&self) -> BTreeSet<String> {
        self.module_mentions()
            .into_iter()
            .map(|(module, _)| module.to_owned())
            .collect()
    }

    /// Checks that every module the scenario names exists; `text` is the file's text, as given
    /// to [`parse`], to point at the first unknown name.
    pub fn check_modules(
        &self,
        text: &str,
        is_known: impl Fn(&str) -> bool,
    ) -> Result<(), ScenarioError> {
        let Some((module, path)) = self
            .module_mentions()
            .into_iter()
            .find(|(module, _)| !is_known(module))
        else {
            return Ok(());
        };
        Err(ScenarioError::at(
            &self.file,
            locate::locate(text, &path),
            format!(
                "no module `{module}` in guest-modules/ or --modules dirs, nor in the kernel's \
                 modules; expected a module whose source is under guest-modules/ or in a \
                 directory given with --modules DIR (`modharness list modules` shows them)"
            ),
        ))
    }

    /// Each module name in document order, with the path to where the file names it.
    fn module_mentions(&self) -> Vec<(&str, Vec<Segment<'static>>)> {
        let mut mentions: Vec<_> = self
            .modules
            .iter()
            .enumerate()
            .map(|(index, module)| {
                (
                    module.as_str(),
                    vec![Segment::Key("modules"), Segment::Index(index)],
                )
            })
            .collect();
        collect_step_mentions(&self.steps, &[Segment::Key("steps")], &mut mentions);
        mentions
    }
}

fn collect_step_mentions<'s>(
    steps: &'s [Step],
    list_path: &[Segment<'static>],
    mentions: &mut Vec<(&'s str, Vec<Segment<'static>>)>,
) {
    for (index, step) in steps.iter().enumerate() {
        let mut path = list_path.to_vec();
        path.push(Segment::Index(index));
        match step {
            Step::Load { module, .. } => {
                path.extend([Segment::Key("load"), Segment::LoadedModule]);
                mentions.push((module, path));
            }
            Step::Unload { module } => {
                path.push(Segment::Key("unload"));
                mentions.push((module, path));
            }
            Step::Repeat { steps, .. } => {
                path.extend([Segment::Key("repeat"), Segment::Key("steps")]);
                collect_step_mentions(steps, &path, mentions);
            }
            Step::Parallel { branches } => {
                for (branch_index, branch) in branches.iter().enumerate() {
                    let mut branch_path = path.clone();
                    branch_path.extend([Segment::Key("parallel"), Segment::Index(branch_index)]);
                    collect_step_mentions(branch, &branch_path, mentions);
                }
            }
            Step::Sleep { .. }
            | Step::Shell { .. }
            | Step::IrqStorm { .. }
            | Step::MassProbe { .. } => {}
        }
    }
}

/// Resolves a `SCENARIO` argument: an existing file, or a name looked up as
/// `scenarios_dir/NAME.yaml`. A name is a scenario name (no `/`, no `..`), so it cannot reach
/// outside `scenarios_dir`.
pub fn find_scenario(arg: &str, scenarios_dir: &Path) -> Result<PathBuf, ScenarioError> {
    let as_path = Path::new(arg);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    if as_path.exists() {
        return Err(ScenarioError::whole_file(
            as_path,
            "not a file; expected a scenario YAML file or a scenario name",
        ));
    }
    if yaml::parse_scenario_name(arg).is_ok() {
        let candidate = scenarios_dir.join(format!("{arg}.yaml"));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let available = bundled_scenarios(scenarios_dir);
    let choices = if available.is_empty() {
        format!("{} has none", scenarios_dir.display())
    } else {
        format!("one of: {}", available.join(", "))
    };
    Err(ScenarioError::whole_file(
        as_path,
        format!(
            "no such file, and no scenario of that name in {}; expected a YAML path or a scenario name, {choices}",
            scenarios_dir.display()
        ),
    ))
}

/// Names of the `*.yaml` files in `scenarios_dir`, sorted.
pub fn bundled_scenarios(scenarios_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(scenarios_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            if path.extension()? != "yaml" {
                return None;
            }
            Some(path.file_stem()?.to_str()?.to_owned())
        })
        .collect();
    names.sort();
    names
}

/// A finding from a run, as [`judge`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoundFinding<'a> {
    /// Its kind, e.g. `oops`.
    pub kind: &'a str,
    /// The module it was attributed to, if any.
    pub module: Option<&'a str>,
    /// Its title, e.g. `BUG: unable to handle page fault in __run_timers`.
    pub title: &'a str,
}

/// What the expectations make of the findings of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    /// Per found finding: whether it matched an expectation.
    pub expected: Vec<bool>,
    /// Indexes into `expect.findings` of the expectations no finding matched.
    pub missing: Vec<usize>,
}

impl Judgement {
    /// Every finding was expected and every expectation was met.
    pub fn passed(&self) -> bool {
        self.missing.is_empty() && self.expected.iter().all(|&expected| expected)
    }
}

/// Matches a run's findings against the scenario's expectations. One expectation may match
/// several findings (a race may fire twice); a finding that matches none is unexpected.
pub fn judge(expect: &Expect, found: &[FoundFinding<'_>]) -> Judgement {
    let mut met = vec![false; expect.findings.len()];
    let expected = found
        .iter()
        .map(|finding| {
            let mut matched = false;
            for (expectation, met) in expect.findings.iter().zip(met.iter_mut()) {
                if expectation.matches(finding) {
                    *met = true;
                    matched = true;
                }
            }
            matched
        })
        .collect();
    let missing = met
        .iter()
        .enumerate()
        .filter(|(_, &met)| !met)
        .map(|(index, _)| index)
        .collect();
    Judgement { expected, missing }
}
