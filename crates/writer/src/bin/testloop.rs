//! A test helper: writes a job file again and again through a `Handoff`, printing each
//! iteration number once its write has returned. Used by the crash-consistency and
//! concurrency tests.
//!
//! ```text
//! promdrop-writer-testloop DIR JOB WRITER COUNT SERIES
//! ```
//!
//! With `PROMDROP_TESTLOOP_ON_SIGNAL=return` in the environment it asks the handoff to hand
//! control back on SIGTERM/SIGINT: it then stops writing, prints `signal N`, calls `finish`
//! (which must write nothing more) and exits 0.
//!
//! Every version it writes is self-describing: `testloop_iteration{writer} K` and SERIES
//! filler samples `testloop_filler{writer,i} K`, so that a reader can tell a complete version
//! from a mix of two.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use promdrop_writer::{Handoff, Outcome};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, job, writer, count, series] = args.as_slice() else {
        eprintln!("usage: promdrop-writer-testloop DIR JOB WRITER COUNT SERIES");
        std::process::exit(2);
    };
    let (Ok(count), Ok(series)) = (count.parse::<u64>(), series.parse::<usize>()) else {
        eprintln!("promdrop-writer-testloop: COUNT and SERIES must be numbers");
        std::process::exit(2);
    };
    let iteration = Arc::new(AtomicU64::new(0));
    let source_iteration = Arc::clone(&iteration);
    let source_writer = writer.clone();
    let caught = Arc::new(AtomicI32::new(0));
    let mut builder = Handoff::builder(job.as_str());
    if std::env::var("PROMDROP_TESTLOOP_ON_SIGNAL").as_deref() == Ok("return") {
        let caught = Arc::clone(&caught);
        builder = builder.on_signal(move |signal| caught.store(signal, Ordering::SeqCst));
    }
    let guard = builder
        .dir(dir)
        .flush_every(Duration::ZERO)
        .lock_timeout(Duration::from_secs(60))
        .text_source(move || {
            let k = source_iteration.load(Ordering::SeqCst);
            let w = &source_writer;
            let mut text = String::with_capacity(64 * series + 128);
            writeln!(text, "# TYPE testloop_iteration gauge")?;
            writeln!(text, "testloop_iteration{{writer=\"{w}\"}} {k}")?;
            writeln!(text, "# TYPE testloop_filler gauge")?;
            for i in 0..series {
                writeln!(text, "testloop_filler{{writer=\"{w}\",i=\"{i}\"}} {k}")?;
            }
            Ok(text)
        })
        .install();
    let guard = match guard {
        Ok(g) => g,
        Err(e) => {
            eprintln!("promdrop-writer-testloop: {e}");
            std::process::exit(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    for k in 1..=count {
        let signal = caught.load(Ordering::SeqCst);
        if signal != 0 {
            let _ = writeln!(stdout, "signal {signal} {:?}", guard.signal());
            let _ = stdout.flush();
            break;
        }
        iteration.store(k, Ordering::SeqCst);
        if let Err(e) = guard.flush() {
            eprintln!("promdrop-writer-testloop: write {k}: {e}");
            std::process::exit(1);
        }
        let _ = writeln!(stdout, "{k}");
        let _ = stdout.flush();
    }
    if let Err(e) = guard.finish(Outcome::Success) {
        eprintln!("promdrop-writer-testloop: final write: {e}");
        std::process::exit(1);
    }
}
