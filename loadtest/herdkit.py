"""herdkit: what herd's Python tools share (loadtest/scenario, loadtest/bench/e2e,
deploy/check-compose): free ports, processes started and stopped by pid, a
process's /metrics read with the Prometheus client's own text-format
parser, and herd-loadgen's JSON output.
The Rust tests' counterpart is the herd-testkit crate (libs/testkit)."""
import json
import os
import signal
import socket
import subprocess
import urllib.request

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    raise SystemExit("herdkit: the Python package prometheus-client is missing; run deploy/local/bootstrap "
                     "(or pip install prometheus-client)")


def free_port():
    """A free TCP port on 127.0.0.1, e.g. for a process's --metrics-addr."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_metrics(text):
    """Prometheus text format -> {sample name: value summed over labels}.
    Sample names keep their suffixes (_total, _bucket, _sum, _count)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def scrape(port, timeout=5):
    """127.0.0.1:port/metrics parsed, or None if nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            return parse_metrics(r.read().decode())
    except OSError:
        return None


def loadgen_records(path):
    """The JSON records `herd-loadgen produce --json` wrote to `path`, one per
    line (progress, then the summary), skipping anything else in the file."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return out




class Procs:
    """Processes a tool started, each logging to its own file under `logs`;
    all stopped by pid at the end (SIGCONT first, for a paused one; then
    SIGTERM; SIGKILL after `grace` seconds). `env`: the environment of every
    process (default: this one without per-process HERD_* settings)."""

    def __init__(self, logs, env=None, grace=40):
        self.logs, self.all, self.grace = logs, {}, grace
        self.env = env if env is not None else {
            k: v for k, v in os.environ.items() if k not in ("HERD_METRICS_ADDR", "HERD_WORKER_ID", "HERD_COORDINATOR_ID")}

    def start(self, name, args):
        # Appended: a process started again (a restart) keeps its earlier log.
        log = open(os.path.join(self.logs, f"{name}.log"), "a")
        self.all[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self.all[name]

    def stop_all(self):
        for p in self.all.values():
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.all.values():
            try:
                p.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

if __name__ == "__main__":
    # For shell scripts: `herdkit.py metric PORT NAME` prints NAME's value
    # (summed over its labels; 0 if absent or nothing answers).
    import sys
    if len(sys.argv) != 4 or sys.argv[1] != "metric":
        sys.exit("usage: herdkit.py metric PORT NAME")
    value = (scrape(int(sys.argv[2])) or {}).get(sys.argv[3], 0.0)
    print(int(value) if value == int(value) else value)
