//! The kernel's own modules tree as a mass probe sees it: `modules.dep` for files and
//! dependencies, `modules.order` for the order, and the selection of a `mass_probe` step.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};

use modharness_protocol::ProbeSelection;

use crate::kernel::kernel_module_name;
use crate::modalias::fnmatch;

/// A module of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeModule {
    /// The file.
    pub path: PathBuf,
    /// Its dependencies in load order (modules.dep lists the closest first; they load last).
    pub deps: Vec<String>,
}

/// The modules of `/lib/modules/RELEASE`.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// Module names (as the kernel spells them) in `modules.order`, then any that only
    /// `modules.dep` names.
    pub order: Vec<String>,
    /// By module name.
    pub modules: HashMap<String, TreeModule>,
}

/// The module name of a tree path: `kernel/drivers/net/e1000e.ko` → `e1000e`.
fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    kernel_module_name(stem)
}

impl Tree {
    /// Read `dir/modules.dep` (required) and `dir/modules.order` (optional).
    pub fn read(dir: &Path) -> io::Result<Tree> {
        let dep = std::fs::read_to_string(dir.join("modules.dep"))
            .map_err(|e| io::Error::new(e.kind(), format!("{}/modules.dep: {e}", dir.display())))?;
        let order = std::fs::read_to_string(dir.join("modules.order")).unwrap_or_default();
        Ok(Tree::parse(dir, &dep, &order))
    }

    /// The tree described by the texts of `modules.dep` and `modules.order`, files under `dir`.
    pub fn parse(dir: &Path, dep: &str, order: &str) -> Tree {
        let mut tree = Tree::default();
        let mut dep_order = Vec::new();
        for line in dep.lines() {
            let Some((module, deps)) = line.split_once(':') else {
                continue;
            };
            let name = name_of(module.trim());
            let deps = deps.split_whitespace().rev().map(name_of).collect();
            let path = dir.join(module.trim());
            dep_order.push(name.clone());
            tree.modules.insert(name, TreeModule { path, deps });
        }
        let mut seen = BTreeSet::new();
        for name in order
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(name_of)
        {
            if tree.modules.contains_key(&name) && seen.insert(name.clone()) {
                tree.order.push(name);
            }
        }
        for name in dep_order {
            if seen.insert(name.clone()) {
                tree.order.push(name);
            }
        }
        tree
    }

    /// The modules a fixed selection names, in tree order, less `skip`, cut to the shard.
    /// `Modalias` selects nothing here: it is resolved against the guest's devices.
    pub fn select(
        &self,
        selection: &ProbeSelection,
        skip: &[String],
        shard: Option<(u32, u32)>,
    ) -> Vec<String> {
        let wanted = |name: &str| match selection {
            ProbeSelection::All => true,
            ProbeSelection::Named(patterns) => patterns.iter().any(|p| fnmatch(p, name)),
            ProbeSelection::Modalias => false,
        };
        let chosen = self.order.iter().filter(|n| wanted(n)).cloned();
        keep(chosen, skip, shard)
    }
}

/// `names` less those `skip` matches, cut to the `(I, N)` shard: every N-th, from the I-th.
pub fn keep(
    names: impl Iterator<Item = String>,
    skip: &[String],
    shard: Option<(u32, u32)>,
) -> Vec<String> {
    let (first, every) = shard.map_or((0, 1), |(i, n)| (i as usize - 1, n as usize));
    names
        .filter(|n| !skip.iter().any(|p| fnmatch(p, n)))
        .enumerate()
        .filter(|(i, _)| i % every == first)
        .map(|(_, n)| n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko: kernel/drivers/ptp/ptp.ko kernel/drivers/pps/pps_core.ko
kernel/drivers/ptp/ptp.ko: kernel/drivers/pps/pps_core.ko
kernel/drivers/pps/pps_core.ko:
kernel/sound/pci/hda/snd-hda-intel.ko: kernel/sound/core/snd.ko
kernel/sound/core/snd.ko:
kernel/fs/only-in-dep.ko:
";
    const ORDER: &str = "\
kernel/drivers/pps/pps_core.ko
kernel/drivers/ptp/ptp.ko
kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko
kernel/sound/core/snd.ko
kernel/sound/pci/hda/snd-hda-intel.ko
kernel/gone/not-in-dep.ko
";

    fn tree() -> Tree {
        Tree::parse(Path::new("/lib/modules/r"), DEP, ORDER)
    }

    #[test]
    fn dependencies_load_farthest_first_as_modprobe_loads_them() {
        let t = tree();
        assert_eq!(t.modules["e1000e"].deps, ["pps_core", "ptp"]);
        assert_eq!(
            t.modules["snd_hda_intel"].path,
            Path::new("/lib/modules/r/kernel/sound/pci/hda/snd-hda-intel.ko")
        );
    }

    #[test]
    fn the_order_is_modules_order_then_what_only_modules_dep_names() {
        assert_eq!(
            tree().order,
            [
                "pps_core",
                "ptp",
                "e1000e",
                "snd",
                "snd_hda_intel",
                "only_in_dep"
            ]
        );
    }

    #[test]
    fn named_selections_match_globs_and_skip_wins() {
        let t = tree();
        let named = ProbeSelection::Named(vec!["snd*".into(), "e1000e".into()]);
        assert_eq!(
            t.select(&named, &[], None),
            ["e1000e", "snd", "snd_hda_intel"]
        );
        assert_eq!(
            t.select(&named, &["snd_hda_*".into()], None),
            ["e1000e", "snd"]
        );
        assert!(t.select(&ProbeSelection::Modalias, &[], None).is_empty());
    }

    #[test]
    fn shards_split_the_selection_evenly_and_without_overlap() {
        let t = tree();
        let all = t.select(&ProbeSelection::All, &[], None);
        let first = t.select(&ProbeSelection::All, &[], Some((1, 2)));
        let second = t.select(&ProbeSelection::All, &[], Some((2, 2)));
        assert_eq!(first, ["pps_core", "e1000e", "snd_hda_intel"]);
        assert_eq!(first.len() + second.len(), all.len());
        assert!(first.iter().all(|n| !second.contains(n)));
    }

    #[test]
    fn compressed_tree_paths_name_the_same_module() {
        assert_eq!(name_of("kernel/a/snd-hda-intel.ko.xz"), "snd_hda_intel");
    }
}
