//! Writing a [`Scenario`] back as scenario YAML, in the canonical form [`crate::parse`] reads.

use std::time::Duration;

use modharness_protocol::Step;
use serde_yaml_ng::{Mapping, Value};

use crate::{Expect, Scenario, VmSettings};

impl Scenario {
    /// The scenario as YAML that [`crate::parse`] turns back into an equal scenario: short forms
    /// where they exist, durations and sizes in the largest exact unit.
    pub fn to_yaml(&self) -> String {
        let mut root = Mapping::new();
        root.insert("name".into(), self.name.clone().into());
        if !self.description.is_empty() {
            root.insert("description".into(), self.description.clone().into());
        }
        root.insert("vm".into(), vm_value(&self.vm));
        if !self.modules.is_empty() {
            let modules = self.modules.iter().cloned().map(Value::from).collect();
            root.insert("modules".into(), Value::Sequence(modules));
        }
        root.insert("steps".into(), steps_value(&self.steps));
        root.insert("expect".into(), expect_value(&self.expect));
        serde_yaml_ng::to_string(&root).expect("a mapping of strings and numbers always serializes")
    }
}

fn vm_value(vm: &VmSettings) -> Value {
    let mut mapping = Mapping::new();
    mapping.insert("cpus".into(), vm.cpus.into());
    let memory = if vm.memory_mib.is_multiple_of(1024) {
        format!("{}G", vm.memory_mib / 1024)
    } else {
        format!("{}M", vm.memory_mib)
    };
    mapping.insert("memory".into(), memory.into());
    if !vm.cmdline.is_empty() {
        mapping.insert("cmdline".into(), vm.cmdline.clone().into());
    }
    mapping.insert("timeout".into(), duration_text(vm.timeout).into());
    if !vm.devices.is_empty() {
        let devices = vm.devices.iter().map(|d| Value::from(d.as_str())).collect();
        mapping.insert("devices".into(), Value::Sequence(devices));
    }
    Value::Mapping(mapping)
}

/// `2m` rather than `120000ms`; the parser reads whole milliseconds, so finer parts are dropped.
fn duration_text(duration: Duration) -> String {
    let millis = duration.as_millis();
    for (unit, unit_millis) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if millis != 0 && millis.is_multiple_of(unit_millis) {
            return format!("{}{unit}", millis / unit_millis);
        }
    }
    format!("{millis}ms")
}

fn steps_value(steps: &[Step]) -> Value {
    Value::Sequence(steps.iter().map(step_value).collect())
}

fn step_value(step: &Step) -> Value {
    let argument = match step {
        Step::Load { module, params } if params.is_empty() => module.clone().into(),
        Step::Load { module, params } => {
            let mut mapping = Mapping::new();
            mapping.insert("module".into(), module.clone().into());
            let params = params
                .iter()
                .map(|(name, value)| (name.clone().into(), value.clone().into()))
                .collect();
            mapping.insert("params".into(), Value::Mapping(params));
            Value::Mapping(mapping)
        }
        Step::Unload { module } => module.clone().into(),
        Step::Sleep { ms } => duration_text(Duration::from_millis(*ms)).into(),
        Step::Repeat { times, steps } => {
            let mut mapping = Mapping::new();
            mapping.insert("times".into(), (*times).into());
            mapping.insert("steps".into(), steps_value(steps));
            Value::Mapping(mapping)
        }
        Step::Parallel { branches } => {
            Value::Sequence(branches.iter().map(|branch| steps_value(branch)).collect())
        }
        Step::Shell { command } => command.clone().into(),
        Step::IrqStorm {
            device,
            rate,
            duration_ms,
        } => {
            let mut args = Mapping::new();
            args.insert("device".into(), device.as_str().into());
            args.insert("rate".into(), (*rate).into());
            args.insert(
                "duration".into(),
                duration_text(Duration::from_millis(*duration_ms)).into(),
            );
            Value::Mapping(args)
        }
    };
    let mut mapping = Mapping::new();
    mapping.insert(step.op().into(), argument);
    Value::Mapping(mapping)
}

fn expect_value(expect: &Expect) -> Value {
    let findings = expect
        .findings
        .iter()
        .map(|finding| {
            let mut mapping = Mapping::new();
            mapping.insert("kind".into(), finding.kind.clone().into());
            if let Some(module) = &finding.module {
                mapping.insert("module".into(), module.clone().into());
            }
            if let Some(title) = &finding.title {
                mapping.insert("title".into(), title.as_str().into());
            }
            Value::Mapping(mapping)
        })
        .collect();
    let mut mapping = Mapping::new();
    mapping.insert("findings".into(), Value::Sequence(findings));
    if let Some(memory) = &expect.memory {
        let mut memory_mapping = Mapping::new();
        memory_mapping.insert(
            "max_leak_bytes_per_cycle".into(),
            memory.max_leak_bytes_per_cycle.into(),
        );
        mapping.insert("memory".into(), Value::Mapping(memory_mapping));
    }
    Value::Mapping(mapping)
}
