//! The guest agent binary; all of it lives in the `modharness-agent` crate.
fn main() {
    std::process::exit(modharness_agent::main());
}
