//! Parsing borrows from its input: this counts the heap allocations a parse makes per sample.
//!
//! A sample whose label values have no escapes costs one allocation (its label vector); the
//! family and sample vectors grow geometrically and add a small fraction on top.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use promdrop_textformat::{Format, parse};

struct CountingAllocator;

thread_local! {
    // Per thread, so that tests running in parallel do not count each other's allocations.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count_one() {
    ALLOCATIONS.with(|n| n.set(n.get() + 1));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn exposition(families: usize, series: usize, labels: bool) -> String {
    let mut out = String::new();
    for f in 0..families {
        out.push_str(&format!("# HELP m{f} Help {f}.\n# TYPE m{f} gauge\n"));
        for s in 0..series {
            if labels {
                out.push_str(&format!(
                    "m{f}{{instance=\"node-{s}\",job=\"etl\"}} {s}.5\n"
                ));
            } else {
                out.push_str(&format!("m{f}_{s} {s}\n"));
            }
        }
    }
    out
}

fn allocations_per_sample(text: &str, format: Format) -> f64 {
    let before = ALLOCATIONS.with(Cell::get);
    let parsed = parse(text.as_bytes(), format).expect("parses");
    let after = ALLOCATIONS.with(Cell::get);
    let samples = parsed.sample_count();
    drop(parsed);
    (after - before) as f64 / samples as f64
}

#[test]
fn labelled_samples_cost_about_one_allocation_each() {
    let text = exposition(100, 100, true);
    let classic = allocations_per_sample(&text, Format::Classic);
    println!("classic, 2 labels per sample: {classic:.3} allocations per sample");
    assert!(classic < 1.2, "{classic} allocations per sample");

    let om = format!("{text}# EOF\n");
    let openmetrics = allocations_per_sample(&om, Format::OpenMetrics);
    println!("OpenMetrics, 2 labels per sample: {openmetrics:.3} allocations per sample");
    assert!(openmetrics < 1.2, "{openmetrics} allocations per sample");
}

#[test]
fn unlabelled_samples_borrow_everything() {
    // Each sample here is a family of its own, so the family vector's growth dominates.
    let text = exposition(1, 10_000, false);
    let classic = allocations_per_sample(&text, Format::Classic);
    println!("classic, no labels, one family per sample: {classic:.3} allocations per sample");
    assert!(classic < 1.2, "{classic} allocations per sample");
}
