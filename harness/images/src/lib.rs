//! Everything a VM needs on disk: kernels, built modules and initramfs images.
//!
//! Kernels come from Debian's packages ([`kernel`]), fetched with `apt-get download` and unpacked
//! into a cache ([`cache`]) without touching the host's `/boot` or `/lib/modules`, or are built
//! here from Debian's linux-source and a recipe of `images/` ([`recipe`], [`kbuild`]), or are
//! the user's own ([`tree`], `path:`); Debian's debug symbols on request ([`debug_symbols`]).
//! Modules are
//! built out of tree with kbuild against that kernel's headers ([`modbuild`]). The initramfs is a
//! cpio archive written here, with no root and no loop devices ([`initramfs`]); a kernel's whole
//! modules tree, for a mass probe, is a second archive appended to it ([`modpack`]).

pub mod cache;
pub mod debug_symbols;
pub mod initramfs;
pub mod kbuild;
pub mod kernel;
mod local;
pub mod modbuild;
pub mod modpack;
#[cfg(test)]
mod newc;
mod parallel;
pub mod recipe;
pub mod tree;

use std::path::PathBuf;

/// What can go wrong while preparing images. Every variant is an infrastructure error except
/// [`Error::BadSpec`] and [`Error::BadInput`], which are bad input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel spec that cannot be understood.
    #[error("bad kernel spec `{spec}`: {why}")]
    BadSpec { spec: String, why: String },
    /// A host command failed; `output` is what it printed, verbatim.
    #[error("{what} failed:\n{output}")]
    Command { what: String, output: String },
    /// Input the user wrote that cannot be used (a recipe's bad line), said as
    /// `path:line: what is wrong`.
    #[error("{0}")]
    BadInput(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Anything else, said in a sentence.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Run a host command, returning its stdout; a non-zero exit becomes [`Error::Command`] with
/// everything it printed.
pub(crate) fn run(cmd: &mut std::process::Command, what: &str) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::Command {
        what: what.to_string(),
        output: format!("could not start {:?}: {e}", cmd.get_program()),
    })?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(Error::Command {
            what: format!("{what} ({})", out.status),
            output,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
