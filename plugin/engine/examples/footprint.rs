//! The engine's heap, measured natively: how much one configuration takes while it is read
//! and compiled (the peak) and once compiled (what stays), by a counting global allocator.
//! A Wasm module's linear memory never shrinks, so there the peak is what the VM keeps.
//!
//! `cargo run --release -p authz-engine --example footprint -- CONFIG.json...`

use authz_engine::{Engine, PluginConfig};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout as asked.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: allocated by `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resets the peak to the current level and returns that level.
fn mark() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

fn main() {
    for path in std::env::args().skip(1) {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        };
        let base = mark();
        let config = match PluginConfig::from_json(&bytes) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        let parse_peak = PEAK.load(Ordering::Relaxed) - base;
        let parsed = mark() - base;
        let engine = match Engine::from_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        };
        let compile_peak = PEAK.load(Ordering::Relaxed) - base;
        let kept = mark() - base;
        let tables: Vec<String> = engine
            .table_bytes()
            .iter()
            .map(|(name, b)| format!("{name} {:.1}", mib(*b)))
            .collect();
        println!("{path}: tables (MiB): {}", tables.join(", "));
        drop(engine);
        let base = mark();
        let started = std::time::Instant::now();
        let engine = Engine::from_json(&bytes);
        let ms = started.elapsed().as_secs_f64() * 1e3;
        let from_json_peak = PEAK.load(Ordering::Relaxed) - base;
        let from_json_kept = CURRENT.load(Ordering::Relaxed) - base;
        drop(engine);
        println!(
            "{path}: json {:.1} MiB; parse peak {:.1}, parsed {:.1}; compile peak {:.1}, engine {:.1}; from_json peak {:.1}, kept {:.1} MiB, {ms:.0} ms",
            mib(bytes.len()),
            mib(parse_peak),
            mib(parsed),
            mib(compile_peak),
            mib(kept),
            mib(from_json_peak),
            mib(from_json_kept),
        );
    }
}
