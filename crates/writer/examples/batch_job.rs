//! A batch job shaped like the Kubernetes descheduler, handing its metrics off with promdrop.
//!
//! ```text
//! cargo run -p promdrop-writer --example batch_job -- --dir DIR --job NAME \
//!     [--fail] [--panic] [--sleep SECS] [--flush-every SECS]
//! ```
//!
//! It registers metrics like the descheduler's (`descheduler_pods_evicted` with `result`,
//! `strategy`, `namespace` and `node`, a loop-duration histogram, build info), evicts some
//! make-believe pods, optionally sleeps, and ends as its flags say: success (exit 0),
//! `--fail` (exit 1), `--panic` (exit 101, or an abort when built with `panic = "abort"`), or
//! killed by a signal during `--sleep` (SIGTERM: exit 143). More flags, for the tests and
//! benchmarks: `--exit CODE` ends with `guard.exit(CODE)`, `--series N` adds N eviction series,
//! `--stale-after DUR` and `--expire-after DUR` set the header's hints (`90s`, `1h`),
//! `--lock-timeout SECS` bounds the wait for the lock.
//!
//! It prints `started` once the handoff is installed, so that a test knows when a signal
//! will be caught.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use promdrop_writer::{Handoff, Outcome};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

const USAGE: &str = "usage: batch_job [--dir DIR] --job NAME [--fail] [--panic] [--sleep SECS] \
[--flush-every SECS] [--exit CODE] [--series N] [--stale-after DUR] [--expire-after DUR] \
[--lock-timeout SECS]";

#[derive(Default)]
struct Args {
    dir: Option<PathBuf>,
    job: String,
    fail: bool,
    panic: bool,
    sleep: f64,
    flush_every: Option<f64>,
    exit: Option<i32>,
    series: usize,
    stale_after: Option<Duration>,
    expire_after: Option<Duration>,
    lock_timeout: Option<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match flag.as_str() {
            "--dir" => args.dir = Some(PathBuf::from(value("--dir")?)),
            "--job" => args.job = value("--job")?,
            "--fail" => args.fail = true,
            "--panic" => args.panic = true,
            "--sleep" => args.sleep = number(&value("--sleep")?)?,
            "--flush-every" => args.flush_every = Some(number(&value("--flush-every")?)?),
            "--exit" => {
                let v = value("--exit")?;
                args.exit = Some(v.parse().map_err(|_| format!("--exit {v}: not a number"))?);
            }
            "--series" => {
                let v = value("--series")?;
                args.series = v
                    .parse()
                    .map_err(|_| format!("--series {v}: not a number"))?;
            }
            "--stale-after" => args.stale_after = Some(duration(&value("--stale-after")?)?),
            "--expire-after" => args.expire_after = Some(duration(&value("--expire-after")?)?),
            "--lock-timeout" => args.lock_timeout = Some(number(&value("--lock-timeout")?)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.job.is_empty() {
        return Err("--job is required".to_string());
    }
    Ok(args)
}

fn number(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or(format!("{text}: not a number of seconds"))
}

fn duration(text: &str) -> Result<Duration, String> {
    promdrop_textformat::parse_duration(text)
        .ok_or(format!("{text}: not a duration like 90s or 1h"))
}

/// The job's metrics, named as the descheduler names them.
struct Metrics {
    pods_evicted: IntCounterVec,
    loop_duration: HistogramVec,
}

impl Metrics {
    fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let pods_evicted = IntCounterVec::new(
            Opts::new(
                "descheduler_pods_evicted",
                "Number of evicted pods, by the result, by the strategy, by the namespace, by the node name.",
            ),
            &["result", "strategy", "namespace", "node"],
        )?;
        let loop_duration = HistogramVec::new(
            HistogramOpts::new(
                "descheduler_loop_duration_seconds",
                "Time taken to complete a full descheduling cycle.",
            )
            .buckets(vec![0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["type"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "descheduler_build_info",
                "Build info about the descheduler.",
            ),
            &["build_date", "compiler", "git_version", "os_arch"],
        )?;
        registry.register(Box::new(pods_evicted.clone()))?;
        registry.register(Box::new(loop_duration.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[
                "2025-11-27",
                "rustc",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::ARCH,
            ])
            .set(1);
        Ok(Metrics {
            pods_evicted,
            loop_duration,
        })
    }
}

/// The work: evict some pods, as each strategy would.
fn deschedule(metrics: &Metrics, extra_series: usize) {
    let evictions = [
        ("success", "RemoveDuplicates", "web", "node-a"),
        ("success", "LowNodeUtilization", "web", "node-b"),
        ("success", "LowNodeUtilization", "batch", "node-b"),
        (
            "error",
            "RemovePodsViolatingNodeAffinity",
            "kube-system",
            "node-c",
        ),
    ];
    for (result, strategy, namespace, node) in evictions {
        metrics
            .pods_evicted
            .with_label_values(&[result, strategy, namespace, node])
            .inc();
    }
    for i in 0..extra_series {
        let namespace = format!("namespace-{i}");
        let node = format!("node-{}", i % 100);
        metrics
            .pods_evicted
            .with_label_values(&["success", "HighNodeUtilization", &namespace, &node])
            .inc_by(i as u64 % 7 + 1);
    }
}

/// The example's `main`, public so that the test binary that includes this file can call it.
pub fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("batch_job: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let registry = Registry::new();
    let metrics = match Metrics::register(&registry) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("batch_job: registering metrics: {e}");
            std::process::exit(2);
        }
    };

    let mut builder = Handoff::builder(args.job.as_str()).registry(&registry);
    if let Some(dir) = &args.dir {
        builder = builder.dir(dir);
    }
    if let Some(every) = args.flush_every {
        builder = builder.flush_every(Duration::from_secs_f64(every));
    }
    if let Some(after) = args.stale_after {
        builder = builder.stale_after(after);
    }
    if let Some(secs) = args.lock_timeout {
        builder = builder.lock_timeout(Duration::from_secs_f64(secs));
    }
    if let Some(after) = args.expire_after {
        builder = builder.expire_after(after);
    }
    let guard = match builder.install() {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("batch_job: {e}");
            std::process::exit(2);
        }
    };
    println!("started");
    let _ = std::io::stdout().flush();

    let start = Instant::now();
    deschedule(&metrics, args.series);
    if args.sleep > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(args.sleep));
    }
    metrics
        .loop_duration
        .with_label_values(&["descheduling"])
        .observe(start.elapsed().as_secs_f64());

    if args.panic {
        panic!("batch_job: --panic was given");
    }
    if let Some(code) = args.exit {
        guard.exit(code);
    }
    let outcome = Outcome::from(!args.fail);
    if let Err(e) = guard.finish(outcome) {
        // The job's own result stands: a metrics problem is reported, not fatal.
        eprintln!("batch_job: metrics not handed off: {e}");
    }
    if args.fail {
        std::process::exit(1);
    }
}
