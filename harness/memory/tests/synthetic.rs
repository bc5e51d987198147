//! Verdicts on synthetic runs shaped like what 6.12 showed under TCG: slab caches that grow in
//! whole 4 KiB pages, warm-up jumps, RCU-deferred frees landing a cycle late, ±4 KiB of noise,
//! one wild sample, and a slow drift of +0.2 KiB/cycle on correct modules.

use std::collections::BTreeMap;

use modharness_memory::{analyze, Analysis, Label, Options, Sample, Source, Verdict};

const PAGE: u64 = 4096;
/// The kernel's own drift in the simulation: a 4 KiB page every 20 cycles.
const DRIFT: i64 = 4096 / 20;

/// A deterministic pseudo-random sequence (splitmix64), so every test sees the same noise.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whole pages in `-pages..=pages`.
    fn pages(&mut self, pages: u64) -> i64 {
        (self.next() % (2 * pages + 1)) as i64 - pages as i64
    }
}

/// What the simulated module and kernel do per cycle.
#[derive(Clone, Copy)]
struct Behaviour {
    /// Bytes leaked per load in 64-byte kmalloc objects.
    leak_kmalloc64: u64,
    /// Bytes leaked per load in 1 KiB objects (32 per 32 KiB slab).
    leak_kmalloc1k: u64,
    /// Bytes leaked per load with vmalloc.
    leak_vmalloc: u64,
    /// The noise cache moves by up to this many pages per sample.
    noise_pages: u64,
    /// A busy but correct module: warm-up growth, RCU-late frees, drift and an outlier.
    busy: bool,
    /// The vmalloc caller key of the leaked areas.
    vmalloc_caller: &'static str,
}

const CLEAN: Behaviour = Behaviour {
    leak_kmalloc64: 0,
    leak_kmalloc1k: 0,
    leak_vmalloc: 0,
    noise_pages: 1,
    busy: true,
    vmalloc_caller: "(unresolved address)",
};

/// Slab bytes of `objects` objects of `size` bytes in slabs of `slab` bytes: whole slabs only.
fn slabs(objects: u64, size: u64, slab: u64) -> u64 {
    let per_slab = slab / size;
    objects.div_ceil(per_slab) * slab
}

/// Samples at cycles 0..=cycles (0 labelled `start` as well as `cycle`), as the agent sends.
fn run(behaviour: Behaviour, cycles: u32, seed: u64) -> Vec<Sample> {
    let mut noise = Noise(seed);
    let mut samples = Vec::new();
    for cycle in 0..=cycles {
        let c = cycle as u64;
        let mut slab = BTreeMap::new();
        // The module's own objects, plus the kernel's 6,000 already there.
        slab.insert(
            "kmalloc-64".to_string(),
            slabs(6000 + c * behaviour.leak_kmalloc64 / 64, 64, PAGE),
        );
        slab.insert(
            "kmalloc-1k".to_string(),
            slabs(1200 + c * behaviour.leak_kmalloc1k / 1024, 1024, 8 * PAGE),
        );
        let wobble = 40 * PAGE as i64 + noise.pages(behaviour.noise_pages) * PAGE as i64;
        slab.insert("kmalloc-512".to_string(), wobble as u64);
        if behaviour.busy {
            // Workqueue and timer caches fill during the first cycles and stay.
            let warm = [0, 3, 5, 6][cycle.min(3) as usize] * PAGE;
            slab.insert("pool_workqueue".to_string(), 8 * PAGE + warm);
            // What one cycle frees through RCU is still held at its sample, every other cycle.
            let late = if cycle % 2 == 1 { 2 * PAGE } else { 0 };
            slab.insert("kmalloc-192".to_string(), 10 * PAGE + late);
            // +0.2 KiB/cycle of the kernel's own drift: a page every 20 cycles.
            slab.insert("kernfs_node_cache".to_string(), (30 + c / 20) * PAGE);
            if cycle == cycles * 2 / 3 {
                slab.insert("kmalloc-4k".to_string(), 64 * PAGE);
            }
        }
        let mut vmalloc = BTreeMap::from([("dup_task_struct".to_string(), 120 * PAGE)]);
        if behaviour.leak_vmalloc > 0 {
            vmalloc.insert(
                behaviour.vmalloc_caller.to_string(),
                c * behaviour.leak_vmalloc,
            );
        }
        let unreclaimable: u64 = 9 * 1024 * 1024 + slab.values().sum::<u64>();
        let vmalloc_used: u64 = 5 * 1024 * 1024 + vmalloc.values().sum::<u64>();
        // /proc/meminfo counts kB.
        let kb = |bytes: u64| bytes / 1024 * 1024;
        let meminfo = BTreeMap::from([
            ("SUnreclaim".to_string(), kb(unreclaimable)),
            ("VmallocUsed".to_string(), kb(vmalloc_used)),
            ("Percpu".to_string(), 552 * 1024),
            ("MemAvailable".to_string(), 400 << 20),
        ]);
        let sample = Sample {
            cycle,
            uptime_s: 2.0 + cycle as f64 * 0.05,
            label: Label::Cycle,
            meminfo,
            slab,
            vmalloc,
            modules: BTreeMap::new(),
        };
        if cycle == 0 {
            samples.push(Sample {
                label: Label::Start,
                ..sample.clone()
            });
        }
        samples.push(sample);
    }
    samples
}

fn judge(behaviour: Behaviour, cycles: u32, seed: u64) -> Analysis {
    let options = Options {
        modules: vec!["mh_leak_small_buggy".to_string()],
        ..Options::default()
    };
    analyze(&run(behaviour, cycles, seed), &options)
}

fn small_leak(bytes: u64) -> Behaviour {
    Behaviour {
        leak_kmalloc64: bytes,
        ..CLEAN
    }
}

#[test]
fn a_3_kib_leak_in_64_byte_objects_is_found_in_100_cycles_and_blamed_on_kmalloc_64() {
    for seed in 0..5 {
        let a = judge(small_leak(3072), 100, seed);
        assert_eq!(a.verdict, Verdict::Leak, "{a:?}");
        assert!((a.bytes_per_cycle - 3072 - DRIFT).abs() < 100, "{a:?}");
        assert!(a.ci.0 > a.floor as i64 && a.floor >= 1024, "{a:?}");
        assert_eq!(a.growth[0].name, "kmalloc-64", "{a:?}");
        assert_eq!(a.growth[0].source, Source::Slab);
        assert!(
            a.title.starts_with(
                "memory leak of 3.2 KiB per cycle over 100 cycles (kmalloc-64 +3.0 KiB/cycle"
            ),
            "{}",
            a.title
        );
        assert_eq!(a.module, None, "kmalloc-64 names no module");
        assert_eq!(a.cycles_needed, None);
    }
}

#[test]
fn a_2_kib_leak_is_found_in_100_cycles() {
    for seed in 0..5 {
        let a = judge(small_leak(2048), 100, seed);
        assert_eq!(a.verdict, Verdict::Leak, "{a:?}");
        assert!((a.bytes_per_cycle - 2048 - DRIFT).abs() < 100, "{a:?}");
    }
}

#[test]
fn a_busy_correct_module_is_clean_over_20_and_over_100_cycles() {
    for seed in 0..10 {
        for cycles in [20, 100] {
            let a = judge(CLEAN, cycles, seed);
            assert_eq!(a.verdict, Verdict::Clean, "{cycles} cycles: {a:?}");
            assert!(a.growth.iter().all(|g| g.name != "kmalloc-64"), "{a:?}");
            assert!(a.title.starts_with("no memory growth above"), "{}", a.title);
        }
    }
}

#[test]
fn twenty_quiet_cycles_are_clean() {
    let quiet = Behaviour {
        noise_pages: 0,
        busy: false,
        ..CLEAN
    };
    let a = judge(quiet, 20, 1);
    assert_eq!(
        (a.verdict, a.bytes_per_cycle, a.ci),
        (Verdict::Clean, 0, (0, 0))
    );
}

#[test]
fn ten_very_noisy_cycles_are_inconclusive_and_the_cycles_they_ask_for_decide() {
    let noisy = Behaviour {
        leak_kmalloc64: 2048,
        noise_pages: 4,
        ..CLEAN
    };
    let a = judge(noisy, 10, 7);
    assert_eq!(a.verdict, Verdict::Inconclusive, "{a:?}");
    let needed = a.cycles_needed.expect("a number of cycles");
    assert!(needed > 10 && needed <= 400, "{a:?}");
    assert!(a.title.contains("inconclusive") && a.title.contains(&needed.to_string()));
    let longer = judge(noisy, needed * 2, 7);
    assert_eq!(longer.verdict, Verdict::Leak, "{longer:?}");
}

#[test]
fn a_192_kib_leak_over_30_cycles_is_measured_within_1_percent_and_names_its_module() {
    let big = Behaviour {
        leak_kmalloc1k: 64 * 1024,
        leak_vmalloc: 128 * 1024,
        vmalloc_caller: "mh_leaky_init [mh_leaky]",
        ..CLEAN
    };
    let a = judge(big, 30, 3);
    assert_eq!(a.verdict, Verdict::Leak, "{a:?}");
    let truth = 192.0 * 1024.0;
    assert!(
        (a.bytes_per_cycle as f64 - truth).abs() / truth < 0.01,
        "{a:?}"
    );
    let names: Vec<&str> = a.growth.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names[..2], ["mh_leaky_init [mh_leaky]", "kmalloc-1k"]);
    assert_eq!(a.module.as_deref(), Some("mh_leaky"));
}

#[test]
fn the_scenario_bound_sets_the_bar() {
    let samples = run(small_leak(3072), 100, 2);
    let options = |bound| Options {
        max_leak_bytes_per_cycle: Some(bound),
        ..Options::default()
    };
    let lenient = analyze(&samples, &options(4096));
    assert_eq!((lenient.verdict, lenient.bar), (Verdict::Clean, 4096));
    // The total grows by the leak and the kernel's drift, about 3,277 B/cycle.
    let strict = analyze(&samples, &options(3270));
    assert_eq!(strict.verdict, Verdict::Inconclusive, "{strict:?}");
}

#[test]
fn memory_that_comes_back_is_clean_with_a_negative_slope() {
    let mut samples = run(small_leak(3072), 40, 4);
    samples.reverse();
    for (cycle, sample) in samples.iter_mut().enumerate() {
        sample.cycle = cycle as u32;
        sample.label = Label::Cycle;
    }
    let a = analyze(&samples, &Options::default());
    assert_eq!(a.verdict, Verdict::Clean, "{a:?}");
    assert!(a.bytes_per_cycle < -2500 && a.growth.is_empty(), "{a:?}");
}

#[test]
fn too_few_cycles_are_inconclusive_and_say_how_many_would_do() {
    let a = judge(small_leak(1 << 20), 3, 0);
    assert_eq!(a.verdict, Verdict::Inconclusive);
    assert_eq!(a.cycles_needed, Some(6));
    assert_eq!(analyze(&[], &Options::default()).cycles, 0);
}

#[test]
fn start_and_end_samples_do_not_enter_the_fit() {
    let mut samples = run(small_leak(3072), 100, 0);
    let mut end = samples.last().unwrap().clone();
    end.label = Label::End;
    end.meminfo.insert("SUnreclaim".into(), 1 << 40);
    samples.push(end);
    assert_eq!(
        analyze(&samples, &Options::default()).verdict,
        Verdict::Leak
    );
    let starts: Vec<Sample> = samples
        .iter()
        .filter(|s| s.label == Label::Start)
        .cloned()
        .collect();
    assert_eq!(analyze(&starts, &Options::default()).cycles, 0);
}
