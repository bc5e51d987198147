//! QEMU for modharness: argv from small pure functions, process-group lifecycle, QMP, accelerator probe.
