//! Positions of YAML nodes, for checks that can only run after deserialization.
//!
//! serde gives no access to where a value sat in the text; serde_yaml_ng only attaches a position
//! to an *error*, raised while the deserializer stands on a node. So to find a node, [`locate`]
//! walks the document along a path and fails on purpose at the target: the error's location is
//! the node's. The same trick lets [`reject_duplicate_keys`] point at the second `key:` of a pair.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_yaml_ng::Value;

/// One step of a path from the document root to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    /// The value of this key in a mapping.
    Key(&'a str),
    /// This element of a sequence.
    Index(usize),
    /// The module of a `load` step: the node itself when it is a name, its `module:` value when
    /// it is the long form `{ module: NAME, params: ... }`.
    LoadedModule,
}

/// Marks the deliberate error that carries the target's position; no real message contains it.
const TARGET_REACHED: &str = "\u{0}modharness: target reached";

/// The 1-based line and column of the node at `path`, if the document has one there.
pub(crate) fn locate(text: &str, path: &[Segment<'_>]) -> Option<(usize, usize)> {
    let error = Probe { path }
        .deserialize(serde_yaml_ng::Deserializer::from_str(text))
        .err()?;
    if !error.to_string().contains(TARGET_REACHED) {
        return None;
    }
    error
        .location()
        .map(|location| (location.line(), location.column()))
}

/// Walks to the rest of `path`, then fails there.
struct Probe<'p> {
    path: &'p [Segment<'p>],
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.path.split_first() {
            None => deserializer.deserialize_any(Target),
            Some((Segment::Key(key), rest)) => deserializer.deserialize_map(FindKey { key, rest }),
            Some((Segment::Index(index), rest)) => deserializer.deserialize_seq(FindIndex {
                index: *index,
                rest,
            }),
            Some((Segment::LoadedModule, _)) => deserializer.deserialize_any(LoadedModule),
        }
    }
}

/// Fails on whatever node it is given, so that the error takes that node's position.
struct Target;

impl<'de> Visitor<'de> for Target {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(TARGET_REACHED))
    }
}

struct FindKey<'p> {
    key: &'p str,
    rest: &'p [Segment<'p>],
}

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "a mapping with key `{}`", self.key)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some(self.key) {
                return map.next_value_seed(Probe { path: self.rest });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct FindIndex<'p> {
    index: usize,
    rest: &'p [Segment<'p>],
}

impl<'de> Visitor<'de> for FindIndex<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(formatter, "a sequence of more than {} elements", self.index)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe { path: self.rest })?;
        Ok(())
    }
}

struct LoadedModule;

impl<'de> Visitor<'de> for LoadedModule {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a module name or a mapping with key `module`")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(TARGET_REACHED))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        FindKey {
            key: "module",
            rest: &[],
        }
        .visit_map(map)
    }
}

/// Fails at the first key that repeats an earlier key of the same mapping, anywhere in the
/// document. serde's derive would report a repeated field at the mapping's start, and a map
/// type would silently keep the last value.
pub(crate) fn reject_duplicate_keys(text: &str) -> Result<(), serde_yaml_ng::Error> {
    UniqueKeys::deserialize(serde_yaml_ng::Deserializer::from_str(text)).map(drop)
}

/// Any YAML value whose mappings, at every depth, have distinct keys.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E: de::Error>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_none<E: de::Error>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<UniqueKeys, A::Error> {
        // A tagged value (`!tag value`): check the value, the tag is the typed pass's business.
        let (_tag, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant::<UniqueKeys>(variant)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while map
            .next_key_seed(FirstOccurrence { seen: &mut seen })?
            .is_some()
        {
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

/// A mapping key that must not be in `seen` yet; scalar keys are compared by their text.
struct FirstOccurrence<'s> {
    seen: &'s mut HashSet<String>,
}

impl<'de> DeserializeSeed<'de> for FirstOccurrence<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FirstOccurrence<'_> {
    fn check<E: de::Error>(self, key: String) -> Result<(), E> {
        if self.seen.contains(&key) {
            return Err(E::custom(format!(
                "duplicate key `{key}`; each key may appear only once in a mapping"
            )));
        }
        self.seen.insert(key);
        Ok(())
    }
}

impl<'de> Visitor<'de> for FirstOccurrence<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a mapping key")
    }
    fn visit_bool<E: de::Error>(self, key: bool) -> Result<(), E> {
        self.check(key.to_string())
    }
    fn visit_i64<E: de::Error>(self, key: i64) -> Result<(), E> {
        self.check(key.to_string())
    }
    fn visit_u64<E: de::Error>(self, key: u64) -> Result<(), E> {
        self.check(key.to_string())
    }
    fn visit_f64<E: de::Error>(self, key: f64) -> Result<(), E> {
        self.check(key.to_string())
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<(), E> {
        self.check(key.to_owned())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.check("null".to_owned())
    }
    // Complex keys (a sequence or mapping used as a key) are not part of the format; the typed
    // pass rejects them with a better message, so here they only need their insides checked.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        UniqueKeysVisitor.visit_seq(seq).map(drop)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        UniqueKeysVisitor.visit_map(map).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
name: x
steps:
  - load: a
  - load: { module: b, params: { p: 1 } }
  - repeat:
      times: 2
      steps:
        - load:
            module: c
";

    #[test]
    fn locates_a_top_level_value() {
        assert_eq!(locate(DOC, &[Segment::Key("name")]), Some((1, 7)));
    }

    #[test]
    fn locates_nested_values_through_keys_and_indexes() {
        let short = [
            Segment::Key("steps"),
            Segment::Index(0),
            Segment::Key("load"),
        ];
        assert_eq!(locate(DOC, &short), Some((3, 11)));
        let nested = [
            Segment::Key("steps"),
            Segment::Index(2),
            Segment::Key("repeat"),
            Segment::Key("steps"),
            Segment::Index(0),
            Segment::Key("load"),
            Segment::LoadedModule,
        ];
        assert_eq!(locate(DOC, &nested), Some((9, 21)));
    }

    #[test]
    fn locates_the_module_of_a_long_form_load() {
        let path = [
            Segment::Key("steps"),
            Segment::Index(1),
            Segment::Key("load"),
            Segment::LoadedModule,
        ];
        assert_eq!(locate(DOC, &path), Some((4, 21)));
    }

    #[test]
    fn a_path_that_leads_nowhere_has_no_location() {
        assert_eq!(locate(DOC, &[Segment::Key("nope")]), None);
        assert_eq!(
            locate(DOC, &[Segment::Key("steps"), Segment::Index(9)]),
            None
        );
        assert_eq!(
            locate(DOC, &[Segment::Key("name"), Segment::Index(0)]),
            None
        );
    }

    #[test]
    fn a_repeated_key_is_reported_at_its_second_occurrence() {
        let error = reject_duplicate_keys("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        let location = error.location().unwrap();
        assert_eq!((location.line(), location.column()), (4, 3));
        assert!(error.to_string().contains("duplicate key `c`"), "{error}");
    }

    #[test]
    fn equal_keys_in_different_mappings_are_fine() {
        reject_duplicate_keys("- {a: 1}\n- {a: 2}\n").unwrap();
    }
}
