//! The `promdrop-exporter` binary: flags, logging, runtime; everything else is in the library.

use anyhow::Context as _;
use clap::Parser as _;
use promdrop_exporter::Config;

/// mimalloc rather than the C library's malloc (glibc's, or musl's in the image): a change
/// allocates and frees many small blocks (a file's parsed samples, its prepared lines, its
/// chunk's pieces), which mimalloc serves from per-thread free lists without glibc's searches
/// of its bins. On the 2-core test VM a change cost 15 to 20% less CPU with glibc builds and
/// up to 15% less with musl builds (`bench/cpu_pair.py`; docs/BENCHMARKS.md), for 4 to 8% more
/// resident memory at 10,000 files. Built without transparent huge pages (the `no_thp`
/// feature): they halved a change's CPU again but doubled the resident memory at 1,000 files,
/// and a memory limit is an OOM kill where a CPU limit is only a delay.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    promdrop_exporter::process::mark_start();
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("promdrop-exporter: {e}");
        std::process::exit(2);
    }
    promdrop_exporter::logging::init(config.log_level, config.log_format);
    if let Err(e) = run(config) {
        tracing::error!(error = %format!("{e:#}"), "fatal");
        eprintln!("promdrop-exporter: {e:#}");
        std::process::exit(1);
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(32)
        .thread_name("promdrop")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The library's errors name what failed (`cannot load web config ...`,
    // `cannot listen on ...`): no further context.
    let result = runtime.block_on(promdrop_exporter::run(config));
    // A blocking task stuck in the kernel (a hung file system) must not keep the process from
    // exiting on SIGTERM: dropping the runtime would wait for it for ever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(result?)
}
