//! What a valid scenario file turns into.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use modharness_protocol::Step;
use modharness_scenario::{load, parse, MemoryExpectation, VmSettings};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_step(module: &str) -> Step {
    Step::Load {
        module: module.into(),
        params: BTreeMap::new(),
    }
}

fn unload_step(module: &str) -> Step {
    Step::Unload {
        module: module.into(),
    }
}

#[test]
fn every_key_of_the_format_is_read() {
    let scenario = load(&fixture("everything.yaml")).unwrap();
    assert_eq!(scenario.name, "everything");
    assert_eq!(
        scenario.description,
        "Unloading while a timer is armed must oops, and nothing else may go wrong."
    );
    assert_eq!(scenario.file, fixture("everything.yaml"));
    assert_eq!(
        scenario.vm,
        VmSettings {
            cpus: 4,
            memory_mib: 1024,
            cmdline: "slub_debug=FZPU".into(),
            timeout: Duration::from_secs(120),
            devices: Vec::new(),
        }
    );
    assert_eq!(scenario.modules, ["helper_mod", "extra"]);
    let params: BTreeMap<String, String> = [
        ("count", "10"),
        ("verbose", "true"),
        ("mask", "0x10"),
        ("label", "hello world"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    assert_eq!(
        scenario.steps,
        [
            load_step("race_timer"),
            Step::Load {
                module: "params_mod".into(),
                params,
            },
            Step::Sleep { ms: 200 },
            unload_step("race_timer"),
            Step::Repeat {
                times: 50,
                steps: vec![load_step("leaky"), unload_step("leaky")],
            },
            Step::Parallel {
                branches: vec![
                    vec![load_step("a"), Step::Sleep { ms: 1000 }],
                    vec![Step::Repeat {
                        times: 2,
                        steps: vec![load_step("b"), unload_step("b")],
                    }],
                ],
            },
            Step::Shell {
                command: "echo 5 > /proc/sys/kernel/hung_task_timeout_secs".into(),
            },
        ]
    );
    let findings = &scenario.expect.findings;
    assert_eq!(findings.len(), 2);
    assert_eq!(findings[0].kinds, ["oops"]);
    assert_eq!(findings[0].module.as_deref(), Some("race_timer"));
    assert_eq!(
        findings[0].title.as_ref().unwrap().as_str(),
        "page fault in (__run_timers|call_timer_fn)"
    );
    assert_eq!(findings[1].kinds, ["warning", "kasan"]);
    assert_eq!(findings[1].module, None);
    assert!(findings[1].title.is_none());
    assert_eq!(
        scenario.expect.memory,
        Some(MemoryExpectation {
            max_leak_bytes_per_cycle: 4096
        })
    );
}

#[test]
fn omitted_keys_take_their_defaults() {
    let scenario = load(&fixture("minimal.yaml")).unwrap();
    assert_eq!(scenario.description, "");
    assert_eq!(scenario.vm, VmSettings::default());
    assert_eq!(scenario.vm.cpus, 2);
    assert_eq!(scenario.vm.memory_mib, 512);
    assert_eq!(scenario.vm.cmdline, "");
    assert_eq!(scenario.vm.timeout, Duration::from_secs(120));
    assert!(scenario.modules.is_empty());
    assert!(scenario.expect.findings.is_empty());
    assert_eq!(scenario.expect.memory, None);
    assert_eq!(scenario.steps, [load_step("hello")]);
}

fn parse_vm(vm: &str) -> VmSettings {
    let text = format!("name: t\nvm: {vm}\nsteps: [ {{ load: a }} ]\n");
    parse(&text, Path::new("t.yaml")).unwrap().vm
}

#[test]
fn memory_sizes_are_read_in_mib() {
    assert_eq!(parse_vm("{ memory: 256 }").memory_mib, 256);
    assert_eq!(parse_vm("{ memory: 768M }").memory_mib, 768);
    assert_eq!(parse_vm("{ memory: 768MiB }").memory_mib, 768);
    assert_eq!(parse_vm("{ memory: 2G }").memory_mib, 2048);
    assert_eq!(parse_vm("{ memory: 2GiB }").memory_mib, 2048);
}

#[test]
fn timeouts_are_read_in_every_unit() {
    assert_eq!(
        parse_vm("{ timeout: 500ms }").timeout,
        Duration::from_millis(500)
    );
    assert_eq!(
        parse_vm("{ timeout: 60s }").timeout,
        Duration::from_secs(60)
    );
    assert_eq!(
        parse_vm("{ timeout: 2m }").timeout,
        Duration::from_secs(120)
    );
    assert_eq!(
        parse_vm("{ timeout: 1h }").timeout,
        Duration::from_secs(3600)
    );
}

#[test]
fn cpu_counts_from_one_to_eight_are_accepted() {
    assert_eq!(parse_vm("{ cpus: 1 }").cpus, 1);
    assert_eq!(parse_vm("{ cpus: 8 }").cpus, 8);
}

#[test]
fn an_empty_vm_mapping_keeps_the_defaults() {
    assert_eq!(parse_vm("{}"), VmSettings::default());
}

#[test]
fn leak_bounds_accept_binary_units() {
    let bound = |value: &str| {
        let text = format!(
            "name: t\nsteps: [ {{ load: a }} ]\nexpect: {{ memory: {{ max_leak_bytes_per_cycle: {value} }} }}\n"
        );
        parse(&text, Path::new("t.yaml"))
            .unwrap()
            .expect
            .memory
            .unwrap()
            .max_leak_bytes_per_cycle
    };
    assert_eq!(bound("0"), 0);
    assert_eq!(bound("100"), 100);
    assert_eq!(bound("4K"), 4096);
    assert_eq!(bound("2MiB"), 2 << 20);
    assert_eq!(bound("1G"), 1 << 30);
}

#[test]
fn the_name_check_applies_only_to_yaml_files() {
    let text = "name: anything\nsteps: [ { load: a } ]\n";
    assert_eq!(parse(text, Path::new("<stdin>")).unwrap().name, "anything");
    assert_eq!(
        parse(text, Path::new("dir/anything.yml")).unwrap().name,
        "anything"
    );
}

#[test]
fn yaml_anchors_and_aliases_are_followed() {
    let text = "name: t\nsteps:\n  - load: &m shared-mod\n  - unload: *m\n";
    let scenario = parse(text, Path::new("t.yaml")).unwrap();
    assert_eq!(
        scenario.steps,
        [load_step("shared_mod"), unload_step("shared_mod")]
    );
}

#[test]
fn module_names_gathers_every_named_module_once() {
    let scenario = load(&fixture("everything.yaml")).unwrap();
    let expected: BTreeSet<String> = [
        "a",
        "b",
        "extra",
        "helper_mod",
        "leaky",
        "params_mod",
        "race_timer",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(scenario.module_names(), expected);
}

#[test]
fn every_bundled_scenario_is_valid() {
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    for name in modharness_scenario::bundled_scenarios(&scenarios) {
        let path = scenarios.join(format!("{name}.yaml"));
        if let Err(error) = load(&path) {
            panic!("{error}");
        }
    }
}

#[test]
fn devices_come_from_a_fixed_list() {
    let text = "name: dev\nvm: { devices: [edu] }\nsteps:\n  - sleep: 1ms\n";
    let scenario = modharness_scenario::parse(text, std::path::Path::new("dev.yaml")).unwrap();
    assert_eq!(scenario.vm.devices, ["edu"]);
    let bad =
        "name: dev\nvm:\n  devices: [edu, \"virtio-9p-pci,fsdev=x\"]\nsteps:\n  - sleep: 1ms\n";
    let err = modharness_scenario::parse(bad, std::path::Path::new("dev.yaml")).unwrap_err();
    assert_eq!((err.line, err.column), (3, 18), "{err}");
    assert!(err.message.contains("unknown device"), "{err}");
}

#[test]
fn the_installer_preset_stands_for_a_typical_pc() {
    let text = "name: dev\nvm: { devices: installer }\nsteps:\n  - sleep: 1ms\n";
    let scenario = modharness_scenario::parse(text, std::path::Path::new("dev.yaml")).unwrap();
    assert_eq!(scenario.vm.devices, modharness_scenario::INSTALLER_DEVICES);
    assert!(scenario
        .vm
        .devices
        .iter()
        .all(|d| modharness_scenario::DEVICES.contains(&d.as_str())));
}

#[test]
fn the_installer_preset_combines_with_other_devices_each_named_once() {
    let text =
        "name: dev\nvm: { devices: [edu, installer, nvme, lsi, edu] }\nsteps:\n  - sleep: 1ms\n";
    let scenario = modharness_scenario::parse(text, std::path::Path::new("dev.yaml")).unwrap();
    let mut expected = vec!["edu"];
    expected.extend(modharness_scenario::INSTALLER_DEVICES);
    expected.push("lsi");
    assert_eq!(scenario.vm.devices, expected);
}

#[test]
fn an_irq_storm_step_reads_device_rate_and_duration() {
    let text = "name: s\nsteps:\n  - irq_storm: { device: edu, rate: 20000, duration: 2s }\n";
    let scenario = modharness_scenario::parse(text, std::path::Path::new("s.yaml")).unwrap();
    assert_eq!(
        scenario.steps,
        [modharness_protocol::Step::IrqStorm {
            device: "edu".into(),
            rate: 20000,
            duration_ms: 2000
        }]
    );
}
