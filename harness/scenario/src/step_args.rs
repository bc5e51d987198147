//! The arguments of each step kind: `load`, `sleep`, `repeat`, `parallel`, `shell`, `irq_storm`
//! (`mass_probe`'s are in probe_args.rs).

use std::collections::BTreeMap;
use std::fmt;

use modharness_protocol::Step;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::yaml::{parse_duration, parse_module_name, parse_scalar, ModuleName, Steps, StepsSeed};

/// `load: NAME` or `load: { module: NAME, params: { KEY: VALUE } }`.
pub(crate) struct LoadArgs {
    pub(crate) module: String,
    pub(crate) params: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`load` arguments: { module: NAME, params: { KEY: VALUE } }"
)]
pub(crate) struct LoadMapping {
    module: ModuleName,
    #[serde(default)]
    params: BTreeMap<ParamName, ParamValue>,
}

impl<'de> Deserialize<'de> for LoadArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LoadArgsVisitor)
    }
}

struct LoadArgsVisitor;

impl<'de> Visitor<'de> for LoadArgsVisitor {
    type Value = LoadArgs;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a module name, or { module: NAME, params: { KEY: VALUE } }")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<LoadArgs, E> {
        Ok(LoadArgs {
            module: parse_module_name(text).map_err(E::custom)?,
            params: BTreeMap::new(),
        })
    }

    fn visit_unit<E: de::Error>(self) -> Result<LoadArgs, E> {
        Err(E::custom(
            "`load` without a module; expected `load: NAME` or `load: { module: NAME, params: { KEY: VALUE } }`",
        ))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LoadArgs, A::Error> {
        let LoadMapping { module, params } =
            LoadMapping::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(LoadArgs {
            module: module.0,
            params: params
                .into_iter()
                .map(|(name, value)| (name.0, value.0))
                .collect(),
        })
    }
}

/// A module parameter's name: it ends up in a `name=value` string, so no `=` or blanks.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ParamName(pub(crate) String);

impl<'de> Deserialize<'de> for ParamName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a parameter name", |text| {
            let valid = !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if valid {
                Ok(ParamName(text.to_owned()))
            } else {
                Err(format!(
                    "invalid parameter name `{text}`; expected letters, digits, `_`, `-` and `.` only"
                ))
            }
        })
    }
}

/// A module parameter's value: any scalar, kept as written.
pub(crate) struct ParamValue(pub(crate) String);

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a string, number or boolean", |text| {
            // `~` is YAML's null, which the text of a plain scalar does not reveal otherwise.
            if text.is_empty() || text == "~" {
                Err("empty parameter value; expected a string, number or boolean (a flag is `name: 1`)".to_owned())
            } else if text.contains('"') || text.chars().any(char::is_control) {
                // The kernel splits a parameter string at spaces outside double quotes and has no
                // escape: a quote in a value would end it and smuggle in parameters of its own.
                Err(format!(
                    "parameter value {text:?} holds a double quote or a control character; \
                     expected a value without them (spaces are fine: the value is quoted)"
                ))
            } else {
                Ok(ParamValue(text.to_owned()))
            }
        })
    }
}

pub(crate) struct SleepMillis(pub(crate) u64);

impl<'de> Deserialize<'de> for SleepMillis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a duration like `200ms`", |text| {
            let millis = parse_duration(text)?.as_millis();
            u64::try_from(millis)
                .map(SleepMillis)
                .map_err(|_| format!("duration `{text}` is too long"))
        })
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`repeat` arguments: { times: N, steps: [...] }"
)]
pub(crate) struct RepeatArgs {
    pub(crate) times: RepeatCount,
    pub(crate) steps: Steps,
}

pub(crate) struct RepeatCount(pub(crate) u32);

impl<'de> Deserialize<'de> for RepeatCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a repeat count of at least 1", |text| {
            text.parse::<u32>()
                .ok()
                .filter(|&times| times >= 1)
                .map(RepeatCount)
                .ok_or_else(|| {
                    format!(
                        "invalid repeat count `{text}`; expected a whole number from 1 to {}",
                        u32::MAX
                    )
                })
        })
    }
}

/// At least two lists of steps, run side by side.
pub(crate) struct Branches(pub(crate) Vec<Vec<Step>>);

impl<'de> Deserialize<'de> for Branches {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(BranchesVisitor)
    }
}

struct BranchesVisitor;

impl<'de> Visitor<'de> for BranchesVisitor {
    type Value = Branches;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of branches, each a list of steps: [ [...], [...] ]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Branches, A::Error> {
        let mut branches = Vec::new();
        while let Some(Steps(branch)) = seq.next_element_seed(StepsSeed {
            expecting: "a branch: a list of steps (`parallel` takes a list of lists)",
        })? {
            branches.push(branch);
        }
        if branches.len() < 2 {
            return Err(de::Error::custom(format!(
                "`parallel` needs at least 2 branches, found {}; expected a list of step lists: [ [...], [...] ]",
                branches.len()
            )));
        }
        Ok(Branches(branches))
    }
}

pub(crate) struct ShellCommand(pub(crate) String);

impl<'de> Deserialize<'de> for ShellCommand {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a shell command", |text| {
            if text.trim().is_empty() {
                Err("empty shell command; expected a command for `/bin/sh -c`".to_owned())
            } else {
                Ok(ShellCommand(text.to_owned()))
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`irq_storm` arguments: { device: edu, rate: 20000, duration: 2s }"
)]
pub(crate) struct StormArgs {
    pub(crate) device: StormDevice,
    pub(crate) rate: StormRate,
    pub(crate) duration: SleepMillis,
}

pub(crate) struct StormDevice(pub(crate) String);

impl<'de> Deserialize<'de> for StormDevice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a storm device", |text| {
            if modharness_protocol::STORM_DEVICES.contains(&text) {
                Ok(StormDevice(text.to_owned()))
            } else {
                Err(format!(
                    "unknown storm device `{text}`; expected one of: {}",
                    modharness_protocol::STORM_DEVICES.join(", ")
                ))
            }
        })
    }
}

/// Interrupts per second.
pub(crate) struct StormRate(pub(crate) u32);

impl<'de> Deserialize<'de> for StormRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a rate in interrupts per second", |text| {
            text.parse::<u32>()
                .ok()
                .filter(|rate| (1..=1_000_000).contains(rate))
                .map(StormRate)
                .ok_or_else(|| {
                    format!("invalid rate `{text}`; expected interrupts per second, 1 to 1000000")
                })
        })
    }
}
