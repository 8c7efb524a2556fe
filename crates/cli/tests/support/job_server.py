#!/usr/bin/env python3
"""A job for promdrop run's tests (tests/run_outcomes.rs): serves fixed metrics on
127.0.0.1:PORT for a while, then exits.

--cert/--key serve HTTPS; --gzip gzips every response whatever the request asked; --status
answers with that status; --delay waits before answering; --hang never answers; --body-file
serves that file's text; --accept-log appends each request's Accept-Encoding to a file;
--pid-file writes the process id; --serve-for is how long to serve before exiting with
--exit-code (os._exit: open connections are cut as a crash would cut them).
"""
import argparse
import gzip
import http.server
import os
import ssl
import threading
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--cert")
parser.add_argument("--key")
parser.add_argument("--gzip", action="store_true")
parser.add_argument("--status", type=int, default=200)
parser.add_argument("--delay", type=float, default=0.0)
parser.add_argument("--hang", action="store_true")
parser.add_argument("--body-file")
parser.add_argument("--accept-log")
parser.add_argument("--pid-file")
parser.add_argument("--serve-for", type=float, default=1.5)
parser.add_argument("--exit-code", type=int, default=0)
args = parser.parse_args()

if args.body_file:
    with open(args.body_file, "rb") as f:
        BODY = f.read()
else:
    BODY = b"# TYPE job_server_items_total counter\njob_server_items_total{kind=\"x\"} 42\n"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if args.accept_log:
            with open(args.accept_log, "a") as f:
                f.write((self.headers.get("Accept-Encoding") or "") + "\n")
        if args.hang:
            time.sleep(3600)
        time.sleep(args.delay)
        body = gzip.compress(BODY) if args.gzip else BODY
        self.send_response(args.status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        if args.gzip:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
server.daemon_threads = True
if args.cert:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
if args.pid_file:
    with open(args.pid_file, "w") as f:
        f.write(str(os.getpid()))
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(args.serve_for)
os._exit(args.exit_code)
