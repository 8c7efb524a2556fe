//! promdrop-torture: runs the torture scenarios against the real promdrop-exporter.
//!
//! ```text
//! cargo run --release -p promdrop-torture -- all --duration 300
//! cargo run --release -p promdrop-torture -- --seed 42 churn --duration 60
//! ```
//!
//! Exit status 0 when every scenario found no error, 1 when one did, 2 when one could not
//! run. See tests/torture/README.md.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use promdrop_torture::{Report, churn, crashes, diskfull, hostile, load, time_seed, writer};

#[derive(Debug, Parser)]
#[command(name = "promdrop-torture", about = "Torture scenarios for promdrop")]
struct Cli {
    /// The seed (default: from the clock; always printed).
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// How long a scenario runs, in seconds; for `all`, the total budget shared out.
    #[arg(long, global = true)]
    duration: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Writer threads rewrite files while scrapers check every response.
    Churn(ChurnArgs),
    /// Writer processes SIGKILLed at random points, the exporter SIGKILLed and restarted.
    Crashes(CrashesArgs),
    /// A corpus of hostile files, then hostile changes, next to valid files.
    Hostile(HostileArgs),
    /// Writes failing with ENOSPC on a small tmpfs (needs root).
    DiskFull(DiskFullArgs),
    /// Concurrent scrapers while files change: req/s, latency, memory.
    Load(LoadArgs),
    /// Every scenario in turn, DURATION shared out: churn 25%, crashes 25%, hostile 10%,
    /// disk-full 10%, load 30%.
    All,
    /// (internal) A writer process for `crashes`.
    #[command(hide = true)]
    Writer(writer::Args),
}

#[derive(Debug, clap::Args)]
struct CrashesArgs {
    /// Writer processes.
    #[arg(long, default_value_t = 16)]
    writers: usize,
    /// Files.
    #[arg(long, default_value_t = 500)]
    files: usize,
    /// Scraper threads.
    #[arg(long, default_value_t = 8)]
    scrapers: usize,
}

impl CrashesArgs {
    fn config(&self, seed: u64, duration: Duration) -> crashes::Config {
        crashes::Config {
            writers: self.writers,
            files: self.files,
            scrapers: self.scrapers,
            ..crashes::Config::full(seed, duration, self_binary())
        }
    }
}

#[derive(Debug, clap::Args)]
struct HostileArgs {
    /// Size of the oversized file, in MiB.
    #[arg(long, default_value_t = 100)]
    big_mib: usize,
    /// Series in the file of tiny series.
    #[arg(long, default_value_t = 1_000_000)]
    tiny_series: usize,
    /// Labels on the deep-labels sample.
    #[arg(long, default_value_t = 5000)]
    deep_labels: usize,
    /// The exporter's RSS bound, in MiB.
    #[arg(long, default_value_t = 256)]
    rss_bound_mib: u64,
}

impl HostileArgs {
    fn config(&self, seed: u64, duration: Duration) -> hostile::Config {
        hostile::Config {
            seed,
            duration,
            big_mib: self.big_mib,
            tiny_series: self.tiny_series,
            deep_labels: self.deep_labels,
            rss_bound_mib: self.rss_bound_mib,
        }
    }
}

#[derive(Debug, clap::Args)]
struct DiskFullArgs {
    /// Size of the tmpfs, KiB.
    #[arg(long, default_value_t = 256)]
    tmpfs_kib: u64,
    /// Files.
    #[arg(long, default_value_t = 6)]
    files: usize,
}

impl DiskFullArgs {
    fn config(&self, seed: u64, duration: Duration) -> diskfull::Config {
        diskfull::Config {
            seed,
            duration,
            tmpfs_kib: self.tmpfs_kib,
            files: self.files,
        }
    }
}

#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// Concurrent scrapers.
    #[arg(long, default_value_t = 50)]
    scrapers: usize,
    /// Files.
    #[arg(long, default_value_t = 200)]
    files: usize,
    /// Most samples in a file.
    #[arg(long, default_value_t = 50)]
    max_series: usize,
    /// File changes a second.
    #[arg(long, default_value_t = 20)]
    changes_per_sec: u64,
    /// Bound on the exporter's RSS growth after the warm-up, MiB.
    #[arg(long, default_value_t = 32)]
    rss_growth_mib: u64,
}

impl LoadArgs {
    fn config(&self, seed: u64, duration: Duration) -> load::Config {
        load::Config {
            seed,
            duration,
            scrapers: self.scrapers,
            files: self.files,
            max_series: self.max_series,
            changes_per_sec: self.changes_per_sec,
            rss_growth_mib: self.rss_growth_mib,
        }
    }
}

fn self_binary() -> std::path::PathBuf {
    std::env::current_exe().unwrap_or_else(|_| "promdrop-torture".into())
}

#[derive(Debug, clap::Args)]
struct ChurnArgs {
    /// Writer threads.
    #[arg(long, default_value_t = 100)]
    writers: usize,
    /// Files.
    #[arg(long, default_value_t = 1000)]
    files: usize,
    /// Scraper threads.
    #[arg(long, default_value_t = 20)]
    scrapers: usize,
    /// Most samples in a file.
    #[arg(long, default_value_t = 20)]
    max_series: usize,
}

impl ChurnArgs {
    fn config(&self, seed: u64, duration: Duration) -> churn::Config {
        churn::Config {
            seed,
            duration,
            writers: self.writers,
            files: self.files,
            scrapers: self.scrapers,
            max_series: self.max_series,
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Writer(args) = &cli.command {
        return ExitCode::from(writer::run(args).clamp(0, 255) as u8);
    }
    let seed = cli.seed.unwrap_or_else(time_seed);
    println!("promdrop-torture: seed {seed}");
    let mut reports: Vec<anyhow::Result<Report>> = Vec::new();
    match &cli.command {
        Command::Churn(a) => reports.push(churn::run(
            &a.config(seed, secs(cli.duration.unwrap_or(30))),
        )),
        Command::Crashes(a) => reports.push(crashes::run(
            &a.config(seed, secs(cli.duration.unwrap_or(30))),
        )),
        Command::Hostile(a) => reports.push(hostile::run(
            &a.config(seed, secs(cli.duration.unwrap_or(20))),
        )),
        Command::DiskFull(a) => reports.push(diskfull::run(
            &a.config(seed, secs(cli.duration.unwrap_or(20))),
        )),
        Command::Load(a) => {
            reports.push(load::run(&a.config(seed, secs(cli.duration.unwrap_or(60)))))
        }
        Command::Writer(_) => unreachable!("handled above"),
        Command::All => {
            let total = cli.duration.unwrap_or(300).max(20);
            let share = |percent: u64| secs((total * percent / 100).max(4));
            let churn = ChurnArgs {
                writers: 100,
                files: 1000,
                scrapers: 20,
                max_series: 20,
            };
            reports.push(churn::run(&churn.config(seed, share(25))));
            let crashes = CrashesArgs {
                writers: 16,
                files: 500,
                scrapers: 8,
            };
            reports.push(crashes::run(&crashes.config(seed, share(25))));
            reports.push(hostile::run(&hostile::Config::full(seed, share(10))));
            reports.push(diskfull::run(&diskfull::Config::full(seed, share(10))));
            reports.push(load::run(&load::Config::full(seed, share(30))));
        }
    }
    let mut status = ExitCode::SUCCESS;
    println!();
    for report in reports {
        match report {
            Ok(r) => {
                print!("{}", r.render());
                if !r.passed() {
                    status = ExitCode::from(1);
                }
            }
            Err(e) => {
                println!("== a scenario could not run: {e:#}");
                status = ExitCode::from(2);
            }
        }
    }
    println!("promdrop-torture: seed {seed}");
    status
}
