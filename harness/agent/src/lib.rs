//! The modharness guest agent: runs a plan's steps inside the VM and reports each result.

/// Entry point of the `modharness-agent` binary.
pub fn main() -> i32 {
    0
}
