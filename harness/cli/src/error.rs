//! Errors that carry their exit code, per the CLI contract.

use std::fmt;

/// The exit code for bad usage or invalid input: nothing was run.
pub const EXIT_USAGE: i32 = 2;
/// The exit code for an infrastructure failure: QEMU missing, a kernel or module build failed,
/// a VM could not boot.
pub const EXIT_INFRA: i32 = 3;

/// A failure that ends the command, with the exit code it ends it with.
#[derive(Debug)]
pub struct Failure {
    /// [`EXIT_USAGE`] or [`EXIT_INFRA`].
    pub code: i32,
    /// What to tell the user (already says what to do).
    pub message: String,
}

impl Failure {
    /// Bad usage or invalid input (exit 2).
    pub fn usage(message: impl fmt::Display) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: message.to_string(),
        }
    }

    /// Infrastructure failure (exit 3).
    pub fn infra(message: impl fmt::Display) -> Failure {
        Failure {
            code: EXIT_INFRA,
            message: message.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<modharness_images::Error> for Failure {
    fn from(e: modharness_images::Error) -> Failure {
        match e {
            modharness_images::Error::BadSpec { .. } | modharness_images::Error::BadInput(_) => {
                Failure::usage(e)
            }
            _ => Failure::infra(e),
        }
    }
}

impl From<modharness_scenario::ScenarioError> for Failure {
    fn from(e: modharness_scenario::ScenarioError) -> Failure {
        Failure::usage(e)
    }
}

/// Shorthand for results of the engine.
pub type Result<T> = std::result::Result<T, Failure>;
