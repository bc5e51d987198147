//! The matrix file (`ci/matrix.yaml`): the kernels of a nightly run and the scenarios each one
//! runs, checked like a scenario file, with `file:line:column` errors.
//!
//! ```yaml
//! scenarios: [smoke, timer-race]     # for kernels that name none; omitted: the default suite
//! kernels:
//!   - debian:latest
//!   - { spec: "debug:latest", scenarios: [leak, fops-race], skip: [] }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::locate::{self, Segment};
use crate::yaml::parse_scalar;
use crate::{find_scenario, ScenarioError};

/// A parsed matrix file; [`Matrix::cells`] turns it into kernels and scenario files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    /// The file it came from.
    pub file: PathBuf,
    /// Its text, for locating errors found after parsing.
    text: String,
    /// The scenarios of kernels that name none; `None`: the default suite.
    pub scenarios: Option<Vec<String>>,
    /// The kernels, in file order.
    pub kernels: Vec<MatrixKernel>,
}

/// One kernel of the matrix and its per-kernel options.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a kernel: a spec such as debian:latest, or { spec, scenarios, skip }"
)]
pub struct MatrixKernel {
    /// The kernel spec, as `run --kernel` takes it.
    #[serde(deserialize_with = "kernel_spec")]
    pub spec: String,
    /// Its own scenarios instead of the file's.
    #[serde(default)]
    pub scenarios: Option<Vec<String>>,
    /// Scenarios left out on this kernel.
    #[serde(default)]
    pub skip: Vec<String>,
}

/// A kernel and the scenario files it runs, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCells {
    /// The kernel spec.
    pub spec: String,
    /// The scenario files.
    pub scenarios: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a matrix: a mapping with keys kernels and scenarios"
)]
struct RawMatrix {
    #[serde(default)]
    scenarios: Option<Vec<String>>,
    kernels: Vec<KernelEntry>,
}

/// A kernel as written: a bare spec or the mapping.
struct KernelEntry(MatrixKernel);

impl<'de> Deserialize<'de> for KernelEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = KernelEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a kernel spec such as debian:latest, or { spec, scenarios, skip }")
            }
            fn visit_str<E: de::Error>(self, spec: &str) -> Result<KernelEntry, E> {
                Ok(KernelEntry(MatrixKernel {
                    spec: check_spec(spec).map_err(E::custom)?,
                    scenarios: None,
                    skip: Vec::new(),
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KernelEntry, A::Error> {
                MatrixKernel::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(KernelEntry)
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

fn kernel_spec<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    parse_scalar(
        deserializer,
        "a kernel spec such as debian:latest",
        check_spec,
    )
}

/// The shape every spec has (`kind:rest`); what the rest may be is the kernel crate's to say,
/// through [`Matrix::check_specs`].
fn check_spec(spec: &str) -> Result<String, String> {
    match spec.split_once(':') {
        Some((kind, rest)) if !kind.is_empty() && !rest.is_empty() => Ok(spec.to_owned()),
        _ => Err(format!(
            "`{spec}` is not a kernel spec; expected e.g. debian:latest, debian:6.1.0-54-amd64, debug:latest"
        )),
    }
}

/// Parses and validates a matrix file.
pub fn parse_matrix(text: &str, file: &Path) -> Result<Matrix, ScenarioError> {
    if !crate::has_content(text) {
        return Err(ScenarioError::whole_file(
            file,
            "the file is empty; expected a matrix with at least `kernels`",
        ));
    }
    locate::reject_duplicate_keys(text).map_err(|error| ScenarioError::from_yaml(file, &error))?;
    let raw: RawMatrix =
        serde_yaml_ng::from_str(text).map_err(|error| ScenarioError::from_yaml(file, &error))?;
    let matrix = Matrix {
        file: file.to_path_buf(),
        text: text.to_owned(),
        scenarios: raw.scenarios,
        kernels: raw.kernels.into_iter().map(|entry| entry.0).collect(),
    };
    if matrix.kernels.is_empty() {
        return Err(matrix.error_at(
            &[Segment::Key("kernels")],
            "no kernels; expected at least one spec, e.g. [debian:latest]",
        ));
    }
    for (index, kernel) in matrix.kernels.iter().enumerate() {
        if matrix.kernels[..index]
            .iter()
            .any(|k| k.spec == kernel.spec)
        {
            return Err(matrix.error_at(
                &kernel_path(index),
                format!(
                    "kernel `{}` a second time; expected each kernel once (give it all its \
                     scenarios in one entry)",
                    kernel.spec
                ),
            ));
        }
    }
    Ok(matrix)
}

/// Reads and parses a matrix file.
pub fn load_matrix(path: &Path) -> Result<Matrix, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ScenarioError::whole_file(path, format!("cannot read the file: {error}"))
    })?;
    parse_matrix(&text, path)
}

fn kernel_path(index: usize) -> [Segment<'static>; 2] {
    [Segment::Key("kernels"), Segment::Index(index)]
}

impl Matrix {
    fn error_at(&self, path: &[Segment<'_>], message: impl Into<String>) -> ScenarioError {
        ScenarioError::at(&self.file, locate::locate(&self.text, path), message)
    }

    /// Checks every kernel spec with `check` (the kernel crate's parser), pointing at the spec.
    pub fn check_specs(
        &self,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> Result<(), ScenarioError> {
        for (index, kernel) in self.kernels.iter().enumerate() {
            if let Err(why) = check(&kernel.spec) {
                let mut path = kernel_path(index).to_vec();
                if self.entry_is_mapping(index) {
                    path.push(Segment::Key("spec"));
                }
                return Err(self.error_at(&path, why));
            }
        }
        Ok(())
    }

    fn entry_is_mapping(&self, index: usize) -> bool {
        let spec_path = [
            Segment::Key("kernels"),
            Segment::Index(index),
            Segment::Key("spec"),
        ];
        locate::locate(&self.text, &spec_path).is_some()
    }

    /// Every kernel with the scenario files it runs: its own `scenarios`, else the file's, else
    /// `default_suite`; less its `skip`. A scenario is a name from `scenarios_dir`, or a
    /// `.yaml` path relative to the matrix file's directory that stays inside it.
    pub fn cells(
        &self,
        scenarios_dir: &Path,
        default_suite: &[PathBuf],
    ) -> Result<Vec<KernelCells>, ScenarioError> {
        let top = match &self.scenarios {
            Some(names) => {
                Some(self.resolve_list(names, &[Segment::Key("scenarios")], scenarios_dir)?)
            }
            None => None,
        };
        let mut cells = Vec::new();
        for (index, kernel) in self.kernels.iter().enumerate() {
            let own = match &kernel.scenarios {
                Some(names) => {
                    let mut path = kernel_path(index).to_vec();
                    path.push(Segment::Key("scenarios"));
                    Some(self.resolve_list(names, &path, scenarios_dir)?)
                }
                None => None,
            };
            let mut path = kernel_path(index).to_vec();
            path.push(Segment::Key("skip"));
            let skip = self.resolve_list(&kernel.skip, &path, scenarios_dir)?;
            let scenarios = own
                .or_else(|| top.clone())
                .unwrap_or_else(|| default_suite.to_vec())
                .into_iter()
                .filter(|file| !skip.contains(file))
                .collect();
            cells.push(KernelCells {
                spec: kernel.spec.clone(),
                scenarios,
            });
        }
        Ok(cells)
    }

    fn resolve_list(
        &self,
        names: &[String],
        at: &[Segment<'_>],
        scenarios_dir: &Path,
    ) -> Result<Vec<PathBuf>, ScenarioError> {
        let base = self.file.parent().unwrap_or(Path::new("."));
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let mut path = at.to_vec();
                path.push(Segment::Index(index));
                self.resolve_one(name, base, scenarios_dir)
                    .map_err(|why| self.error_at(&path, why))
            })
            .collect()
    }

    fn resolve_one(
        &self,
        name: &str,
        base: &Path,
        scenarios_dir: &Path,
    ) -> Result<PathBuf, String> {
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            let relative = Path::new(name);
            let inside = relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !inside {
                return Err(format!(
                    "`{name}`: a scenario path must stay inside {} (no `..`, not absolute)",
                    base.display()
                ));
            }
            let file = base.join(relative);
            return if file.is_file() {
                Ok(file)
            } else {
                Err(format!("`{name}`: no such file in {}", base.display()))
            };
        }
        find_scenario(name, scenarios_dir)
            .map_err(|e| format!("`{name}`: {}", e.message))
            .and_then(|file| {
                if file.starts_with(scenarios_dir) {
                    Ok(file)
                } else {
                    Err(format!(
                        "`{name}`: expected a scenario name from {} or a .yaml path",
                        scenarios_dir.display()
                    ))
                }
            })
    }
}
