//! `mass_probe: { modules: modalias | all | [NAMES or GLOBS], rounds: N, skip: [...], shard: I/N }`.

use std::fmt;

use modharness_protocol::{ProbeSelection, Step};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::yaml::parse_scalar;

/// The most rounds a probe may ask for: each round of the whole tree takes minutes.
const MAX_ROUNDS: u32 = 100;
/// The most VMs one probe may run at once.
const MAX_VMS: u32 = 8;
/// The most shards a probe may be cut into.
const MAX_SHARDS: u32 = 1000;

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "`mass_probe` arguments: { modules: modalias | all | [NAMES], rounds: N, skip: [NAMES], shard: I/N, vms: N }"
)]
struct ProbeArgs {
    modules: Selection,
    #[serde(default)]
    rounds: Rounds,
    #[serde(default)]
    skip: Vec<Pattern>,
    #[serde(default)]
    shard: Option<Shard>,
    #[serde(default)]
    vms: Vms,
}

/// The value of a `mass_probe` key, as its step.
pub(crate) struct MassProbe(pub Step);

impl<'de> Deserialize<'de> for MassProbe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let args = ProbeArgs::deserialize(deserializer)?;
        if args.vms.0 > 1 && args.modules.0 == ProbeSelection::Modalias {
            return Err(de::Error::custom(
                "`vms` above 1 with `modules: modalias`; expected one VM: a modalias probe keeps \
                 the drivers it found so that the devices behind them appear, in its own VM",
            ));
        }
        Ok(MassProbe(Step::MassProbe {
            modules: args.modules.0,
            rounds: args.rounds.0,
            skip: args.skip.into_iter().map(|p| p.0).collect(),
            shard: args.shard.map(|s| (s.0, s.1)),
            vms: args.vms.0,
        }))
    }
}

struct Selection(ProbeSelection);

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SelectionVisitor)
    }
}

struct SelectionVisitor;

impl<'de> Visitor<'de> for SelectionVisitor {
    type Value = Selection;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("`modalias`, `all`, or a list of module names or globs")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Selection, E> {
        match text {
            "modalias" => Ok(Selection(ProbeSelection::Modalias)),
            "all" => Ok(Selection(ProbeSelection::All)),
            _ => Err(E::custom(format!(
                "unknown module selection `{text}`; expected `modalias`, `all`, or a list of \
                 module names or globs like [e1000*, ahci]"
            ))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Selection, A::Error> {
        let mut names = Vec::new();
        while let Some(Pattern(name)) = seq.next_element()? {
            names.push(name);
        }
        if names.is_empty() {
            return Err(de::Error::custom(
                "empty module list; expected at least one name or glob, or `all`",
            ));
        }
        Ok(Selection(ProbeSelection::Named(names)))
    }
}

/// A module name or a glob over names (`snd_*`, `e1000?`), normalized the kernel's way.
struct Pattern(String);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a module name or glob", |text| {
            let allowed = |c: char| c.is_ascii_alphanumeric() || "_-*?[]!^".contains(c);
            if text.is_empty() || !text.chars().all(allowed) {
                return Err(format!(
                    "invalid module name or glob `{text}`; expected letters, digits, `_`, `-` \
                     and the glob characters `*`, `?`, `[...]`"
                ));
            }
            Ok(Pattern(crate::normalize_module_name(text)))
        })
    }
}

struct Rounds(u32);

impl Default for Rounds {
    fn default() -> Self {
        Rounds(1)
    }
}

impl<'de> Deserialize<'de> for Rounds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a number of rounds", |text| {
            text.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_ROUNDS).contains(n))
                .map(Rounds)
                .ok_or_else(|| {
                    format!(
                        "invalid rounds `{text}`; expected a whole number from 1 to {MAX_ROUNDS}"
                    )
                })
        })
    }
}

/// VMs to split the probe across.
struct Vms(u32);

impl Default for Vms {
    fn default() -> Self {
        Vms(1)
    }
}

impl<'de> Deserialize<'de> for Vms {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a number of VMs", |text| {
            text.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_VMS).contains(n))
                .map(Vms)
                .ok_or_else(|| {
                    format!("invalid vms `{text}`; expected a whole number from 1 to {MAX_VMS}")
                })
        })
    }
}

/// `I/N`: the I-th of N shards, 1-based.
struct Shard(u32, u32);

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        parse_scalar(deserializer, "a shard like `1/4`", |text| {
            let bad = || {
                format!(
                    "invalid shard `{text}`; expected I/N with 1 <= I <= N <= {MAX_SHARDS}, like `1/4`"
                )
            };
            let (i, n) = text.split_once('/').ok_or_else(bad)?;
            let (i, n) = (
                i.trim().parse::<u32>().map_err(|_| bad())?,
                n.trim().parse::<u32>().map_err(|_| bad())?,
            );
            if i == 0 || i > n || n > MAX_SHARDS {
                return Err(bad());
            }
            Ok(Shard(i, n))
        })
    }
}
