//! How a mass probe's results show in report.html, the summary, junit.xml, report.json and a
//! merge, with the hostile module names a guest can send.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use modharness_report::{
    Host, KernelInfo, MassProbeResult, ProbeModuleResult, ProbeRoundResult, Report, Run,
    ScenarioResult, Status, StepStats,
};

/// A module name no kernel would give, but a guest could send.
const HOSTILE: &str = "<script>alert(1)</script>]]>&\u{1b}[2J\u{0}\u{FFFE}\u{7}";

fn scratch_dir(label: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "modharness-probe-test-{}-{}-{label}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn module(name: &str) -> ProbeModuleResult {
    ProbeModuleResult {
        name: name.to_owned(),
        loaded: true,
        load_ms: 12.5,
        unload_ms: 3.25,
        ..ProbeModuleResult::default()
    }
}

/// Two rounds, the second after a restart (no growth), and 20 modules: two bound a device, eight
/// failed, one crashed the VM under a hostile name and leaked most, nine leaked a little.
fn probe(worst: &str) -> MassProbeResult {
    let mut modules = Vec::new();
    let mut e1000e = module("e1000e");
    e1000e.bound = vec!["0000:00:02.0".to_owned()];
    modules.push(e1000e);
    let mut xhci = module("xhci_pci");
    xhci.bound = vec!["0000:00:04.0".to_owned(), "usb1<&>".to_owned()];
    modules.push(xhci);
    let mut crasher = module(worst);
    crasher.unreturned_bytes = vec![48 * 1024, 0];
    crasher.finding = Some(format!("BUG: KASAN: use-after-free in {worst}"));
    modules.push(crasher);
    for index in 3..11 {
        modules.push(ProbeModuleResult {
            loaded: false,
            error: Some(format!("finit_module: No such device {HOSTILE}")),
            ..module(&format!("absent_{index}"))
        });
    }
    for index in 11..20 {
        let mut small = module(&format!("small_{index}"));
        small.unreturned_bytes = vec![index * 100, index * 10];
        if index == 19 {
            small.unload_error = Some(format!("delete_module: busy {HOSTILE}"));
        }
        modules.push(small);
    }
    MassProbeResult {
        modules_tried: 20,
        loaded: 12,
        bound: 2,
        failed: 8,
        restarts: 1,
        rounds: vec![
            ProbeRoundResult {
                round: 1,
                modules: 20,
                seconds: 250.0,
                modules_per_s: 0.08,
                growth: BTreeMap::from([
                    ("SUnreclaim".to_owned(), 2_621_440),
                    ("VmallocUsed".to_owned(), 1_153_434),
                    ("MemAvailable".to_owned(), -3_145_728),
                    (HOSTILE.to_owned(), 5),
                ]),
                // The restart cut modules out of the growth's span.
                growth_modules: 17,
                unreturned_bytes: 61_470,
            },
            ProbeRoundResult {
                round: 2,
                modules: 20,
                seconds: 10.0,
                modules_per_s: 2.0,
                growth: BTreeMap::new(),
                growth_modules: 0,
                unreturned_bytes: 1_350,
            },
        ],
        modules,
    }
}

fn scenario(name: &str, mass_probe: Option<MassProbeResult>) -> ScenarioResult {
    ScenarioResult {
        name: name.to_owned(),
        file: format!("scenarios/{name}.yaml"),
        status: Status::Passed,
        duration_s: 260.0,
        findings: Vec::new(),
        memory: None,
        console_log: format!("logs/{name}.console.log"),
        error: None,
        failures: Vec::new(),
        steps: StepStats::default(),
        irq: None,
        notes: Vec::new(),
        accel: None,
        mass_probe,
    }
}

fn report(scenarios: Vec<ScenarioResult>) -> Report {
    Report {
        schema: 1,
        started_at: "2026-12-02T10:00:00.000Z".to_owned(),
        duration_s: 300.0,
        host: Host {
            qemu: "7.2.22".to_owned(),
            accel: "tcg".to_owned(),
        },
        runs: vec![Run {
            kernel: KernelInfo {
                spec: "debian:6.12.57+deb13-amd64".to_owned(),
                release: "6.12.57+deb13-amd64".to_owned(),
            },
            accel: None,
            accel_why: None,
            scenarios,
        }],
        bugs: Vec::new(),
        comparison: None,
    }
}

fn html_of(report: &Report) -> String {
    let dir = scratch_dir("html");
    report.write_html(&dir).unwrap();
    fs::read_to_string(dir.join("report.html")).unwrap()
}

/// The page from the probe section's heading to the end of its `<details>`.
fn probe_section(page: &str) -> &str {
    let start = page.find("<h3>Mass probe of").expect("a probe section");
    let end = page[start..].find("</details>").unwrap() + start + "</details>".len();
    &page[start..end]
}

fn svgs(text: &str) -> Vec<&str> {
    text.match_indices("<svg")
        .map(|(start, _)| {
            let end = text[start..].find("</svg>").unwrap() + start + "</svg>".len();
            &text[start..end]
        })
        .collect()
}

#[test]
fn html_probe_section_stays_well_formed_whatever_the_guest_names_hold() {
    let page = html_of(&report(vec![scenario(
        "mass-probe-all",
        Some(probe(HOSTILE)),
    )]));
    assert!(!page.contains("<script"), "guest text is escaped");
    for raw in ['\u{0}', '\u{1b}', '\u{7}', '\u{FFFE}'] {
        assert!(!page.contains(raw), "{raw:?} left in the page");
    }
    let section = probe_section(&page);
    // Wrapped in one element, the section is strict XML: nothing the guest sent broke out.
    let wrapped = format!("<div>{section}</div>");
    let document = roxmltree::Document::parse(&wrapped).expect("the section is well-formed");
    let cells: Vec<&str> = document
        .descendants()
        .filter(|n| n.has_tag_name("code"))
        .filter_map(|n| n.text())
        .collect();
    assert!(cells.contains(&"<script>alert(1)</script>]]>&\u{FFFD}[2J\u{FFFD}\u{FFFD}\u{FFFD}"));
    assert!(!page.contains("http"), "no external assets");
}

#[test]
fn html_probe_section_has_totals_rounds_blamed_bound_and_every_module() {
    let page = html_of(&report(vec![scenario(
        "mass-probe-all",
        Some(probe("crasher")),
    )]));
    let section = probe_section(&page);
    assert!(
        section.contains("20 modules tried, 12 loaded, 2 bound a device, 8 failed, 1 restart</p>")
    );
    assert!(section.contains(
        "<tr><td>1</td><td>20 (growth over 17: a VM died)</td><td>4m10s</td><td>0.1</td><td>+2.5 MiB</td>\
         <td>+1.1 MiB</td><td>-3.0 MiB</td><td>+5 B</td><td>60.0 KiB</td></tr>"
    ));
    // A round no VM sampled on both sides of has no growth to show, which is not the same as
    // none.
    assert!(section.contains("<tr><td>2</td><td>20</td><td>10.0s</td><td>2.0</td><td>-</td>"));
    let header = &section[section.find("<th>Round").unwrap()..];
    let figures = [
        "SUnreclaim",
        "VmallocUsed",
        "MemAvailable",
        "&lt;script&gt;",
    ];
    let at: Vec<usize> = figures.iter().map(|f| header.find(f).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "judged figures first");
    assert!(section.contains("<h4>Modules blamed for a finding</h4>"));
    assert!(section.contains(
        "<tr><td><code>crasher</code></td><td>BUG: KASAN: use-after-free in crasher</td>\
         <td>loaded</td></tr>"
    ));
    assert!(section.contains(
        "<tr><td><code>xhci_pci</code></td><td>0000:00:04.0, usb1&lt;&amp;&gt;</td>\
         <td>12.5</td></tr>"
    ));
    assert!(section.contains("<details><summary>All 20 modules tried</summary>"));
    assert!(section.contains(
        "<td><code>small_12</code></td><td>loaded</td><td></td>\
         <td>12.5</td><td>3.2</td><td>+1.2 KiB, +120 B</td></tr>"
    ));
    assert_eq!(section.matches("<tr><td><code>absent_").count(), 8);
}

#[test]
fn html_probe_charts_are_strict_xml_with_a_bar_per_round_and_the_top_15_modules() {
    let page = html_of(&report(vec![scenario(
        "mass-probe-all",
        Some(probe(HOSTILE)),
    )]));
    let charts = svgs(probe_section(&page));
    assert_eq!(charts.len(), 2, "growth per round, then the top modules");
    for chart in &charts {
        let document = roxmltree::Document::parse(chart).expect("each chart is strict XML");
        assert_eq!(document.root_element().tag_name().name(), "svg");
        assert!(!chart.contains("<script") && !chart.contains("href"));
    }
    let texts = |chart: &str| -> Vec<String> {
        roxmltree::Document::parse(chart)
            .unwrap()
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(str::to_owned))
            .collect()
    };
    let growth = texts(charts[0]);
    for wanted in ["SUnreclaim", "+2.5 MiB", "-3.0 MiB", "round 1", "round 2"] {
        assert!(growth.iter().any(|t| t == wanted), "{wanted} in {growth:?}");
    }
    let bars = roxmltree::Document::parse(charts[0]).unwrap();
    let rects = bars
        .descendants()
        .filter(|n| n.has_tag_name("rect"))
        .count();
    assert_eq!(
        rects,
        4 + 2,
        "a bar per figure in round 1, none in round 2 (no samples to compare), a legend square per round"
    );
    assert_eq!(growth.iter().filter(|t| *t == "-").count(), 4);

    let top = texts(charts[1]);
    assert_eq!(top[0], "Top 10 modules by memory not returned");
    // The worst first, its name cut to fit: the full name is in the tables.
    assert!(top[1].starts_with("<script>alert(1)</scri") && top[1].ends_with('…'));
    assert_eq!(top[2], "+48.0 KiB");
    assert_eq!(top[3], "small_19");
}

#[test]
fn the_top_chart_stops_at_15_modules() {
    let mut many = probe("crasher");
    for index in 0..30 {
        let mut leaky = module(&format!("leaky_{index:02}"));
        leaky.unreturned_bytes = vec![4096 + index];
        many.modules.push(leaky);
    }
    let page = html_of(&report(vec![scenario("mass-probe-all", Some(many))]));
    let charts = svgs(probe_section(&page));
    assert!(charts[1].contains("Top 15 modules"));
    let document = roxmltree::Document::parse(charts[1]).unwrap();
    let bars = document.descendants().filter(|n| n.has_tag_name("rect"));
    assert_eq!(bars.count(), 15);
}

#[test]
fn a_scenario_without_a_mass_probe_has_no_probe_section() {
    let page = html_of(&report(vec![scenario("plain", None)]));
    assert!(!page.contains("Mass probe") && !page.contains("<details>"));
    assert!(!report(vec![scenario("plain", None)])
        .summary()
        .contains("modules tried"));
}

#[test]
fn summary_gives_a_mass_probe_its_totals_rounds_and_worst_modules() {
    let summary = report(vec![scenario("mass-probe-all", Some(probe("crasher")))]).summary();
    let lines: Vec<&str> = summary.lines().collect();
    assert_eq!(
        lines[2],
        "mass-probe-all: 20 modules tried, 12 loaded, 2 bound a device, 8 failed, 1 restart"
    );
    assert_eq!(
        lines[3],
        "  rounds 1-2: 4m20s, 0.2 modules/s, SUnreclaim +2.5 MiB, VmallocUsed +1.1 MiB over 17/20 \
         modules"
    );
    assert_eq!(
        lines[4],
        "  top unreturned: crasher 48.0 KiB, small_19 2.0 KiB, small_18 1.9 KiB"
    );
    assert_eq!(lines[5], "1 scenario: 1 passed, 0 failed, 0 errors");
}

#[test]
fn summary_probe_lines_stay_within_100_columns_and_hide_escapes() {
    let mut hostile = probe(&format!("{HOSTILE}{}", "x".repeat(60)));
    hostile.rounds.truncate(1);
    let summary = report(vec![scenario(&"long-name-".repeat(12), Some(hostile))]).summary();
    for line in summary.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line:?}");
    }
    assert!(!summary.contains(['\u{0}', '\u{1b}', '\u{7}', '\u{FFFE}']));
    assert!(summary.contains("\n  round 1: 4m10s, 0.1 modules/s, SUnreclaim +2.5 MiB"));
    let top = summary.lines().find(|l| l.starts_with("  top")).unwrap();
    assert!(top.starts_with("  top unreturned: <script>alert(1)</script>]]>&?[2J???xxx"));
    assert!(top.ends_with('…'), "{top}");
}

#[test]
fn summary_puts_the_worst_modules_on_the_rounds_line_when_they_fit() {
    let mut short = probe("crasher");
    short.rounds[0].growth.clear();
    let summary = report(vec![scenario("p", Some(short))]).summary();
    assert!(
        summary.contains(
            "\n  rounds 1-2: 4m20s, 0.2 modules/s; top unreturned: crasher 48.0 KiB, \
             small_19 2.0 KiB\n"
        ),
        "{summary}"
    );
}

#[test]
fn junit_carries_the_probe_totals_as_test_case_properties() {
    let dir = scratch_dir("junit");
    report(vec![scenario("mass-probe-all", Some(probe(HOSTILE)))])
        .write_junit(&dir)
        .unwrap();
    let xml = fs::read_to_string(dir.join("junit.xml")).unwrap();
    let document = roxmltree::Document::parse(&xml).expect("strict XML");
    let properties: BTreeMap<&str, &str> = document
        .descendants()
        .filter(|n| n.has_tag_name("property"))
        .filter_map(|n| Some((n.attribute("name")?, n.attribute("value")?)))
        .collect();
    assert_eq!(properties["mass_probe.modules_tried"], "20");
    assert_eq!(properties["mass_probe.loaded"], "12");
    assert_eq!(properties["mass_probe.bound"], "2");
    assert_eq!(properties["mass_probe.failed"], "8");
    assert_eq!(properties["mass_probe.restarts"], "1");
    assert_eq!(properties["mass_probe.rounds"], "2");
    assert_eq!(properties["mass_probe.unreturned_bytes"], "62820");
}

#[test]
fn report_json_round_trips_a_mass_probe_with_hostile_names() {
    let dir = scratch_dir("json");
    let written = report(vec![scenario("mass-probe-all", Some(probe(HOSTILE)))]);
    written.write_json(&dir).unwrap();
    let loaded = Report::load(&dir.join("report.json")).unwrap();
    assert_eq!(loaded, written);
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let modules = &json["runs"][0]["scenarios"][0]["mass_probe"]["modules"];
    assert_eq!(modules[2]["name"], HOSTILE);
    assert!(
        modules[3].get("bound").is_none(),
        "empty lists are left out"
    );
}

#[test]
fn merge_keeps_each_shards_mass_probe() {
    let first = report(vec![scenario("shard-1", Some(probe("crasher")))]);
    let second = report(vec![scenario("shard-2", Some(probe(HOSTILE)))]);
    let merged = Report::merge(vec![first, second]);
    let scenarios = &merged.runs[0].scenarios;
    assert_eq!(scenarios.len(), 2);
    assert_eq!(scenarios[0].mass_probe, Some(probe("crasher")));
    assert_eq!(scenarios[1].mass_probe, Some(probe(HOSTILE)));
}

#[test]
fn a_round_with_all_of_meminfo_shows_the_usual_figures_first_and_eight_at_most() {
    let mut wide = probe("crasher");
    for index in 0..40 {
        wide.rounds[0].growth.insert(format!("Figure{index:02}"), 1);
    }
    let page = html_of(&report(vec![scenario("mass-probe-all", Some(wide))]));
    let section = probe_section(&page);
    let header = &section[section.find("<th>Round").unwrap()..];
    let header = &header[..header.find("</tr>").unwrap()];
    assert_eq!(header.matches("<th>").count(), 4 + 8 + 1, "{header}");
    assert!(header.contains("<th>SUnreclaim</th>") && !header.contains("Figure39"));
    let growth = roxmltree::Document::parse(svgs(section)[0]).unwrap();
    let labels = growth.descendants().filter(|n| n.has_tag_name("text"));
    assert!(labels.filter(|n| n.text() == Some("Figure39")).count() == 0);
}
