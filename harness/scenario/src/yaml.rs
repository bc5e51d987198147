//! The scenario file as serde sees it.
//!
//! Every check that concerns a single value runs *inside* a visitor method: serde_yaml_ng
//! stamps an error with the position of the node being visited only while that visit is under
//! way, so this is what makes a bad duration or regex point at its own line and column.

use std::fmt;
use std::time::Duration;

use modharness_protocol::Step;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::step_args::{Branches, LoadArgs, RepeatArgs, ShellCommand, SleepMillis, StormArgs};
use crate::{normalize_module_name, Expect, VmSettings, FINDING_KINDS, STEP_KINDS};

/// The longest module name the kernel accepts (`MODULE_NAME_LEN` - 1 on 64-bit).
const MAX_MODULE_NAME_LEN: usize = 55;
/// Guest memory bounds: below this a distribution kernel does not boot with our initramfs.
const MIN_MEMORY_MIB: u32 = 64;
const MAX_MEMORY_MIB: u32 = 16 * 1024;
/// Guest CPU bounds.
const MAX_CPUS: u32 = 8;

/// The whole file, before the checks that need context from outside it.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a scenario: a mapping with keys name, description, long, vm, modules, steps, expect"
)]
pub(crate) struct RawScenario {
    #[serde(deserialize_with = "scenario_name")]
    pub name: String,
    #[serde(default, deserialize_with = "text")]
    pub description: String,
    #[serde(default, deserialize_with = "flag")]
    pub long: bool,
    #[serde(default)]
    pub vm: VmSettings,
    #[serde(default)]
    pub modules: Vec<ModuleName>,
    pub steps: Steps,
    #[serde(default)]
    pub expect: Expect,
}

/// Deserializes a scalar through its text, with `parse` deciding what it means. serde_yaml_ng
/// hands plain scalars over as written, so `0x10` stays `0x10` and `1.50` stays `1.50`.
pub(crate) fn parse_scalar<'de, D, T>(
    deserializer: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct ScalarVisitor<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<T> Visitor<'_> for ScalarVisitor<T> {
        type Value = T;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            (self.parse)(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(ScalarVisitor { expecting, parse })
}

/// Any scalar, as text.
pub(crate) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    parse_scalar(deserializer, "a string", |text| Ok(text.to_owned()))
}

/// Extra kernel command-line words: anything but `--`, after which the kernel would hand the
/// harness's own options to init as arguments, and control characters.
pub(crate) fn kernel_args<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    parse_scalar(deserializer, "kernel command-line options", |text| {
        if text.split_whitespace().any(|word| word == "--") {
            Err(
                "`--` in cmdline; expected kernel options only (after `--` the kernel would pass \
                 the harness's own options to init)"
                    .to_owned(),
            )
        } else if text.chars().any(|c| c.is_control() && c != ' ') {
            Err("a control character in cmdline; expected kernel options on one line".to_owned())
        } else {
            Ok(text.to_owned())
        }
    })
}

/// `true` or `false`.
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    parse_scalar(deserializer, "true or false", |text| match text {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("invalid flag `{text}`; expected true or false")),
    })
}

fn scenario_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    parse_scalar(deserializer, "a scenario name", parse_scenario_name)
}

/// A scenario name is also a file name and a report key: keep it tame.
pub(crate) fn parse_scenario_name(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "invalid scenario name `{text}`; expected lower-case letters, digits, `_` and `-`, \
             starting with a letter or digit (like `timer-race`)"
        ))
    }
}

/// A module name as the kernel knows it: `-` normalized to `_`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModuleName(pub String);

impl<'de> Deserialize<'de> for ModuleName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a module name", parse_module_name).map(ModuleName)
    }
}

/// Deserializes an optional module name (for `expect.findings[].module`).
pub(crate) fn optional_module<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(Option::<ModuleName>::deserialize(deserializer)?.map(|name| name.0))
}

pub(crate) fn parse_module_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty module name; expected a name like `race_timer`".to_owned());
    }
    if let Some(stem) = text.strip_suffix(".ko") {
        return Err(format!(
            "`{text}` is a file name; expected the module's name (`{stem}`)"
        ));
    }
    if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "invalid module name `{text}`; expected letters, digits, `_` and `-` only"
        ));
    }
    if text.len() > MAX_MODULE_NAME_LEN {
        return Err(format!(
            "module name `{text}` is longer than the kernel's limit of {MAX_MODULE_NAME_LEN} characters"
        ));
    }
    Ok(normalize_module_name(text))
}

pub(crate) fn cpus<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    parse_scalar(deserializer, "a CPU count from 1 to 8", |text| {
        text.parse::<u32>()
            .ok()
            .filter(|count| (1..=MAX_CPUS).contains(count))
            .ok_or_else(|| {
                format!("invalid CPU count `{text}`; expected a whole number from 1 to {MAX_CPUS}")
            })
    })
}

pub(crate) fn memory_mib<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    parse_scalar(deserializer, "a memory size like `512M`", parse_memory_mib)
}

/// `512M`, `512MiB`, `1G`, `1GiB`, or a bare number of MiB.
pub(crate) fn parse_memory_mib(text: &str) -> Result<u32, String> {
    let expected = "expected a size like `512M`, `1G` or `256` (MiB)";
    let (digits, unit) = split_number(text);
    let mib_per_unit: u64 = match unit {
        "" | "M" | "MiB" | "m" => 1,
        "G" | "GiB" | "g" => 1024,
        _ => return Err(format!("invalid memory size `{text}`; {expected}")),
    };
    let mib = digits
        .parse::<u64>()
        .map_err(|_| format!("invalid memory size `{text}`; {expected}"))?
        .saturating_mul(mib_per_unit);
    if mib < u64::from(MIN_MEMORY_MIB) {
        return Err(format!(
            "memory size `{text}` is too small; expected at least {MIN_MEMORY_MIB}M"
        ));
    }
    if mib > u64::from(MAX_MEMORY_MIB) {
        return Err(format!(
            "memory size `{text}` is too large; expected at most {}G",
            MAX_MEMORY_MIB / 1024
        ));
    }
    Ok(mib as u32)
}

pub(crate) fn timeout<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    parse_scalar(deserializer, "a duration like `60s`", |text| {
        let duration = parse_duration(text)?;
        if duration.is_zero() {
            return Err(format!(
                "timeout `{text}` is zero; expected a duration like `60s`"
            ));
        }
        Ok(duration)
    })
}

/// `500ms`, `60s`, `2m` or `1h`: a whole number and a unit.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected = "expected a whole number and a unit: `500ms`, `60s`, `2m` or `1h`";
    let (digits, unit) = split_number(text);
    let count: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration `{text}`; {expected}"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60 * 1000,
        "h" => 60 * 60 * 1000,
        _ => return Err(format!("invalid duration `{text}`; {expected}")),
    };
    count
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration `{text}` is too long"))
}

/// Splits `512M` into `("512", "M")`.
fn split_number(text: &str) -> (&str, &str) {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.split_at(digits_end)
}

pub(crate) fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    parse_scalar(
        deserializer,
        "a number of bytes like `4096` or `4K`",
        parse_bytes,
    )
}

/// `4096`, `4K`, `1M` or `1G` (binary units, an optional `iB`).
pub(crate) fn parse_bytes(text: &str) -> Result<u64, String> {
    let expected = "expected a number of bytes like `4096`, `4K` or `1M`";
    let (digits, unit) = split_number(text);
    let bytes_per_unit: u64 = match unit {
        "" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(format!("invalid size `{text}`; {expected}")),
    };
    digits
        .parse::<u64>()
        .map_err(|_| format!("invalid size `{text}`; {expected}"))?
        .checked_mul(bytes_per_unit)
        .ok_or_else(|| format!("size `{text}` is too large"))
}

fn check_kind(text: &str) -> Result<String, String> {
    if FINDING_KINDS.contains(&text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "unknown finding kind `{text}`; expected one of: {}",
            FINDING_KINDS.join(", ")
        ))
    }
}

/// `kind: oops`, or `kind: [oops, kasan]` for a bug that shows as either (a debug kernel's
/// checks may report it before it oopses).
pub(crate) fn finding_kinds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    struct Kind(String);
    impl<'de> Deserialize<'de> for Kind {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            parse_scalar(deserializer, "a finding kind like `oops`", check_kind).map(Kind)
        }
    }
    struct KindsVisitor;
    impl<'de> Visitor<'de> for KindsVisitor {
        type Value = Vec<String>;
        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a finding kind like `oops`, or a list of them")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<String>, E> {
            check_kind(text).map(|kind| vec![kind]).map_err(E::custom)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut kinds = Vec::new();
            while let Some(Kind(kind)) = seq.next_element()? {
                kinds.push(kind);
            }
            if kinds.is_empty() {
                return Err(de::Error::custom(
                    "an empty list of finding kinds matches nothing",
                ));
            }
            Ok(kinds)
        }
    }
    deserializer.deserialize_any(KindsVisitor)
}

pub(crate) fn optional_title<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<regex::Regex>, D::Error> {
    struct Title(regex::Regex);
    impl<'de> Deserialize<'de> for Title {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            parse_scalar(
                deserializer,
                "a title pattern (a regular expression)",
                |text| {
                    regex::Regex::new(text).map(Title).map_err(|error| {
                        format!(
                            "invalid title pattern `{text}`: {}; expected a regular expression",
                            regex_problem(&error)
                        )
                    })
                },
            )
        }
    }
    Ok(Option::<Title>::deserialize(deserializer)?.map(|title| title.0))
}

/// The one-line gist of a regex error, whose display draws a multi-line caret diagram.
fn regex_problem(error: &regex::Error) -> String {
    let display = error.to_string();
    let last_line = display.lines().rev().find(|line| !line.trim().is_empty());
    let last_line = last_line.unwrap_or(&display).trim();
    last_line
        .strip_prefix("error: ")
        .unwrap_or(last_line)
        .to_owned()
}

/// A non-empty list of steps.
pub(crate) struct Steps(pub Vec<Step>);

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        StepsSeed {
            expecting: "a list of steps",
        }
        .deserialize(deserializer)
    }
}

/// A non-empty list of steps, with what to call it in a type error.
pub(crate) struct StepsSeed {
    pub(crate) expecting: &'static str,
}

impl<'de> DeserializeSeed<'de> for StepsSeed {
    type Value = Steps;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Steps, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for StepsSeed {
    type Value = Steps;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str(self.expecting)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Steps, A::Error> {
        let mut steps = Vec::new();
        while let Some(YamlStep(step)) = seq.next_element()? {
            steps.push(step);
        }
        if steps.is_empty() {
            return Err(de::Error::custom(
                "empty list of steps; expected at least one step",
            ));
        }
        Ok(Steps(steps))
    }
}

/// The key that says what a step does.
#[derive(Clone, Copy)]
enum StepKind {
    Load,
    Unload,
    Sleep,
    Repeat,
    Parallel,
    Shell,
    IrqStorm,
    MassProbe,
}

impl StepKind {
    fn parse(text: &str) -> Result<StepKind, String> {
        Ok(match text {
            "load" => StepKind::Load,
            "unload" => StepKind::Unload,
            "sleep" => StepKind::Sleep,
            "repeat" => StepKind::Repeat,
            "parallel" => StepKind::Parallel,
            "shell" => StepKind::Shell,
            "irq_storm" => StepKind::IrqStorm,
            "mass_probe" => StepKind::MassProbe,
            _ => {
                return Err(format!(
                    "unknown step `{text}`; expected one of: {}",
                    STEP_KINDS.join(", ")
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            StepKind::Load => "load",
            StepKind::Unload => "unload",
            StepKind::Sleep => "sleep",
            StepKind::Repeat => "repeat",
            StepKind::Parallel => "parallel",
            StepKind::Shell => "shell",
            StepKind::IrqStorm => "irq_storm",
            StepKind::MassProbe => "mass_probe",
        }
    }
}

impl<'de> Deserialize<'de> for StepKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a step name", StepKind::parse)
    }
}

/// One step: a mapping with exactly one key, the step's kind.
struct YamlStep(Step);

impl<'de> Deserialize<'de> for YamlStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = YamlStep;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(
            formatter,
            "a step: a mapping with one key, one of: {}",
            STEP_KINDS.join(", ")
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YamlStep, A::Error> {
        let Some(kind) = map.next_key::<StepKind>()? else {
            return Err(de::Error::custom(format!(
                "empty step; expected one of: {}",
                STEP_KINDS.join(", ")
            )));
        };
        let step = match kind {
            StepKind::Load => {
                let LoadArgs { module, params } = map.next_value()?;
                Step::Load { module, params }
            }
            StepKind::Unload => Step::Unload {
                module: map.next_value::<ModuleName>()?.0,
            },
            StepKind::Sleep => Step::Sleep {
                ms: map.next_value::<SleepMillis>()?.0,
            },
            StepKind::Repeat => {
                let RepeatArgs { times, steps } = map.next_value()?;
                Step::Repeat {
                    times: times.0,
                    steps: steps.0,
                }
            }
            StepKind::Parallel => Step::Parallel {
                branches: map.next_value::<Branches>()?.0,
            },
            StepKind::Shell => Step::Shell {
                command: map.next_value::<ShellCommand>()?.0,
            },
            StepKind::IrqStorm => {
                let StormArgs {
                    device,
                    rate,
                    duration,
                } = map.next_value()?;
                Step::IrqStorm {
                    device: device.0,
                    rate: rate.0,
                    duration_ms: duration.0,
                }
            }
            StepKind::MassProbe => map.next_value::<crate::probe_args::MassProbe>()?.0,
        };
        map.next_key_seed(SecondKey { first: kind })?;
        Ok(YamlStep(step))
    }
}

/// A key after a step's first one: always an error, raised on that key so it points there.
struct SecondKey {
    first: StepKind,
}

impl<'de> DeserializeSeed<'de> for SecondKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for SecondKey {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("no second key in a step")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        let first = self.first.name();
        if matches!(self.first, StepKind::Load) && (key == "params" || key == "module") {
            return Err(E::custom(format!(
                "`{key}` belongs inside `load`; expected `load: {{ module: NAME, params: {{ KEY: VALUE }} }}`"
            )));
        }
        Err(E::custom(format!(
            "a step has exactly one key, but this one has `{key}` besides `{first}`; \
             expected each step as its own list item (`- {key}: ...`)"
        )))
    }
}
