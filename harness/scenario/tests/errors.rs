//! Every way a scenario file can be wrong, with the exact position and message it gets.

use std::path::Path;

use modharness_scenario::{load, parse, ScenarioError};

/// The rendered error for `text` read as `scenarios/t.yaml`.
fn error_of(text: &str) -> String {
    match parse(text, Path::new("scenarios/t.yaml")) {
        Ok(scenario) => panic!("accepted: {scenario:?}"),
        Err(error) => error.to_string(),
    }
}

/// A test that `$yaml` is rejected with exactly `$error`.
macro_rules! rejects {
    ($name:ident, $yaml:expr, $error:expr $(,)?) => {
        #[test]
        fn $name() {
            assert_eq!(error_of($yaml), AsRef::<str>::as_ref(&$error));
        }
    };
}

const STEPS: &str = "load, unload, sleep, repeat, parallel, shell, irq_storm, mass_probe";
const DEVICES: &str = "edu, pci-testdev, e1000, e1000e, rtl8139, virtio-net, ahci, nvme, virtio-blk, \
                       virtio-scsi, lsi, ehci, xhci, usb-storage, usb-kbd, usb-tablet, intel-hda, ac97, i6300esb";

// Top level.
rejects!(
    an_empty_file_is_rejected_as_a_whole,
    "# nothing here\n\n",
    "scenarios/t.yaml: the file is empty; expected a scenario with at least `name` and `steps`",
);
rejects!(
    a_missing_name_is_reported_at_the_document_start,
    "steps: [ {load: a} ]\n",
    "scenarios/t.yaml:1:1: missing key `name`",
);
rejects!(
    missing_steps_are_reported_at_the_document_start,
    "name: t\n",
    "scenarios/t.yaml:1:1: missing key `steps`",
);
rejects!(
    an_unknown_top_level_key_lists_the_valid_ones,
    "name: t\nbogus: 1\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:1: unknown key `bogus`, expected one of `name`, `description`, `long`, `vm`, `modules`, `steps`, `expect`",
);
rejects!(
    a_document_that_is_not_a_mapping_is_rejected,
    "- a\n",
    "scenarios/t.yaml:1:1: invalid type: sequence, expected a scenario: a mapping with keys name, description, long, vm, modules, steps, expect",
);
rejects!(
    a_second_document_is_rejected,
    "name: t\nsteps: [ {load: a} ]\n---\nname: u\n",
    "scenarios/t.yaml: deserializing from YAML containing more than one document is not supported",
);
rejects!(
    a_repeated_key_is_reported_at_its_second_occurrence,
    "name: t\nname: t\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:1: duplicate key `name`; each key may appear only once in a mapping",
);
rejects!(
    a_repeated_parameter_is_reported_at_its_second_occurrence,
    "name: t\nsteps:\n  - load: { module: a, params: { x: 1, x: 2 } }\n",
    "scenarios/t.yaml:3:40: duplicate key `x`; each key may appear only once in a mapping",
);

// YAML syntax.
rejects!(
    an_unclosed_flow_sequence_is_a_syntax_error,
    "name: t\nsteps: [ {load: a}\n",
    "scenarios/t.yaml:3:1: did not find expected ',' or ']', while parsing a flow sequence at line 2 column 8",
);
rejects!(
    a_tab_in_indentation_is_a_syntax_error,
    "name: t\n\tsteps: 1\n",
    "scenarios/t.yaml:2:1: found a tab character that violates indentation, while scanning a plain scalar at line 1 column 7",
);
rejects!(
    an_alias_loop_hits_the_recursion_limit,
    "name: &x [*x]\n",
    "scenarios/t.yaml:1:7: recursion limit exceeded",
);

// name.
rejects!(
    an_upper_case_name_is_rejected,
    "name: Timer\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:1:7: invalid scenario name `Timer`; expected lower-case letters, digits, `_` and `-`, starting with a letter or digit (like `timer-race`)",
);
rejects!(
    a_name_starting_with_a_dash_is_rejected,
    "name: -x\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:1:7: invalid scenario name `-x`; expected lower-case letters, digits, `_` and `-`, starting with a letter or digit (like `timer-race`)",
);
rejects!(
    a_name_that_differs_from_the_file_stem_is_rejected_at_the_name,
    "description: d\nname:   other\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:9: scenario name `other` does not match the file name `t.yaml`; expected `name: t` (or rename the file to `other.yaml`)",
);

// vm.
rejects!(
    an_unknown_vm_key_lists_the_valid_ones,
    "name: t\nvm:\n  cpu: 1\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:3:3: unknown key `cpu`, expected one of `cpus`, `memory`, `cmdline`, `timeout`, `devices`",
);
rejects!(
    vm_must_be_a_mapping,
    "name: t\nsteps: [ {load: a} ]\nvm: 3\n",
    "scenarios/t.yaml:3:5: invalid type: integer `3`, expected VM settings: a mapping with keys cpus, memory, cmdline, timeout, devices",
);
rejects!(
    an_unknown_device_in_a_list_is_reported_where_it_stands_with_the_allowed_names,
    "name: t\nvm:\n  devices: [edu, \"virtio-9p-pci,fsdev=x\"]\nsteps: [ {load: a} ]\n",
    format!("scenarios/t.yaml:3:18: unknown device `virtio-9p-pci,fsdev=x`; expected one of: {DEVICES}, or the preset `installer`"),
);
rejects!(
    an_unknown_single_device_is_reported_where_it_stands,
    "name: t\nvm: { devices: desktop }\nsteps: [ {load: a} ]\n",
    format!("scenarios/t.yaml:2:16: unknown device `desktop`; expected one of: {DEVICES}, or the preset `installer`"),
);
rejects!(
    devices_must_be_names,
    "name: t\nvm: { devices: { edu: 1 } }\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:16: invalid type: map, expected a list of device names, or the preset `installer`",
);
rejects!(
    a_qemu_model_name_is_not_a_device_name,
    "name: t\nvm: { devices: [AC97] }\nsteps: [ {load: a} ]\n",
    format!("scenarios/t.yaml:2:17: unknown device `AC97`; expected one of: {DEVICES}, or the preset `installer`"),
);
rejects!(
    more_than_eight_cpus_are_rejected,
    "name: t\nvm: { cpus: 9 }\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:13: invalid CPU count `9`; expected a whole number from 1 to 8",
);
rejects!(
    zero_cpus_are_rejected,
    "name: t\nvm: { cpus: 0 }\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:13: invalid CPU count `0`; expected a whole number from 1 to 8",
);
rejects!(
    a_memory_size_with_an_unknown_unit_is_rejected,
    "name: t\nvm:\n  memory: 12X\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:3:11: invalid memory size `12X`; expected a size like `512M`, `1G` or `256` (MiB)",
);
rejects!(
    a_memory_size_too_small_to_boot_is_rejected,
    "name: t\nvm:\n  memory: 16M\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:3:11: memory size `16M` is too small; expected at least 64M",
);
rejects!(
    a_memory_size_beyond_the_machine_is_rejected,
    "name: t\nvm:\n  memory: 64G\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:3:11: memory size `64G` is too large; expected at most 16G",
);
rejects!(
    a_timeout_without_a_unit_is_rejected,
    "name: t\nvm:\n  timeout: 10\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:3:12: invalid duration `10`; expected a whole number and a unit: `500ms`, `60s`, `2m` or `1h`",
);
rejects!(
    a_zero_timeout_is_rejected,
    "name: t\nvm: { timeout: 0s }\nsteps: [ {load: a} ]\n",
    "scenarios/t.yaml:2:16: timeout `0s` is zero; expected a duration like `60s`",
);

// modules.
rejects!(
    modules_must_be_a_list,
    "name: t\nsteps: [ {load: a} ]\nmodules: a\n",
    "scenarios/t.yaml:3:10: invalid type: string \"a\", expected a sequence",
);
rejects!(
    a_module_named_by_its_file_is_rejected,
    "name: t\nsteps: [ {load: a} ]\nmodules: [ok, bad.ko]\n",
    "scenarios/t.yaml:3:15: `bad.ko` is a file name; expected the module's name (`bad`)",
);

// steps.
rejects!(
    an_empty_step_list_is_rejected,
    "name: t\nsteps: []\n",
    "scenarios/t.yaml:2:8: empty list of steps; expected at least one step",
);
rejects!(
    a_steps_key_without_a_value_is_rejected,
    "name: t\nsteps:\n",
    "scenarios/t.yaml:2:7: empty list of steps; expected at least one step",
);
rejects!(
    an_unknown_step_lists_the_valid_ones,
    "name: t\nsteps:\n  - lod: a\n",
    &format!("scenarios/t.yaml:3:5: unknown step `lod`; expected one of: {STEPS}"),
);
rejects!(
    an_irq_storm_on_an_unknown_device_lists_the_valid_ones,
    "name: t\nsteps:\n  - irq_storm: { device: e1000, rate: 20000, duration: 2s }\n",
    "scenarios/t.yaml:3:26: unknown storm device `e1000`; expected one of: edu, ivshmem",
);
rejects!(
    an_irq_storm_rate_of_zero_is_rejected,
    "name: t\nsteps:\n  - irq_storm: { device: edu, rate: 0, duration: 2s }\n",
    "scenarios/t.yaml:3:37: invalid rate `0`; expected interrupts per second, 1 to 1000000",
);
rejects!(
    a_mass_probe_inside_a_repeat_is_pointed_at,
    "name: t\nsteps:\n  - load: a\n  - repeat: { times: 2, steps: [ { mass_probe: { modules: all } } ] }\n",
    "scenarios/t.yaml:4:5: `mass_probe` inside `repeat` or `parallel`; expected it as a top-level step (its `rounds` repeat it)",
);
rejects!(
    a_second_mass_probe_is_pointed_at,
    "name: t\nsteps:\n  - mass_probe: { modules: all }\n  - mass_probe: { modules: modalias }\n",
    "scenarios/t.yaml:4:17: a second `mass_probe` step; expected at most one per scenario (use `rounds` to probe again)",
);
rejects!(
    an_unknown_probe_selection_lists_the_choices,
    "name: t\nsteps:\n  - mass_probe: { modules: everything }\n",
    "scenarios/t.yaml:3:28: unknown module selection `everything`; expected `modalias`, `all`, or a list of module names or globs like [e1000*, ahci]",
);
rejects!(
    a_shard_past_its_count_is_rejected,
    "name: t\nsteps:\n  - mass_probe: { modules: all, shard: 3/2 }\n",
    "scenarios/t.yaml:3:40: invalid shard `3/2`; expected I/N with 1 <= I <= N <= 1000, like `1/4`",
);
rejects!(
    a_modalias_probe_split_across_vms_is_rejected,
    "name: t\nsteps:\n  - mass_probe: { modules: modalias, vms: 2 }\n",
    "scenarios/t.yaml:3:5: `vms` above 1 with `modules: modalias`; expected one VM: a modalias probe keeps the drivers it found so that the devices behind them appear, in its own VM",
);
rejects!(
    a_probe_glob_with_a_slash_is_rejected,
    "name: t\nsteps:\n  - mass_probe: { modules: [\"../x\"] }\n",
    "scenarios/t.yaml:3:29: invalid module name or glob `../x`; expected letters, digits, `_`, `-` and the glob characters `*`, `?`, `[...]`",
);
rejects!(
    a_step_with_two_keys_is_reported_at_the_second,
    "name: t\nsteps:\n  - load: a\n    unload: a\n",
    "scenarios/t.yaml:4:5: a step has exactly one key, but this one has `unload` besides `load`; expected each step as its own list item (`- unload: ...`)",
);
rejects!(
    params_beside_load_are_pointed_inside_it,
    "name: t\nsteps:\n  - load: a\n    params: { x: 1 }\n",
    "scenarios/t.yaml:4:5: `params` belongs inside `load`; expected `load: { module: NAME, params: { KEY: VALUE } }`",
);
rejects!(
    an_empty_step_is_rejected,
    "name: t\nsteps:\n  - {}\n",
    &format!("scenarios/t.yaml:3:5: empty step; expected one of: {STEPS}"),
);
rejects!(
    a_bare_word_step_is_rejected,
    "name: t\nsteps:\n  - load\n",
    &format!("scenarios/t.yaml:3:5: invalid type: string \"load\", expected a step: a mapping with one key, one of: {STEPS}"),
);

// load / unload.
rejects!(
    load_without_a_module_is_rejected,
    "name: t\nsteps:\n  - load:\n",
    "scenarios/t.yaml:3:10: `load` without a module; expected `load: NAME` or `load: { module: NAME, params: { KEY: VALUE } }`",
);
rejects!(
    a_module_name_with_a_space_is_rejected,
    "name: t\nsteps:\n  - load: 'a b'\n",
    "scenarios/t.yaml:3:11: invalid module name `a b`; expected letters, digits, `_` and `-` only",
);
rejects!(
    a_module_name_longer_than_the_kernel_allows_is_rejected,
    "name: t\nsteps:\n  - unload: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
    "scenarios/t.yaml:3:13: module name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is longer than the kernel's limit of 55 characters",
);
rejects!(
    an_unknown_load_key_lists_the_valid_ones,
    "name: t\nsteps:\n  - load: { module: a, parms: {} }\n",
    "scenarios/t.yaml:3:24: unknown key `parms`, expected `module` or `params`",
);
rejects!(
    a_long_form_load_without_module_is_rejected,
    "name: t\nsteps:\n  - load: { params: {} }\n",
    "scenarios/t.yaml:3:11: missing key `module`",
);
rejects!(
    a_list_as_parameter_value_is_rejected,
    "name: t\nsteps:\n  - load: { module: a, params: { x: [1] } }\n",
    "scenarios/t.yaml:3:37: invalid type: sequence, expected a string, number or boolean",
);
rejects!(
    an_empty_parameter_value_is_rejected,
    "name: t\nsteps:\n  - load: { module: a, params: { x: } }\n",
    "scenarios/t.yaml:3:37: empty parameter value; expected a string, number or boolean (a flag is `name: 1`)",
);
rejects!(
    a_null_parameter_value_is_rejected,
    "name: t\nsteps:\n  - load: { module: a, params: { x: ~ } }\n",
    "scenarios/t.yaml:3:37: empty parameter value; expected a string, number or boolean (a flag is `name: 1`)",
);
rejects!(
    a_parameter_name_with_an_equals_sign_is_rejected,
    "name: t\nsteps:\n  - load: { module: a, params: { 'a=b': 1 } }\n",
    "scenarios/t.yaml:3:34: invalid parameter name `a=b`; expected letters, digits, `_`, `-` and `.` only",
);
rejects!(
    unload_of_a_list_is_rejected,
    "name: t\nsteps:\n  - unload: [a]\n",
    "scenarios/t.yaml:3:13: invalid type: sequence, expected a module name",
);

// sleep.
rejects!(
    a_sleep_with_an_unknown_unit_is_rejected,
    "name: t\nsteps:\n  - sleep: 2x\n",
    "scenarios/t.yaml:3:12: invalid duration `2x`; expected a whole number and a unit: `500ms`, `60s`, `2m` or `1h`",
);
rejects!(
    a_fractional_sleep_is_rejected,
    "name: t\nsteps:\n  - sleep: 1.5s\n",
    "scenarios/t.yaml:3:12: invalid duration `1.5s`; expected a whole number and a unit: `500ms`, `60s`, `2m` or `1h`",
);
rejects!(
    a_sleep_too_long_to_count_is_rejected,
    "name: t\nsteps:\n  - sleep: 9999999999999999h\n",
    "scenarios/t.yaml:3:12: duration `9999999999999999h` is too long",
);

// repeat.
rejects!(
    repeat_zero_times_is_rejected,
    "name: t\nsteps:\n  - repeat: { times: 0, steps: [ {load: a} ] }\n",
    "scenarios/t.yaml:3:22: invalid repeat count `0`; expected a whole number from 1 to 4294967295",
);
rejects!(
    repeat_a_negative_number_of_times_is_rejected,
    "name: t\nsteps:\n  - repeat: { times: -3, steps: [ {load: a} ] }\n",
    "scenarios/t.yaml:3:22: invalid repeat count `-3`; expected a whole number from 1 to 4294967295",
);
rejects!(
    repeat_without_times_is_rejected,
    "name: t\nsteps:\n  - repeat: { steps: [ {load: a} ] }\n",
    "scenarios/t.yaml:3:13: missing key `times`",
);
rejects!(
    an_unknown_repeat_key_lists_the_valid_ones,
    "name: t\nsteps:\n  - repeat:\n      times: 2\n      step: []\n",
    "scenarios/t.yaml:5:7: unknown key `step`, expected `times` or `steps`",
);
rejects!(
    repeat_of_no_steps_is_rejected,
    "name: t\nsteps:\n  - repeat: { times: 2, steps: [] }\n",
    "scenarios/t.yaml:3:32: empty list of steps; expected at least one step",
);
rejects!(
    errors_deep_inside_repeat_point_at_their_own_line,
    "name: t\nsteps:\n  - repeat:\n      times: 2\n      steps:\n        - load: a\n        - slep: 1s\n",
    &format!("scenarios/t.yaml:7:11: unknown step `slep`; expected one of: {STEPS}"),
);

// parallel.
rejects!(
    parallel_with_one_branch_is_rejected,
    "name: t\nsteps:\n  - parallel: [ [ {load: a} ] ]\n",
    "scenarios/t.yaml:3:15: `parallel` needs at least 2 branches, found 1; expected a list of step lists: [ [...], [...] ]",
);
rejects!(
    parallel_of_steps_instead_of_branches_is_rejected,
    "name: t\nsteps:\n  - parallel: [ {load: a}, {load: b} ]\n",
    "scenarios/t.yaml:3:17: invalid type: map, expected a branch: a list of steps (`parallel` takes a list of lists)",
);
rejects!(
    an_empty_parallel_branch_is_rejected,
    "name: t\nsteps:\n  - parallel:\n      - [ {load: a} ]\n      - []\n",
    "scenarios/t.yaml:5:9: empty list of steps; expected at least one step",
);

// shell.
rejects!(
    an_empty_shell_command_is_rejected,
    "name: t\nsteps:\n  - shell: ''\n",
    "scenarios/t.yaml:3:12: empty shell command; expected a command for `/bin/sh -c`",
);

// expect.
rejects!(
    expect_must_be_a_mapping,
    "name: t\nsteps: [ {load: a} ]\nexpect: []\n",
    "scenarios/t.yaml:3:9: invalid type: sequence, expected expectations: a mapping with keys findings, memory",
);
rejects!(
    an_unknown_expect_key_lists_the_valid_ones,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  memry: {}\n",
    "scenarios/t.yaml:4:3: unknown key `memry`, expected `findings` or `memory`",
);
rejects!(
    an_unknown_finding_kind_lists_the_valid_ones,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - kind: opps\n",
    "scenarios/t.yaml:5:13: unknown finding kind `opps`; expected one of: oops, panic, warning, kasan, ubsan, kfence, kcsan, lockdep, hung_task, soft_lockup, hard_lockup, rcu_stall, workqueue_lockup, kmemleak, bad_page, bug, netdev_ref_leak, leak, hang, vm_crash",
);
rejects!(
    an_unknown_kind_in_a_list_of_kinds_is_pointed_at,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - kind: [oops, kasn]\n",
    "scenarios/t.yaml:5:20: unknown finding kind `kasn`; expected one of: oops, panic, warning, kasan, ubsan, kfence, kcsan, lockdep, hung_task, soft_lockup, hard_lockup, rcu_stall, workqueue_lockup, kmemleak, bad_page, bug, netdev_ref_leak, leak, hang, vm_crash",
);
rejects!(
    an_empty_list_of_kinds_is_rejected,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - kind: []\n",
    "scenarios/t.yaml:5:13: an empty list of finding kinds matches nothing",
);
rejects!(
    an_expected_finding_without_kind_is_rejected,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - { module: a }\n",
    "scenarios/t.yaml:5:7: missing key `kind`",
);
rejects!(
    an_unknown_expected_finding_key_lists_the_valid_ones,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - { kind: oops, modul: a }\n",
    "scenarios/t.yaml:5:21: unknown key `modul`, expected one of `kind`, `module`, `title`",
);
rejects!(
    an_invalid_title_pattern_is_reported_at_the_pattern,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - kind: oops\n      title: 'in (foo'\n",
    "scenarios/t.yaml:6:14: invalid title pattern `in (foo`: unclosed group; expected a regular expression",
);
rejects!(
    an_invalid_module_in_an_expectation_is_rejected,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  findings:\n    - { kind: oops, module: 'x/y' }\n",
    "scenarios/t.yaml:5:29: invalid module name `x/y`; expected letters, digits, `_` and `-` only",
);
rejects!(
    a_leak_bound_that_is_not_a_size_is_rejected,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  memory: { max_leak_bytes_per_cycle: lots }\n",
    "scenarios/t.yaml:4:39: invalid size `lots`; expected a number of bytes like `4096`, `4K` or `1M`",
);
rejects!(
    a_memory_expectation_without_a_bound_is_rejected,
    "name: t\nsteps: [ {load: a} ]\nexpect:\n  memory: {}\n",
    "scenarios/t.yaml:4:11: missing key `max_leak_bytes_per_cycle`",
);

#[test]
fn an_unreadable_file_is_an_error_about_the_whole_file() {
    let missing = Path::new("/nonexistent/modharness/x.yaml");
    let error = load(missing).unwrap_err();
    assert_eq!((error.line, error.column), (0, 0));
    assert!(
        error
            .to_string()
            .starts_with("/nonexistent/modharness/x.yaml: cannot read the file: "),
        "{error}"
    );
}

#[test]
fn errors_expose_their_parts_as_fields() {
    let error = parse("name: t\nsteps:\n  - lod: a\n", Path::new("x/t.yaml")).unwrap_err();
    assert_eq!(
        error,
        ScenarioError {
            file: "x/t.yaml".into(),
            line: 3,
            column: 5,
            message: format!("unknown step `lod`; expected one of: {STEPS}"),
        }
    );
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "\u{0}\u{1}\u{2}",
        ":",
        "? ? ?",
        "[[[[[[[[[[[[[[[[[[[[",
        "name: !!binary aGVsbG8=\nsteps: [ {load: a} ]",
        "name: t\nsteps: [ { load: a }, !!map { } ]",
        "&a a: *a",
        "name: t\nsteps:\n  - !shell x\n",
        "name: t\nsteps:\n  - ? [a]\n    : b\n",
        "name: t\nsteps:\n  - load: !!str\n",
        "'\\",
        "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
    ];
    for input in inputs {
        let _ = parse(input, Path::new("t.yaml"));
    }
    let deep = format!(
        "name: t\nsteps:\n{}",
        (0..300)
            .map(|depth| format!(
                "{}- repeat:\n{}    times: 1\n{}    steps:\n",
                "  ".repeat(2 * depth + 1),
                "  ".repeat(2 * depth + 1),
                "  ".repeat(2 * depth + 1)
            ))
            .collect::<String>()
    );
    assert!(parse(&deep, Path::new("t.yaml")).is_err());
}
rejects!(
    a_quote_in_a_parameter_value_cannot_smuggle_parameters,
    "name: t\nsteps:\n  - load: { module: m, params: { a: 'x\" evil=1 \"' } }\n",
    "scenarios/t.yaml:3:37: parameter value \"x\\\" evil=1 \\\"\" holds a double quote or a control character; expected a value without them (spaces are fine: the value is quoted)",
);
rejects!(
    a_double_dash_in_cmdline_cannot_hand_the_harness_options_to_init,
    "name: t\nvm: { cmdline: \"quiet -- rdinit=/bin/sh\" }\nsteps:\n  - sleep: 1ms\n",
    "scenarios/t.yaml:2:16: `--` in cmdline; expected kernel options only (after `--` the kernel would pass the harness's own options to init)",
);
