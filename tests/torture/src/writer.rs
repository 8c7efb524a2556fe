//! `promdrop-torture writer`: a child process that rewrites its share of the torture files
//! with `promdrop_writer::write_atomic` in a loop, printing `FID GEN` once each write has
//! returned, until it is killed (the crashes scenario SIGKILLs it at random points) or
//! `max_seconds` pass.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{Rng, check};

/// The writer's arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The directory of the torture files.
    #[arg(long)]
    pub dir: PathBuf,
    /// This writer's index: it writes files INDEX, INDEX+WRITERS, ...
    #[arg(long)]
    pub index: usize,
    /// How many writers share the files.
    #[arg(long)]
    pub writers: usize,
    /// How many files there are.
    #[arg(long)]
    pub files: usize,
    /// Most samples in a file.
    #[arg(long, default_value_t = 20)]
    pub max_series: usize,
    /// The writer's seed.
    #[arg(long)]
    pub writer_seed: u64,
    /// Exit after this many seconds (a bound in case nobody kills it).
    #[arg(long, default_value_t = 900)]
    pub max_seconds: u64,
}

/// Runs the writer; returns the process exit code (it normally never returns: it is killed).
pub fn run(args: &Args) -> i32 {
    let mut rng = Rng::new(args.writer_seed);
    let owned: Vec<usize> = (args.index..args.files)
        .step_by(args.writers.max(1))
        .collect();
    if owned.is_empty() {
        return 0;
    }
    // Continue from what is on disk: the files must be complete.
    let mut generations = Vec::with_capacity(owned.len());
    for &fid in &owned {
        match check::read_version(&args.dir, fid) {
            Ok(v) => generations.push(v.generation),
            Err(e) => {
                eprintln!("torture writer {}: {e}", args.index);
                return 3;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut stdout = std::io::stdout().lock();
    while Instant::now() < deadline {
        let k = rng.below(owned.len() as u64) as usize;
        let fid = owned[k];
        let generation = generations[k] + 1;
        let n = rng.range(1, args.max_series as u64) as usize;
        let text = check::file_text(fid, generation, n, 0);
        if let Err(e) = promdrop_writer::write_atomic(args.dir.join(check::file_name(fid)), text) {
            eprintln!("torture writer {}: {e}", args.index);
            return 1;
        }
        generations[k] = generation;
        if writeln!(stdout, "{fid} {generation}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return 1;
        }
    }
    0
}
