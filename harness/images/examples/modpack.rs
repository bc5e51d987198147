//! Build the mass-probe pack of a cached Debian kernel and say what it took:
//! `cargo run --release -p modharness-images --example modpack -- CACHE/kernels/debian-RELEASE`.
//! The pack goes into the cache named by `MODHARNESS_CACHE` (see `cache::default_root`).

use std::path::PathBuf;
use std::time::Instant;

use modharness_images::{cache, kernel::Kernel, modpack};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let entry = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: modpack KERNEL_ENTRY")?,
    );
    let mut kernel: Kernel = serde_json::from_slice(&std::fs::read(entry.join("kernel.json"))?)?;
    // The manifest leaves paths out: they depend on where the entry is.
    kernel.modules_dir = Some(entry.join("root/lib/modules").join(&kernel.release));
    let started = Instant::now();
    let pack = modpack::build(&kernel, &cache::default_root())?;
    println!(
        "{}: {} modules ({} signatures stripped), {} bytes, {:.1} s",
        pack.cpio.display(),
        pack.modules,
        pack.stripped,
        pack.bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
