#!/usr/bin/env python3
"""The exporter under churn: files rewritten while Prometheus-like scrapers scrape.

One scenario per run (bench/churn.sh runs several and prints RESULT lines):

  churn.py --exporter BIN [--node-exporter BIN] --files 1000 --rate 10 --duration 45

1. Writes FILES files of 100 series into a fresh directory, all with the SAME family names
   (one `churn_generation` series and 9 families of 11 series), told apart by a `job` label, as
   real jobs sharing a client library's metric names leave them.
2. Starts promdrop-exporter (and node_exporter's textfile collector, if given) on it, waits for
   both to serve every series, then measures for DURATION seconds:
   - the churner rewrites RATE files a second by atomic rename (a hidden temporary file, which
     neither server reads), each rewrite a new generation: every value in the file changes;
   - a scraper per server, in a process of its own (its checks, seconds of Python at 10k
     files, would otherwise hold up the prober's timing), asks for the whole body every
     SCRAPE_INTERVAL seconds (15: gzip, Prometheus's Accept header) and checks it: every
     file's series present once and from one generation (never a mix of two writes of the
     same file), generations never going back;
   - a prober rewrites the first file (job_00000, the first in serving order) about twice a
     second and polls /metrics until its new generation shows; the latency is from just before
     the rename to the moment the poll that first saw it was sent (a scrape started then sees
     it). The poll reads the response only until the first family block (gzip decoded as it
     streams) and hangs up, so the measurement's resolution does not grow with the body.
   - each server's CPU time (utime + stime of /proc/PID/stat, all threads) over the window,
     and promdrop's resident memory at the end beside the size of its plain body.
   With --latency-window S, the CPU window runs without the prober (churn and scrapes only, as
   a deployment sees them) and the prober runs in a second window of S seconds, whose CPU is
   reported apart: the prober's polls are load that only promdrop gets.
3. Prints a summary and one JSON line (`JSON {...}`) for bench/churn.sh.

Loopback only; bounded in time; both servers stopped by PID.
"""
import argparse
import contextlib
import gzip
import http.client
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
FAMILIES = [
    ("batch_job_rows_processed_total", "counter", "Rows processed by the job."),
    ("batch_job_rows_failed_total", "counter", "Rows the job could not process."),
    ("batch_job_bytes_read_total", "counter", "Bytes read from the source."),
    ("batch_job_bytes_written_total", "counter", "Bytes written to the sink."),
    ("batch_job_step_duration_seconds", "gauge", "How long each step took."),
    ("batch_job_queue_depth", "gauge", "Items left in the queue at the end."),
    ("batch_job_retries_total", "counter", "Retries of failed requests."),
    ("batch_job_cache_hits_total", "counter", "Cache hits."),
    ("batch_job_memory_peak_bytes", "gauge", "Peak memory of each shard."),
]
SHARDS = 11  # 9 families x 11 shards + churn_generation = 100 series a file
SERIES_PER_FILE = len(FAMILIES) * SHARDS + 1
# The directory caps raised so that 1M series (10,000 files) are all served, as bench/churn.sh
# raises them with --exporter-arg.
RAISED_CAPS = ("--max-total-bytes=1GiB", "--max-total-series=10000000")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def job_name(i):
    return f"job_{i:05}"


def render(i, generation):
    job = job_name(i)
    out = [
        "# HELP churn_generation Generation of this file's last write.\n",
        "# TYPE churn_generation gauge\n",
        f'churn_generation{{job="{job}"}} {generation}\n',
    ]
    for f, (name, kind, help_text) in enumerate(FAMILIES):
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")
        for s in range(SHARDS):
            out.append(f'{name}{{job="{job}",shard="{s}"}} {generation * 1000 + f * SHARDS + s}\n')
    return "".join(out)


def write_atomically(directory, i, generation):
    path = os.path.join(directory, job_name(i) + ".prom")
    tmp = os.path.join(directory, "." + job_name(i) + ".prom.tmp")
    with open(tmp, "w") as out:
        out.write(render(i, generation))
    os.rename(tmp, path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command: state is field 3; utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def get(port, accept=PROMETHEUS_ACCEPT, encoding="gzip", timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics", headers={"Accept": accept, "Accept-Encoding": encoding})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"port {port}: HTTP {resp.status}")
        if resp.getheader("Content-Encoding", "") == "gzip":
            body = gzip.decompress(body)
        return body
    finally:
        conn.close()


def wait_serving(port, files, deadline_s=600):
    """Until /metrics serves every file's churn_generation (the first publication is complete)."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        try:
            body = get(port)
            if body.count(b"churn_generation{") >= files:
                return time.monotonic() - start
        except (OSError, RuntimeError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"port {port} did not serve all {files} files within {deadline_s} s")


class Check:
    """What every full scrape must satisfy: each file once, one generation per file, and no
    generation older than one already served."""

    def __init__(self, files):
        self.files = files
        self.last = {}
        self.errors = []
        self.scrapes = 0

    def carried(self):
        """A check that goes on from this one's generations, with no errors or scrapes yet
        (for a scraper's process; see `merge`)."""
        check = Check(self.files)
        check.last = dict(self.last)
        return check

    def merge(self, other):
        """Takes in what a scraper's check (made by `carried`) found."""
        self.errors.extend(other.errors)
        self.scrapes += other.scrapes
        self.last.update(other.last)

    def body(self, server, body):
        self.scrapes += 1
        generation = {}
        values = {}
        for line in body.split(b"\n"):
            if not line or line.startswith(b"#"):
                continue
            if not (line.startswith(b"churn_generation{") or line.startswith(b"batch_job_")):
                continue
            name_labels, _, value = line.rpartition(b" ")
            brace = name_labels.find(b"{")
            name = name_labels[:brace]
            labels = dict(
                kv.split(b"=", 1) for kv in name_labels[brace + 1 : -1].split(b",") if kv
            )
            job = labels[b"job"].strip(b'"').decode()
            if name == b"churn_generation":
                if job in generation:
                    self.errors.append(f"{server}: {job} served twice")
                generation[job] = int(float(value))
            else:
                values.setdefault(job, []).append((name, labels.get(b"shard", b'"0"'), float(value)))
        if len(generation) != self.files:
            self.errors.append(f"{server}: {len(generation)} files served, expected {self.files}")
        index = {name.encode(): f for f, (name, _, _) in enumerate(FAMILIES)}
        for job, gen in generation.items():
            series = values.get(job, [])
            if len(series) != SERIES_PER_FILE - 1:
                self.errors.append(f"{server}: {job} has {len(series)} series")
            for name, shard, value in series:
                f = index.get(name)
                if f is None:
                    continue
                expected = gen * 1000 + f * SHARDS + int(shard.strip(b'"'))
                if value != expected:
                    self.errors.append(
                        f"{server}: {job} mixes generations ({name.decode()} {value}, generation {gen})"
                    )
                    break
            previous = self.last.get((server, job))
            if previous is not None and gen < previous:
                self.errors.append(f"{server}: {job} went back from generation {previous} to {gen}")
            self.last[(server, job)] = gen


def scrape_loop(name, port, start, interval, stop, check, results):
    """A scraper, in a process of its own: asks `port` for the whole body every `interval`
    seconds from `start` (time.monotonic, the same clock in every process) until `stop` is set,
    checking each body with `check`; then puts (name, check, scrape times) on `results`."""
    times = []
    next_at = start
    while not stop.is_set():
        now = time.monotonic()
        if now < next_at:
            stop.wait(next_at - now)
            continue
        next_at += interval
        t0 = time.monotonic()
        try:
            body = get(port)
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            check.errors.append(f"{name}: scrape failed: {e}")
            continue
        times.append(time.monotonic() - t0)
        check.body(name, body)
    results.put((name, check, times))


def probe_seen(port, needle, timeout=10):
    """One poll: sends GET /metrics, reads and decodes the gzip stream only as far as needed to
    know whether `needle` (the probe file's churn_generation line) is in the first family
    block. Returns (sent_at, seen)."""
    sent_at = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(
            (
                f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {PROMETHEUS_ACCEPT}\r\n"
                "Accept-Encoding: gzip\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the headers")
            raw += chunk
        head, _, rest = raw.partition(b"\r\n\r\n")
        headers = head.decode("latin-1").lower()
        chunked = "transfer-encoding: chunked" in headers
        gzipped = "content-encoding: gzip" in headers
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        pending = rest
        text = b""
        dechunk = b""
        while True:
            data = pending
            pending = b""
            if chunked:
                dechunk += data
                data = b""
                while True:
                    line_end = dechunk.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(dechunk[:line_end].split(b";")[0], 16)
                    if len(dechunk) < line_end + 2 + size + 2:
                        break
                    data += dechunk[line_end + 2 : line_end + 2 + size]
                    dechunk = dechunk[line_end + 2 + size + 2 :]
                    if size == 0:
                        break
            text += inflate.decompress(data) if inflate else data
            # The first family block ends where the second family's HELP or TYPE begins.
            first_sample = text.find(b"\nchurn_generation{")
            if needle in text:
                return sent_at, True
            if first_sample >= 0:
                block_end = text.find(b"\n# ", first_sample)
                if block_end >= 0 or len(text) > (1 << 20):
                    return sent_at, False
            chunk = sock.recv(65536)
            if not chunk:
                return sent_at, needle in text
            pending = chunk
    finally:
        sock.close()


def side_by_side_arguments(doc, files, **counts):
    """The command line of a side-by-side script (bench/first_gzip_scrape.py and others): the
    exporter binary, --files (default FILES) and, for each of COUNTS, --NAME N."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("exporter", help="promdrop-exporter binary")
    ap.add_argument("--files", type=int, default=files)
    for name, default in counts.items():
        ap.add_argument(f"--{name}", type=int, default=default)
    return ap.parse_args()


def pair_arguments(doc, files, **counts):
    """The command line of a script comparing two binaries (bench/cpu_pair.py and others):
    OLD and NEW, --files (default FILES), for each of COUNTS --NAME of its default's type, and
    --exporter-arg (repeated) for both exporters."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", help="promdrop-exporter binary to compare with")
    ap.add_argument("new", help="promdrop-exporter binary")
    ap.add_argument("--files", type=int, default=files)
    for name, default in counts.items():
        ap.add_argument(f"--{name}", type=type(default), default=default)
    ap.add_argument("--exporter-arg", action="append", default=[],
                    help="extra flag for both exporters (at 10,000 files: --exporter-arg=--max-total-bytes=1GiB)")
    return ap.parse_args()


@contextlib.contextmanager
def serving_churn_files(exporter, files, extra_args=(), deadline_s=600):
    """FILES files of this benchmark in a new temporary directory, and promdrop-exporter
    EXPORTER serving them on a loopback port (with EXTRA_ARGS): yields (process, port,
    directory) once every file is served; stops the exporter by PID and removes the directory
    after. For the side-by-side scripts (bench/first_gzip_scrape.py and others)."""
    directory = tempfile.mkdtemp(prefix="promdrop-churn-files.")
    process = None
    try:
        for i in range(files):
            write_atomically(directory, i, 1)
        port = free_port()
        process = subprocess.Popen([exporter, f"--textfile.directory={directory}",
                                    f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
                                    *extra_args])
        wait_serving(port, files, deadline_s)
        yield process, port, directory
    finally:
        if process:
            process.terminate()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exporter", required=True, help="promdrop-exporter binary")
    parser.add_argument("--exporter-arg", action="append", default=[], help="extra flag for promdrop-exporter")
    parser.add_argument("--node-exporter", help="node_exporter binary to run side by side")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="file rewrites a second")
    parser.add_argument("--duration", type=float, default=45.0, help="measured seconds")
    parser.add_argument("--scrape-interval", type=float, default=15.0)
    parser.add_argument("--probe-interval", type=float, default=0.5)
    parser.add_argument("--latency-window", type=float, default=0.0,
                        help="measure rename-visible latency in a window of its own after the CPU window "
                             "(0: one window for both, the prober's requests counted in promdrop's CPU)")
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--keep", action="store_true", help="keep the directory")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    work = tempfile.mkdtemp(prefix="promdrop-churn.")
    directory = os.path.join(work, "textfiles")
    os.makedirs(directory)
    procs = []

    def stop_all():
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    try:
        generations = [1] * args.files
        for i in range(args.files):
            write_atomically(directory, i, 1)
        plain_file_bytes = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))

        servers = {}
        p_port = free_port()
        promdrop = subprocess.Popen(
            [args.exporter, f"--textfile.directory={directory}", f"--web.listen-address=127.0.0.1:{p_port}", "--log.level=warn"]
            + args.exporter_arg,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(work, "promdrop.log"), "w"),
        )
        procs.append(promdrop)
        servers["promdrop"] = (promdrop, p_port)
        if args.node_exporter:
            n_port = free_port()
            node = subprocess.Popen(
                [args.node_exporter, "--collector.disable-defaults", "--collector.textfile",
                 f"--collector.textfile.directory={directory}", f"--web.listen-address=127.0.0.1:{n_port}"],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(work, "node_exporter.log"), "w"),
            )
            procs.append(node)
            servers["node_exporter"] = (node, n_port)
        ready = {name: wait_serving(port, args.files) for name, (_, port) in servers.items()}
        plain_body = len(get(p_port, accept="text/plain;version=0.0.4", encoding="identity"))
        # One gzip scrape each before measuring, as Prometheus's first: compressing the whole
        # body once at start (a second of CPU at 10k files) is no change's cost.
        for _, port in servers.values():
            get(port)

        check = Check(args.files)
        lock = threading.Lock()
        stop = threading.Event()
        changes = [0]
        latencies = []  # (seconds since start of the window, latency)
        late = [0]
        probe_request = []
        probing = [False]
        probe_idle = threading.Event()
        probe_idle.set()
        scrape_times = {name: [] for name in servers}

        def churner(start):
            tick = 1.0 / args.rate
            next_at = start
            last_probe = start
            while not stop.is_set():
                now = time.monotonic()
                if now < next_at:
                    time.sleep(min(next_at - now, 0.05))
                    continue
                if now - next_at > 1.0:
                    late[0] += 1
                next_at += tick
                if probing[0] and probe_idle.is_set() and now - last_probe >= args.probe_interval:
                    i = 0
                    last_probe = now
                else:
                    i = rng.randrange(1, args.files) if args.files > 1 else 0
                with lock:
                    generations[i] += 1
                    gen = generations[i]
                if i == 0:
                    probe_idle.clear()
                    renamed_at = time.monotonic()
                    write_atomically(directory, i, gen)
                    probe_request.append((renamed_at, gen))
                else:
                    write_atomically(directory, i, gen)
                changes[0] += 1

        def prober(start):
            while not stop.is_set():
                if not probe_request:
                    time.sleep(0.002)
                    continue
                renamed_at, gen = probe_request.pop()
                needle = f'churn_generation{{job="{job_name(0)}"}} {gen}'.encode()
                deadline = renamed_at + 30
                while time.monotonic() < deadline and not stop.is_set():
                    try:
                        sent_at, seen = probe_seen(p_port, needle)
                    except (OSError, RuntimeError) as e:
                        check.errors.append(f"probe: {e}")
                        time.sleep(0.01)
                        continue
                    if seen:
                        latencies.append((renamed_at - start, max(0.0, sent_at - renamed_at)))
                        break
                    time.sleep(0.002)
                else:
                    if not stop.is_set():
                        check.errors.append(f"probe: generation {gen} not visible within 30 s")
                probe_idle.set()

        def window(seconds, probe):
            """Churns (and scrapes) for `seconds`, with the latency prober when `probe`; returns
            (elapsed, CPU seconds by server, the window's start)."""
            stop.clear()
            probing[0] = probe
            cpu_before = {name: cpu_seconds(p.pid) for name, (p, _) in servers.items()}
            start = time.monotonic()
            threads = [threading.Thread(target=churner, args=(start,))]
            if probe:
                threads.append(threading.Thread(target=prober, args=(start,)))
            # Scrapers in processes of their own: checking a 1M-series body is seconds of
            # Python, which in this process would hold the interpreter lock the prober needs
            # to time its polls (at 10k files that skewed the latency by tens of ms).
            context = multiprocessing.get_context("spawn")
            scrapers_stop = context.Event()
            results = context.Queue()
            scrapers = [
                context.Process(
                    target=scrape_loop,
                    args=(name, port, start, args.scrape_interval, scrapers_stop, check.carried(), results),
                )
                for name, (_, port) in servers.items()
            ]
            for t in threads + scrapers:
                t.start()
            time.sleep(seconds)
            stop.set()
            scrapers_stop.set()
            for t in threads:
                t.join()
            for _ in scrapers:
                name, carried, times = results.get(timeout=300)
                check.merge(carried)
                scrape_times[name].extend(times)
            for s in scrapers:
                s.join()
            elapsed = time.monotonic() - start
            cpu = {name: cpu_seconds(p.pid) - cpu_before[name] for name, (p, _) in servers.items()}
            return elapsed, cpu, start

        if args.latency_window > 0:
            # CPU as a user's deployment spends it (churn and scrapes), then latency apart:
            # the prober polls /metrics hundreds of times a second, which no scraper does, and
            # only promdrop is probed.
            changes_before = changes[0]
            elapsed, cpu, _ = window(args.duration, probe=False)
            cpu_changes = changes[0] - changes_before
            probe_elapsed, probe_cpu, probe_start = window(args.latency_window, probe=True)
        else:
            elapsed, cpu, probe_start = window(args.duration, probe=True)
            cpu_changes = changes[0]
            probe_elapsed, probe_cpu = elapsed, cpu
        rss = rss_bytes(promdrop.pid)
        for name, (p, _) in servers.items():
            if p.poll() is not None:
                check.errors.append(f"{name} exited with {p.returncode}")

        lat = [l for _, l in latencies]
        third = probe_elapsed / 3
        first = [l for t, l in latencies if t < third]
        last = [l for t, l in latencies if t >= 2 * third]
        result = {
            "files": args.files,
            "series": args.files * SERIES_PER_FILE,
            "rate": args.rate,
            "seconds": round(elapsed, 1),
            "changes": cpu_changes,
            "changes_total": changes[0],
            "latency_window_s": round(probe_elapsed, 1),
            "cpu_s_latency_window": {k: round(v, 2) for k, v in probe_cpu.items()},
            "changes_late": late[0],
            "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_core_pct": {k: round(100 * v / elapsed, 2) for k, v in cpu.items()},
            "cpu_ms_per_change": {k: round(1000 * v / max(1, cpu_changes), 3) for k, v in cpu.items()},
            "ready_s": {k: round(v, 1) for k, v in ready.items()},
            "scrapes": {k: len(v) for k, v in scrape_times.items()},
            "scrape_median_s": {k: round(statistics.median(v), 3) if v else None for k, v in scrape_times.items()},
            "probes": len(lat),
            "visible_p50_ms": round(1000 * percentile(lat, 50), 1),
            "visible_p99_ms": round(1000 * percentile(lat, 99), 1),
            "visible_max_ms": round(1000 * max(lat), 1) if lat else None,
            "visible_p50_first_third_ms": round(1000 * percentile(first, 50), 1),
            "visible_p50_last_third_ms": round(1000 * percentile(last, 50), 1),
            "rss_bytes": rss,
            "plain_body_bytes": plain_body,
            "file_bytes": plain_file_bytes,
            "rss_over_body": round(rss / plain_body, 2),
            "errors": check.errors[:20],
            "error_count": len(check.errors),
        }
        ratio = ""
        if "node_exporter" in cpu and cpu["node_exporter"] > 0:
            result["promdrop_over_node_cpu"] = round(cpu["promdrop"] / cpu["node_exporter"], 3)
            ratio = f", promdrop/node_exporter {result['promdrop_over_node_cpu']:.3f}"
        print(
            f"{args.files} files x {SERIES_PER_FILE} series (shared family names), {cpu_changes} changes in "
            f"{elapsed:.0f} s ({cpu_changes / elapsed:.1f}/s), {check.scrapes} full scrapes checked"
        )
        for name in servers:
            print(
                f"  {name}: CPU {cpu[name]:.2f} s = {100 * cpu[name] / elapsed:.1f}% of a core, "
                f"{1000 * cpu[name] / max(1, cpu_changes):.2f} ms CPU per change, ready after {ready[name]:.1f} s"
            )
        if args.latency_window > 0:
            print(f"  latency window: {probe_elapsed:.0f} s with the prober, promdrop CPU {probe_cpu['promdrop']:.2f} s"
                  f" = {100 * probe_cpu['promdrop'] / probe_elapsed:.1f}% of a core")
        print(f"  rename visible: p50 {result['visible_p50_ms']} ms, p99 {result['visible_p99_ms']} ms over {len(lat)} probes"
              f" (p50 first third {result['visible_p50_first_third_ms']} ms, last third {result['visible_p50_last_third_ms']} ms){ratio}")
        print(f"  promdrop RSS {rss / 1e6:.1f} MB, plain body {plain_body / 1e6:.1f} MB ({result['rss_over_body']}x)")
        print(f"  errors: {len(check.errors)}" + ("".join(f"\n    {e}" for e in check.errors[:20])))
        print("JSON " + json.dumps(result))
        return 0 if not check.errors else 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
