//! QEMU for modharness.
//!
//! [`argv`] turns a [`VmConfig`] into QEMU's command line with small pure functions; [`launch`]
//! starts QEMU in its own process group with the console, the agent's control channel and QMP on
//! private unix sockets; [`Vm`] kills the whole group on every path, including a panic that unwinds
//! through it. [`devices`] gives each emulated device a scenario may add its fixed arguments.

pub mod argv;
pub mod devices;
pub mod ivshmem;
mod launch;
mod probe;

pub use argv::{machine_for, Accel, Machine, VmConfig};
pub use devices::Device;
pub use launch::{kill_all, launch, Vm, VmError, VmEvent};
pub use probe::qemu_version;
