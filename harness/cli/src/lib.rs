//! The modharness engine: everything `modharness run` does between reading scenarios and writing
//! the report, as a library the CLI (`main.rs`) and the tests drive.
//!
//! One engine emits a stream of [`engine::Progress`] events; the terminal output and the tests
//! consume the same stream.

pub mod build_view;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod home;
pub mod matrix;

pub use error::{Failure, Result};
