"""Load and fault harness for findings-bridge (run it through scripts/loadtest, which builds the
binaries and picks the Python with boto3).

One scenario = fresh moto_server (SQS + DynamoDB), a fresh simulator with the scenario's latency,
rate limit and faults, a queue with a DLQ, a DynamoDB store table, and K worker processes reading
the queue through a small TCP proxy (so the queue endpoint can be taken away). A producer sends N
findings built from the repository's fixtures, each with a unique id, plus a share of them a second
time (redeliveries). When every message is gone from the queue the workers get SIGTERM, and the
harness compares the tickets in the simulator with the (finding, team) routes the shipped mappings
give (`findings-bridge render`): every expected marker exactly once, nothing else.

Scenarios (BENCHMARKS.md has the method and the figures):
  baseline      the load alone
  faults        seeded 500s and 429 bursts on top of the rate limit
  kill          worker 0 SIGKILLed a third of the way through, restarted 2 s later
  queue-outage  the SQS endpoint unreachable for --outage-secs
  ambiguous     a share of creates committed but answered 502 / reset / too late, Jira search
                lagging, every finding delivered twice
  reorder       for a share of findings a resolved version (later UpdatedAt) is delivered and
                processed before the older active one: never an open ticket for those
  rolling       every replica SIGTERMed and replaced once (staggered) while every ticket-system
                request takes ~1.5 s and Jira search lags 5 s
  lease-loss    the DynamoDB endpoint stalls for longer than the claim lease
  credentials   the Jira API token is refused (401) for a minute in the middle of the run, with a
                redrive policy that a minute of redeliveries would exhaust: findings must be
                parked, not dead-lettered, and get their tickets once the token works again
  shared-limit  Jira, ServiceNow and Security Hub each with a rate limit of their own, low enough
                that Jira is the bottleneck, and every replica configured with the whole limit
                (JIRA_RATE_LIMIT = SERVICENOW_RATE_LIMIT = the limit): how much of the one budget
                the replicas' adaptive limiters use between them ("of limit" = the bottleneck's)

Each has defaults of its own (SCENARIO_DEFAULTS); a flag given on the command line wins, and
--smoke picks the small CI variant (SMOKE_DEFAULTS).

Output: a table on stdout and one JSON object per scenario run (``--json FILE``, JSON lines).
Exit status 1 when any run lost a finding, duplicated a ticket, left a ticket open for a resolved
finding, dead-lettered a message or timed out; `credentials` also when no worker's /readyz named
the refused connection during the refusal, or a worker was still not ready at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import hashlib
import json
import os
import pathlib
import random
import re
import signal
import sqlite3
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid

import boto3
from botocore.config import Config

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# Single-finding messages in the shapes the queue receives: EventBridge (ASFF and OCSF), SNS
# without raw delivery, bare findings. Weighted towards GuardDuty / CSPM, the bulk in practice.
TEMPLATE_WEIGHTS = {
    "guardduty-eventbridge.json": 4,
    "cspm-control-failed.json": 3,
    "inspector-cve-eventbridge.json": 2,
    "ocsf-detection.json": 2,
    "ocsf-compliance.json": 1,
    "sns-wrapped.json": 1,
    "bare-asff.json": 1,
    "custom-action.json": 1,
}
SCENARIOS = (
    "baseline", "faults", "kill", "queue-outage", "ambiguous", "reorder", "rolling", "lease-loss", "credentials",
    "shared-limit",
)

# Every knob and its value unless the scenario, --smoke or the command line says otherwise.
DEFAULTS = dict(
    findings=10_000,
    redelivery_share=0.1,
    workers=3,
    concurrency=32,
    latency_ms=50,
    # 40/s: below what moto_server sustains on a 2-core machine (about 55 simulator requests/s
    # worth of findings), so the run measures the bridge against the ticket system's limit and
    # not the emulator's speed (BENCHMARKS.md).
    rate_limit=40,
    # Each of Jira, ServiceNow and Security Hub counts its own window of rate_limit requests (as
    # their real quotas are separate) instead of all three sharing one.
    rate_limit_per_system=False,
    # With rate_limit_per_system: Security Hub's own limit (None: rate_limit).
    securityhub_rate_limit=None,
    # Windows on whole seconds (a limit with a reset time) instead of opened by the first
    # request after the last one ended, whose gaps cost a tenth of a limit of a few per second.
    rate_limit_aligned=False,
    # JIRA_RATE_LIMIT and SERVICENOW_RATE_LIMIT of every worker; None: the worker's default.
    worker_rate_limit=None,
    # The workers' store: "dynamodb" (the table on moto, any number of workers) or "sqlite" (a
    # file in the run's directory: one worker, the single-replica deployment).
    store="dynamodb",
    send_rate=0.0,
    error_rate=0.1,
    burst_every=200,
    burst_len=5,
    retry_after=1,
    outage_secs=10.0,
    visibility_timeout=30,
    max_receive=5,
    timeout=1800.0,
    search_delay_ms=0,
    ambiguous_rate=0.0,
    ambiguous_mode="rotate",
    ambiguous_late_ms=8000,
    reorder_share=0.0,
    reorder_delay_s=300,
    stall_secs=15.0,
    roll_every_s=8.0,
    refuse_secs=60.0,
    refuse_system="jira",
    # Worker settings; None leaves the variable unset (the worker's own default).
    grace_period=None,
    lease=None,
    search_consistency=None,
    request_timeout=None,
    aws_timeout=None,
    aws_attempt_timeout=None,
)
# The exactly-once scenarios: a few hundred findings are enough to meet each fault dozens of times.
SCENARIO_DEFAULTS = {
    "ambiguous": dict(
        findings=300,
        redelivery_share=1.0,
        ambiguous_rate=0.2,
        search_delay_ms=3000,
        # Above the bridge's request timeout, so a "late" answer is one the bridge gave up on.
        ambiguous_late_ms=8000,
        request_timeout=5,
        search_consistency=5,
    ),
    "reorder": dict(findings=300, reorder_share=0.5),
    "rolling": dict(
        findings=300,
        # No rate limit: in-flight work should be in slow ticket-system calls when SIGTERM comes,
        # not sleeping out 429s.
        rate_limit=0,
        latency_ms=1500,
        search_delay_ms=5000,
        search_consistency=8,
        grace_period=2,
    ),
    "lease-loss": dict(
        findings=300,
        redelivery_share=0.5,
        lease=5,
        stall_secs=15.0,
        search_delay_ms=3000,
        search_consistency=5,
    ),
    "credentials": dict(
        findings=300,
        # One copy per finding: every receive the redrive policy counts is then the bridge's own
        # doing, not a claim race between two copies.
        redelivery_share=0.0,
        # Findings keep arriving for about two minutes, before, during and after the refusal.
        send_rate=2.5,
        refuse_secs=60.0,
        # 3 receives x 5 s: a bridge that let its messages come back by visibility timeout
        # instead of parking them would use up their receives four times over in the minute.
        visibility_timeout=5,
        max_receive=3,
    ),
    "shared-limit": dict(
        findings=3000,
        # About 60 % of the findings route to Jira: at 10 requests/s its budget is exhausted
        # before moto (about 20 findings/s here) is, so the run measures the limiters, not moto.
        rate_limit=10,
        rate_limit_per_system=True,
        rate_limit_aligned=True,
        # Write-backs have a quota of their own in AWS; here it is kept out of the way (each
        # worker sends at most 10/s of them) so the ticket system is the one being shared.
        securityhub_rate_limit=100,
        worker_rate_limit=10,
    ),
}
# `--smoke`: what CI can afford (well under a minute each on 2 cores).
_SMOKE_COMMON = dict(concurrency=16, latency_ms=5, rate_limit=200)
SMOKE_DEFAULTS = {
    # 100 findings with 20 % redelivered (about 40 s, most of it the 24-30 s the worker waits
    # before retrying a redelivered copy whose claim the other worker holds), 2 workers racing.
    "baseline": dict(_SMOKE_COMMON, findings=100, redelivery_share=0.2, workers=2, timeout=55),
    "faults": dict(_SMOKE_COMMON, findings=100, workers=2, timeout=90),
    "kill": dict(_SMOKE_COMMON, findings=100, workers=2, timeout=120),
    "queue-outage": dict(_SMOKE_COMMON, findings=100, workers=2, outage_secs=5, timeout=120),
    "ambiguous": dict(_SMOKE_COMMON, findings=60, timeout=90),
    "reorder": dict(_SMOKE_COMMON, findings=80, timeout=90),
    "rolling": dict(findings=60, concurrency=16, timeout=120),
    "lease-loss": dict(_SMOKE_COMMON, findings=60, timeout=120),
    # 20 s of refusal: still longer than the 3 x 5 s the redrive policy allows.
    "credentials": dict(_SMOKE_COMMON, findings=60, workers=2, send_rate=3.0, refuse_secs=20.0, timeout=180),
    "shared-limit": dict(findings=100, concurrency=16, latency_ms=5, timeout=90),
}
TICKET_PATHS = ("/rest/", "/api/now/", "/oauth_token")
WRITEBACK_ENDPOINTS = ("PATCH /findings/batchupdate", "PATCH /findingsv2/batchupdatev2")
REGION = "us-east-1"
CREDS = dict(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def log(msg: str) -> None:
    print(f"[loadtest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, timeout: float = 30.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def post_json(url: str, body, timeout: float = 30.0):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return json.load(r)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes] | None:
    """(status, body) of a GET, error statuses included; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, ValueError):
        return None


def wait_http(url: str, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up at {url}")


def marker(team: str, finding_id: str) -> str:
    """The marker: `fb-` + the first 32 hex chars of SHA-256 of `team\\nfinding id`."""
    return "fb-" + hashlib.sha256(f"{team}\n{finding_id}".encode()).hexdigest()[:32]


def parse_time(s: str) -> float:
    """RFC 3339 (Jira, nanoseconds allowed) or ServiceNow's `YYYY-MM-DD HH:MM:SS` (UTC)."""
    s = s.strip().replace("Z", "+00:00")
    if "T" not in s:
        return dt.datetime.strptime(s, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc).timestamp()
    head, _, rest = s.partition(".")
    if rest:
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        s = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    return dt.datetime.fromisoformat(s).timestamp()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---------------------------------------------------------------------------------------------
# Findings


class Template:
    """A fixture message whose one finding gets a fresh id per load finding."""

    def __init__(self, name: str):
        self.name = name
        self.doc = json.loads((FIXTURES / name).read_text())
        self.teams: list[str] = []

    def body(self, finding_id: str, resolved_later_s: int | None = None) -> str:
        """The message for `finding_id`; with `resolved_later_s`, the resolved version of the
        finding, updated that many seconds after the fixture's (active) version."""
        doc = json.loads(json.dumps(self.doc))
        if isinstance(doc, dict) and doc.get("Type") == "Notification":
            inner = json.loads(doc["Message"])
            self._edit(inner, finding_id, resolved_later_s)
            doc["Message"] = json.dumps(inner)
        else:
            self._edit(doc, finding_id, resolved_later_s)
        return json.dumps(doc, separators=(",", ":"))

    @staticmethod
    def _edit(doc: dict, finding_id: str, resolved_later_s: int | None) -> None:
        findings = doc["detail"]["findings"] if "detail" in doc else [doc]
        if len(findings) != 1:
            raise ValueError("load templates carry exactly one finding")
        f = findings[0]
        if "Id" in f:
            f["Id"] = finding_id
        else:
            f["finding_info"]["uid"] = finding_id
            if isinstance(f.get("metadata"), dict) and "uid" in f["metadata"]:
                f["metadata"]["uid"] = finding_id
        freshen(f)
        if resolved_later_s is not None:
            resolve(f, resolved_later_s)


# When the run's findings first appear: now, as in a flood of new findings (a standard enabled
# across an organisation). The bridge creates the tickets of findings newer than its store without
# searching for the marker first; the fixtures' own times (months old) would make every create
# search, as for a store that meets findings from before it.
RUN_STARTED = dt.datetime.now(dt.timezone.utc)


def freshen(f: dict) -> None:
    """Sets the finding's first-seen, created and updated times to RUN_STARTED."""
    iso = RUN_STARTED.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    millis = int(RUN_STARTED.timestamp() * 1000)
    if "Id" in f:
        for key in ("FirstObservedAt", "CreatedAt", "UpdatedAt"):
            f[key] = iso
        return
    info = f["finding_info"]
    for key in ("created_time", "first_seen_time", "modified_time"):
        if key in info:
            info[key] = millis
        if f"{key}_dt" in info:
            info[f"{key}_dt"] = iso


def resolve(f: dict, later_s: int) -> None:
    """Turns a finding into its resolved version, `later_s` seconds newer, the way Security Hub
    reports it and `Finding::is_resolved` (src/finding/mod.rs) reads it: ASFF RecordState
    ARCHIVED (and Compliance.Status PASSED for control findings); OCSF activity Close (3) with
    status Resolved (4), which the bridge decodes as record state ARCHIVED (and compliance Pass
    for compliance findings)."""
    if "Id" in f:
        f["RecordState"] = "ARCHIVED"
        if isinstance(f.get("Compliance"), dict):
            f["Compliance"]["Status"] = "PASSED"
        updated = dt.datetime.fromisoformat(f["UpdatedAt"].replace("Z", "+00:00"))
        later = updated + dt.timedelta(seconds=later_s)
        f["UpdatedAt"] = later.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return
    f["activity_id"] = 3
    f["activity_name"] = "Close"
    f["status_id"] = 4
    f["status"] = "Resolved"
    if isinstance(f.get("compliance"), dict):
        f["compliance"]["status_id"] = 1
        f["compliance"]["status"] = "Pass"
    info = f["finding_info"]
    if "modified_time" not in info and "modified_time_dt" not in info:
        raise ValueError("OCSF load templates need finding_info.modified_time")
    if "modified_time" in info:
        info["modified_time"] += later_s * 1000
    if "modified_time_dt" in info:
        t = dt.datetime.fromisoformat(info["modified_time_dt"].replace("Z", "+00:00"))
        info["modified_time_dt"] = (t + dt.timedelta(seconds=later_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(f.get("time"), int):
        f["time"] += later_s * 1000


def learn_routes(templates: list[Template], bridge_bin: pathlib.Path, work: pathlib.Path) -> None:
    """Asks `findings-bridge render` which teams each template routes to, and checks that the
    harness computes markers exactly as the bridge does (else every comparison would be void)."""
    for t in templates:
        probe_id = f"loadtest-probe-{t.name}"
        path = work / f"probe-{t.name}"
        path.write_text(t.body(probe_id))
        out = subprocess.run(
            [str(bridge_bin), "render", "--mappings", str(ROOT / "mappings"), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"render {t.name} failed: {out.stderr.strip()}")
        lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
        if len(lines) != 1 or lines[0]["finding_id"] != probe_id:
            raise RuntimeError(f"render {t.name}: expected one finding {probe_id}, got {out.stdout[:300]}")
        t.teams = [r["team"] for r in lines[0]["routes"]]
        for r in lines[0]["routes"]:
            if r["marker"] != marker(r["team"], probe_id):
                raise RuntimeError(f"marker mismatch for {t.name}: bridge {r['marker']}, harness {marker(r['team'], probe_id)}")


# What a planned message is: the first copy of a finding, a redelivered copy, or (reorder) the
# resolved version sent ahead of the active one.
FIRST, DUP, RESOLVED = "first", "dup", "resolved"


def plan_messages(n: int, redelivery_share: float, reorder_share: float, templates: list[Template], seed: int):
    """Returns (findings [(id, template)], phases [[(finding index, kind)]], reordered indexes).

    Phases are sent one after the other, each only once the previous one has been consumed: the
    reorder scenario's resolved versions go first, so that they are processed before the older
    active versions, whatever the workers' concurrency."""
    rng = random.Random(seed)
    run = uuid.uuid4().hex[:8]
    names = [t for t in templates for _ in range(TEMPLATE_WEIGHTS[t.name])]
    findings = [(f"loadtest/{run}/{i:06d}", names[i % len(names)]) for i in range(n)]
    keyed = [(float(i), i, FIRST) for i in range(n)]
    # Each redelivered finding is sent again at a random later point: sometimes while the first
    # copy is in flight (the claim must stop it), sometimes long after (the store must).
    for i in rng.sample(range(n), int(round(n * redelivery_share))):
        keyed.append((rng.uniform(i + 0.5, n), i, DUP))
    keyed.sort()
    active = [(i, kind) for _, i, kind in keyed]
    reordered = sorted(rng.sample(range(n), int(round(n * reorder_share))))
    if not reordered:
        return findings, [active], set()
    return findings, [[(i, RESOLVED) for i in reordered], active], set(reordered)


# ---------------------------------------------------------------------------------------------
# Processes


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of one of moto's endpoints that can be taken down
    (listener closed and every open connection cut) and brought back on the same port, or made to
    hold traffic: connections are still accepted and bytes still read, but nothing is forwarded
    until it is released (a stalled or throttled service, from the client's side)."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.conns: set[asyncio.StreamWriter] = set()
        self.flowing: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._call(self._init())
        self.up()

    async def _init(self):
        self.flowing = asyncio.Event()
        self.flowing.set()

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_r, client_w):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        self.conns.update((client_w, up_w))
        try:
            await asyncio.gather(self._pipe(client_r, up_w), self._pipe(up_r, client_w))
        finally:
            self.conns.discard(client_w)
            self.conns.discard(up_w)

    async def _up(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    async def _down(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for w in list(self.conns):
            w.transport.abort()
        self.conns.clear()

    async def _set_flowing(self, flowing: bool):
        if flowing:
            self.flowing.set()
        else:
            self.flowing.clear()

    def up(self):
        self._call(self._up())

    def down(self):
        self._call(self._down())

    def hold(self):
        """Stops forwarding in both directions; connections stay open and new ones are accepted."""
        self._call(self._set_flowing(False))

    def release(self):
        """Forwards everything held, in order, and carries on."""
        self._call(self._set_flowing(True))

    def close(self):
        self.release()
        self.down()
        self.loop.call_soon_threadsafe(self.loop.stop)


def die_with_parent():
    """Children get SIGTERM if the harness dies, so an interrupted run leaves nothing behind."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def vm_hwm_kib(pid: int) -> int:
    """The process's own peak RSS. (wait4's ru_maxrss is no use here: Linux carries the forking
    parent's peak over into the child across exec, so every worker would report at least the
    harness's ~50 MiB.)"""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class WorkerProc:
    """One findings-bridge worker. CPU seconds come from wait4's rusage of the child (exact, and
    available even after SIGKILL), summed over restarts; peak RSS from sampling VmHWM. The process
    is only ever reaped here: Popen.poll()/send_signal() would reap it first and lose the rusage."""

    def __init__(self, index: int, cmd: list[str], env: dict, work: pathlib.Path):
        self.index, self.cmd, self.work = index, cmd, work
        # Its own health / metrics port (kept across restarts), so the harness can read /readyz
        # and /metrics without parsing logs.
        self.http_port = free_port()
        self.env = dict(env, BRIDGE_HTTP_ADDR=f"127.0.0.1:{self.http_port}")
        # credentials: whether /readyz named the refused connection while it was refused.
        self.paused_seen = False
        self.cpu = 0.0
        self.max_rss_kib = 0
        self.exit_codes: list[int] = []
        self.starts = 0
        self.pid: int | None = None
        # Set when the harness stops it on purpose (rolling), so its exit is not reported.
        self.stopping = False

    def start(self):
        self.starts += 1
        with open(self.work / f"worker-{self.index}-{self.starts}.log", "wb") as logf:
            proc = subprocess.Popen(
                self.cmd, env=self.env, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
            )
        # Keep Popen from reaping or warning about the child: from here on it is ours.
        proc.returncode = 0
        self.pid = proc.pid

    def _record(self, status, usage):
        self.exit_codes.append(os.waitstatus_to_exitcode(status))
        self.cpu += usage.ru_utime + usage.ru_stime
        self.pid = None

    def sample_rss(self):
        if self.pid is not None:
            self.max_rss_kib = max(self.max_rss_kib, vm_hwm_kib(self.pid))

    def alive(self) -> bool:
        """Reaps the worker if it has exited."""
        if self.pid is None:
            return False
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid:
            self._record(status, usage)
            return False
        return True

    def signal(self, sig):
        if self.pid is not None:
            os.kill(self.pid, sig)

    def readyz(self) -> tuple[int, dict] | None:
        """(status, components) of the worker's /readyz; None when it does not answer."""
        got = http_get(f"http://127.0.0.1:{self.http_port}/readyz")
        if got is None:
            return None
        try:
            return got[0], json.loads(got[1])
        except ValueError:
            return got[0], {}

    def metric(self, name: str) -> float | None:
        """The sum of every series of `name` on the worker's /metrics; None when unreadable."""
        got = http_get(f"http://127.0.0.1:{self.http_port}/metrics")
        if got is None or got[0] != 200:
            return None
        total = 0.0
        for line in got[1].decode(errors="replace").splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
        return total

    def reap(self, timeout: float):
        """Waits for the worker (SIGKILL after `timeout` seconds) and records its rusage."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                log(f"worker {self.index} did not stop within {timeout:.0f} s; killing it")
                os.kill(self.pid, signal.SIGKILL)
                self._record(*os.wait4(self.pid, 0)[1:])
                return
            self.sample_rss()
            time.sleep(0.05)


class Env:
    """moto_server + simulator + proxies for one scenario run, stopped in `close`."""

    def __init__(self, args, cfg, scenario: str, work: pathlib.Path):
        self.work = work
        self.procs: list[subprocess.Popen] = []
        self.proxy = self.ddb_proxy = None
        moto_port = free_port()
        self.moto = f"http://127.0.0.1:{moto_port}"
        # moto's DynamoDB conditional writes made atomic, as DynamoDB's are (see the module).
        moto_env = dict(os.environ, PYTHONPATH=str(ROOT / "scripts" / "moto-atomic"))
        self._spawn([str(args.python_bin_dir / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], "moto.log", env=moto_env)
        port_file = work / "sim.port"
        sim_cmd = [
            str(args.sim_bin),
            "--addr", "127.0.0.1:0",
            "--port-file", str(port_file),
            "--latency-ms", str(cfg.latency_ms),
            "--seed", str(args.seed),
            "--search-delay-ms", str(cfg.search_delay_ms),
        ]
        if cfg.rate_limit:
            sim_cmd += ["--rate-limit", str(cfg.rate_limit)]
            if cfg.rate_limit_aligned:
                sim_cmd += ["--rate-limit-aligned"]
            if cfg.rate_limit_per_system:
                sim_cmd += ["--rate-limit-per-system"]
                if cfg.securityhub_rate_limit is not None:
                    sim_cmd += ["--securityhub-rate-limit", str(cfg.securityhub_rate_limit)]
        if scenario == "faults":
            sim_cmd += [
                "--error-rate", str(cfg.error_rate),
                "--burst-429-every", str(cfg.burst_every),
                "--burst-429-len", str(cfg.burst_len),
                "--retry-after-secs", str(cfg.retry_after),
            ]
        if cfg.ambiguous_rate:
            sim_cmd += [
                "--ambiguous-create-rate", str(cfg.ambiguous_rate),
                "--ambiguous-create-mode", cfg.ambiguous_mode,
                "--ambiguous-late-ms", str(cfg.ambiguous_late_ms),
            ]
        self._spawn(sim_cmd, "sim.log")
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("simulator did not report its port")
            time.sleep(0.05)
        self.sim = f"http://127.0.0.1:{port_file.read_text().strip()}"
        wait_http(f"{self.moto}/moto-api/", "moto_server")
        wait_http(f"{self.sim}/_sim/stats", "simulator")
        self.proxy = Proxy(moto_port)
        self.sqs_via_proxy = f"http://127.0.0.1:{self.proxy.port}"
        # The workers' DynamoDB endpoint; only lease-loss puts a proxy in between to stall it.
        self.ddb_for_workers = self.moto
        if scenario == "lease-loss":
            self.ddb_proxy = Proxy(moto_port)
            self.ddb_for_workers = f"http://127.0.0.1:{self.ddb_proxy.port}"
        cfg = Config(retries={"max_attempts": 10, "mode": "standard"}, max_pool_connections=20)
        self.sqs = boto3.client("sqs", endpoint_url=self.moto, config=cfg, **CREDS)
        self.ddb = boto3.client("dynamodb", endpoint_url=self.moto, config=cfg, **CREDS)

    def _spawn(self, cmd, logname, env=None):
        logf = open(self.work / logname, "wb")
        self.procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, preexec_fn=die_with_parent, env=env))
        logf.close()

    def create_resources(self, visibility_timeout: int, max_receive: int):
        dlq_url = self.sqs.create_queue(QueueName="findings-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = self.sqs.create_queue(
            QueueName="findings",
            Attributes={
                "VisibilityTimeout": str(visibility_timeout),
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
            },
        )["QueueUrl"]
        self.ddb.create_table(
            TableName="findings-bridge",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.ddb.update_time_to_live(
            TableName="findings-bridge",
            TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
        )
        # Steady state: the store has been in use for an hour when the run's (new) findings
        # appear. Its start-of-use mark is what lets the bridge create their tickets without a
        # marker search first (src/pipeline/lifecycle/vouch.rs); a store used for the first time
        # writes it itself, and then searches for findings older than itself.
        in_use_since = int((RUN_STARTED - dt.timedelta(hours=1)).timestamp() * 1000)
        self.ddb.put_item(
            TableName="findings-bridge",
            Item={"pk": {"S": "wm#store:vouched-since"}, "value": {"S": str(in_use_since)}},
        )
        return queue_url, dlq_url

    def queue_depth(self, url: str) -> tuple[int, int, int]:
        """(visible, in flight, delayed): a parked message waits out its delay in the third."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]
        a = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        visible, in_flight, delayed = (int(a.get(n, 0)) for n in names)
        return visible, in_flight, delayed

    def close(self):
        for proxy in (self.proxy, self.ddb_proxy):
            try:
                if proxy is not None:
                    proxy.close()
            except Exception:
                pass
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


# ---------------------------------------------------------------------------------------------
# One scenario run


def worker_env(args, cfg, env: Env, queue_url: str, dlq_url: str) -> dict:
    """The workers' environment: endpoints, credentials and the scenario's worker settings. The
    exactly-once settings (BRIDGE_LEASE, JIRA_SEARCH_CONSISTENCY, the request and AWS timeouts) are
    passed whenever the scenario sets them, even to a binary that does not read them yet."""
    out = dict(
        os.environ,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL_SQS=env.sqs_via_proxy,
        AWS_ENDPOINT_URL_DYNAMODB=env.ddb_for_workers,
        AWS_ENDPOINT_URL_SECURITYHUB=env.sim,
        BRIDGE_QUEUE_URL=queue_url,
        BRIDGE_DLQ_URL=dlq_url,
        BRIDGE_STORE=f"sqlite:{env.work / 'store.db'}" if cfg.store == "sqlite" else "dynamodb:findings-bridge",
        BRIDGE_HTTP_ADDR="127.0.0.1:0",
        BRIDGE_CONCURRENCY=str(cfg.concurrency),
        BRIDGE_VISIBILITY_TIMEOUT=str(cfg.visibility_timeout),
        BRIDGE_LOG_FORMAT="json",
        RUST_LOG=os.environ.get("RUST_LOG", "warn"),
        JIRA_URL=env.sim,
        JIRA_EMAIL="sim@example.com",
        JIRA_API_TOKEN="sim-token",
        SERVICENOW_URL=env.sim,
        SERVICENOW_USERNAME="sim",
        SERVICENOW_PASSWORD="sim-password",
    )
    optional = {
        "BRIDGE_GRACE_PERIOD": cfg.grace_period,
        "BRIDGE_LEASE": cfg.lease,
        "JIRA_SEARCH_CONSISTENCY": cfg.search_consistency,
        "JIRA_REQUEST_TIMEOUT": cfg.request_timeout,
        "SERVICENOW_REQUEST_TIMEOUT": cfg.request_timeout,
        "BRIDGE_AWS_TIMEOUT": cfg.aws_timeout,
        "BRIDGE_AWS_ATTEMPT_TIMEOUT": cfg.aws_attempt_timeout,
        "JIRA_RATE_LIMIT": cfg.worker_rate_limit,
        "SERVICENOW_RATE_LIMIT": cfg.worker_rate_limit,
    }
    for name, value in optional.items():
        if value is not None:
            out[name] = str(value)
    return out


def vouch_sqlite_store(path: pathlib.Path, worker, deadline: float) -> None:
    """The SQLite twin of the table's start-of-use mark (Env.create_resources): once the worker
    has created its store's schema, and before any finding is sent (the worker reads the mark at
    its first create), say the store has been in use for an hour."""
    in_use_since = str(int((RUN_STARTED - dt.timedelta(hours=1)).timestamp() * 1000))
    while True:
        try:
            with sqlite3.connect(path, timeout=10) as db:
                db.execute(
                    "INSERT OR REPLACE INTO watermarks (name, value, updated_at) VALUES (?, ?, ?)",
                    ("store:vouched-since", in_use_since, int(time.time() * 1000)),
                )
            return
        except sqlite3.OperationalError as e:  # no file or no schema yet
            if time.monotonic() > deadline or not worker.alive():
                raise RuntimeError(f"the worker's SQLite store {path} never got its schema: {e}") from e
            time.sleep(0.2)


def create_requests(stats: dict) -> int:
    return sum(
        v
        for k, v in stats["requests"].items()
        if k in ("POST /rest/api/3/issue", "POST /rest/api/2/issue")
        or (k.startswith("POST /api/now/table/") and "{sys_id}" not in k)
    )


def run_scenario(args, cfg, scenario: str, run_no: int, templates: list[Template]) -> dict:
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"loadtest-{scenario}-", dir=args.work_dir))
    env = Env(args, cfg, scenario, work)
    workers: list[WorkerProc] = []
    try:
        queue_url, dlq_url = env.create_resources(cfg.visibility_timeout, cfg.max_receive)
        findings, phases, reordered = plan_messages(
            cfg.findings, cfg.redelivery_share, cfg.reorder_share, templates, args.seed + run_no
        )
        # marker -> finding index: `expected` must each have exactly one ticket; `resolved` (the
        # reordered findings) may have none or one closed ticket, never an open one.
        expected: dict[str, int] = {}
        resolved: dict[str, int] = {}
        for i, (fid, t) in enumerate(findings):
            for team in t.teams:
                (resolved if i in reordered else expected)[marker(team, fid)] = i
        env_vars = worker_env(args, cfg, env, queue_url, dlq_url)
        cmd = [str(args.bridge_bin), "run", "--mappings", str(ROOT / "mappings")]
        workers = [WorkerProc(k, cmd, env_vars, work) for k in range(cfg.workers)]
        messages = sum(len(p) for p in phases)

        sent_at: dict[int, float] = {}
        producer_done = threading.Event()
        producer_error: list[BaseException] = []
        deadline = time.monotonic() + cfg.timeout

        def send(batch):
            entries = []
            for j, (i, kind) in enumerate(batch):
                fid, t = findings[i]
                later = cfg.reorder_delay_s if kind == RESOLVED else None
                entries.append({"Id": str(j), "MessageBody": t.body(fid, later)})
            now = time.time()
            out = env.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            if out.get("Failed"):
                raise RuntimeError(f"send_message_batch failed: {out['Failed']}")
            for i, kind in batch:
                if kind == FIRST:
                    sent_at[i] = now

        def wait_consumed():
            """Until the queue has held nothing for three polls in a row (or the run's deadline)."""
            empty = 0
            while empty < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
                empty = empty + 1 if env.queue_depth(queue_url) == (0, 0, 0) else 0

        def produce():
            try:
                sent = 0
                start = time.monotonic()
                for n, phase in enumerate(phases):
                    if n:
                        wait_consumed()
                        log(f"{scenario}: phase {n} consumed; sending phase {n + 1} ({len(phase)} messages)")
                    for b in range(0, len(phase), 10):
                        if cfg.send_rate > 0:
                            pause = start + sent / cfg.send_rate - time.monotonic()
                            if pause > 0:
                                time.sleep(pause)
                        send(phase[b : b + 10])
                        sent += len(phase[b : b + 10])
            except BaseException as e:  # reported with the run
                producer_error.append(e)
            finally:
                producer_done.set()

        t0 = time.time()
        for w in workers:
            w.start()
        if cfg.store == "sqlite":
            vouch_sqlite_store(env.work / "store.db", workers[0], time.monotonic() + 30)
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        log(f"{scenario} run {run_no}: {len(findings)} findings ({len(reordered)} resolved first), "
            f"{messages - len(findings) - len(reordered)} redeliveries, {len(expected)} expected tickets, "
            f"{cfg.workers} workers x concurrency {cfg.concurrency}")

        # Fault schedule: one-off faults a third of the way through; rolling replaces replica k
        # once (k + 1) / (K + 1) of the expected creates have been requested and at least
        # --roll-every-s after the previous replacement, like a deployment replacing one task at a
        # time.
        total_creates = max(1, len(expected) + len(resolved))
        fault_at = max(1, total_creates // 3)
        one_off = scenario in ("kill", "queue-outage", "lease-loss", "credentials")
        fault_done = not one_off
        fault_notes: list[str] = []
        roll_at = [max(1, total_creates * (k + 1) // (cfg.workers + 1)) for k in range(cfg.workers)] if scenario == "rolling" else []
        rolled = 0
        last_roll = float("-inf")
        stall_until = None
        refuse_until = None
        idle_polls = 0
        timed_out = False
        last_progress = None
        while True:
            time.sleep(0.5)
            if time.time() - t0 > cfg.timeout:
                timed_out = True
                log(f"{scenario}: timed out after {cfg.timeout}s")
                break
            for w in workers:
                w.sample_rss()
                if w.pid is not None and not w.alive() and not w.stopping:
                    log(f"worker {w.index} exited on its own with {w.exit_codes[-1]}; see {work}")
            stats = http_json(f"{env.sim}/_sim/stats")
            creates = create_requests(stats)
            if not fault_done and stall_until is None and refuse_until is None and creates >= fault_at:
                if scenario == "kill":
                    victim = workers[0]
                    victim.sample_rss()
                    victim.signal(signal.SIGKILL)
                    victim.reap(10)
                    log(f"kill: SIGKILLed worker 0 after ~{creates} create requests; restarting in 2 s")
                    time.sleep(2)
                    victim.start()
                    fault_notes.append(f"worker 0 SIGKILLed after {creates} create requests, restarted 2 s later")
                    fault_done = True
                elif scenario == "queue-outage":
                    env.proxy.down()
                    log(f"queue-outage: SQS endpoint down after ~{creates} create requests for {cfg.outage_secs} s")
                    time.sleep(cfg.outage_secs)
                    env.proxy.up()
                    log("queue-outage: SQS endpoint back")
                    fault_notes.append(f"SQS endpoint unreachable for {cfg.outage_secs} s after {creates} create requests")
                    fault_done = True
                elif scenario == "credentials":
                    # POST /_sim/faults replaces the whole set: keep what the simulator was
                    # started with (latency, seed, search delay) and add the refusal, which
                    # the simulator ends by itself after refuse_secs.
                    faults = http_json(f"{env.sim}/_sim/faults")
                    faults["refuse_credentials_ms"] = {cfg.refuse_system: int(cfg.refuse_secs * 1000)}
                    post_json(f"{env.sim}/_sim/faults", faults)
                    refuse_until = time.monotonic() + cfg.refuse_secs
                    log(f"credentials: {cfg.refuse_system} refuses every credential after ~{creates} create requests for {cfg.refuse_secs} s")
                    fault_notes.append(f"{cfg.refuse_system} credentials refused for {cfg.refuse_secs:g} s after {creates} create requests")
                else:  # lease-loss
                    env.ddb_proxy.hold()
                    stall_until = time.monotonic() + cfg.stall_secs
                    log(f"lease-loss: DynamoDB stalled after ~{creates} create requests for {cfg.stall_secs} s")
                    fault_notes.append(f"DynamoDB stalled for {cfg.stall_secs} s after {creates} create requests, lease {cfg.lease} s")
            if stall_until is not None and not fault_done and time.monotonic() >= stall_until:
                env.ddb_proxy.release()
                fault_done = True
                log("lease-loss: DynamoDB flowing again")
            if refuse_until is not None and not fault_done:
                # While refused, each worker's /readyz should say 503 and name the connection.
                for w in workers:
                    answer = w.readyz() if w.pid is not None and not w.paused_seen else None
                    if answer and answer[0] == 503 and any(f"connection {cfg.refuse_system}" in k for k in answer[1]):
                        w.paused_seen = True
                        log(f"credentials: worker {w.index} /readyz 503: {json.dumps(answer[1])[:300]}")
                if time.monotonic() >= refuse_until:
                    fault_done = True
                    log(f"credentials: {cfg.refuse_system} accepts credentials again")
            if rolled < len(roll_at) and creates >= roll_at[rolled] and time.monotonic() - last_roll >= cfg.roll_every_s:
                last_roll = time.monotonic()
                old = workers[rolled]
                old.stopping = True
                old.sample_rss()
                old.signal(signal.SIGTERM)
                new = WorkerProc(cfg.workers + rolled, cmd, env_vars, work)
                new.start()
                workers.append(new)
                log(f"rolling: SIGTERM to worker {old.index}, worker {new.index} started, after ~{creates} create requests")
                fault_notes.append(f"worker {old.index} replaced at {time.time() - t0:.0f} s ({creates} create requests)")
                rolled += 1
            visible, in_flight, delayed = env.queue_depth(queue_url)
            progress = (visible, in_flight, delayed, creates)
            if progress != last_progress:
                last_progress = progress
                log(f"{scenario}: queue {visible} visible / {in_flight} in flight / {delayed} delayed, {creates} create requests")
            settled = fault_done and rolled == len(roll_at)
            if producer_done.is_set() and settled and visible == 0 and in_flight == 0 and delayed == 0:
                idle_polls += 1
                if idle_polls >= 3:
                    break
            else:
                idle_polls = 0
        t_done = time.time()

        # Every live worker should be ready again by itself (its probe resumes what it paused);
        # probes back off to once a minute, so give them a little longer than that.
        ready_at_end = None
        if scenario == "credentials":
            ready_deadline = time.monotonic() + 90
            while True:
                states = [w.readyz() for w in workers if w.pid is not None]
                ready_at_end = all(a is not None and a[0] == 200 for a in states)
                if ready_at_end or time.monotonic() > ready_deadline:
                    break
                time.sleep(1)
            log(f"credentials: every worker ready again: {ready_at_end}")
        # Messages parked (live workers' counters; a restarted worker's earlier count is lost).
        parked_counts = [w.metric("findings_bridge_messages_parked_total") for w in workers if w.pid is not None]
        parked = sum(c for c in parked_counts if c is not None) if any(c is not None for c in parked_counts) else None

        aws_requests = scrape_aws_requests(workers)
        for w in workers:
            w.sample_rss()
            if w.alive():
                w.signal(signal.SIGTERM)
        for w in workers:
            w.reap((cfg.grace_period or 25) + 15)

        dlq_visible, dlq_in_flight, _ = env.queue_depth(dlq_url)
        visible, in_flight, delayed = env.queue_depth(queue_url)
        tickets = http_json(f"{env.sim}/_sim/tickets?view=summary", timeout=120)["tickets"]
        stats = http_json(f"{env.sim}/_sim/stats")
        # What the verdict is computed from, next to the logs (kept with --keep or on failure).
        (work / "tickets.json").write_text(json.dumps(tickets, indent=1))
        (work / "stats.json").write_text(json.dumps(stats, indent=1))
        (work / "writebacks.json").write_text(json.dumps(http_json(f"{env.sim}/_sim/writebacks", timeout=120), indent=1))
    finally:
        for w in workers:
            if w.alive():
                w.signal(signal.SIGKILL)
                w.reap(5)
        env.close()
    run = dict(
        work=work, findings=findings, expected=expected, resolved=resolved, reordered=reordered,
        messages=messages, tickets=tickets, stats=stats, workers=workers, sent_at=sent_at,
        t0=t0, t_done=t_done, timed_out=timed_out, producer_error=producer_error,
        fault_notes=fault_notes, dlq_visible=dlq_visible, dlq_in_flight=dlq_in_flight,
        visible=visible, in_flight=in_flight + delayed, parked=parked, ready_at_end=ready_at_end,
    )
    run["aws_requests"] = aws_requests
    return verdict(args, cfg, scenario, run_no, run)


AWS_REQUESTS_METRIC = "findings_bridge_aws_requests_total"


def scrape_aws_requests(workers) -> dict[str, float] | None:
    """AWS requests the live workers sent, summed over workers, by "Service.Operation" (from
    `findings_bridge_aws_requests_total` on /metrics; scraped just before SIGTERM, so shutdown's
    calls are not in it, nor those of an incarnation a scenario killed). None if no worker
    answered, or the build does not export the series."""
    by_op: dict[str, float] = collections.Counter()
    answered = False
    for w in workers:
        if w.pid is None:
            continue
        got = http_get(f"http://127.0.0.1:{w.http_port}/metrics")
        if got is None or got[0] != 200:
            continue
        for line in got[1].decode(errors="replace").splitlines():
            if not line.startswith(AWS_REQUESTS_METRIC + "{"):
                continue
            answered = True
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
            by_op[f"{labels.get('service', '?')}.{labels.get('operation', '?')}"] += float(line.rsplit(" ", 1)[1])
    return dict(sorted(by_op.items())) if answered else None


def aws_request_fields(by_op: dict[str, float] | None, findings: int) -> dict:
    """The run's AWS calls per finding, in all and by operation (for the JSON and the table)."""
    if by_op is None or not findings:
        return {"aws_requests": None, "aws_calls_per_finding": None, "aws_calls_per_finding_by_op": None}
    return {
        "aws_requests": {k: int(v) for k, v in by_op.items()},
        "aws_calls_per_finding": round(sum(by_op.values()) / findings, 2),
        "aws_calls_per_finding_by_op": {k: round(v / findings, 3) for k, v in by_op.items()},
    }


def verdict(args, cfg, scenario: str, run_no: int, run: dict) -> dict:
    """Compares the simulator's tickets with what the findings should have produced."""
    findings, expected, resolved = run["findings"], run["expected"], run["resolved"]
    tickets, stats, workers, sent_at = run["tickets"], run["stats"], run["workers"], run["sent_at"]
    seen = collections.Counter()
    open_count = collections.Counter()
    created_at: dict[str, float] = {}
    latencies: list[float] = []
    for t in tickets:
        m = t.get("marker") or ""
        if not m.startswith("fb-"):
            continue
        seen[m] += 1
        if not t["done"]:
            open_count[m] += 1
        if t.get("created"):
            created_at.setdefault(m, parse_time(t["created"]))
    jira_markers = {t["marker"] for t in tickets if t["system"] == "jira" and t.get("marker")}
    for m, i in expected.items():
        # Jira timestamps are exact; ServiceNow's have whole seconds, so only Jira feeds latency.
        if m in jira_markers and m in created_at and i in sent_at:
            latencies.append(created_at[m] - sent_at[i])
    total_tickets = sum(seen.values())
    missing = [m for m in expected if m not in seen]
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    unexpected = [m for m in seen if m not in expected and m not in resolved]
    open_for_resolved = sum(open_count[m] for m in resolved)
    closed_for_resolved = sum(seen[m] - open_count[m] for m in resolved)
    first_send = min(sent_at.values()) if sent_at else run["t0"]
    last_created = max(created_at.values()) if created_at else run["t_done"]
    window = max(last_created - first_send, 1e-9)
    requests = sum(stats["requests"].values())
    ticket_requests = sum(v for k, v in stats["requests"].items() if k.split(" ", 1)[-1].startswith(TICKET_PATHS))
    writebacks = sum(stats["requests"].get(k, 0) for k in WRITEBACK_ENDPOINTS)
    faults = stats.get("faults", {})
    refused = faults.get("rate_limited_429", 0) + faults.get("burst_429", 0) + faults.get("errors_500", 0)
    accepted = requests - refused
    ambiguous = faults.get("ambiguous_502", 0) + faults.get("ambiguous_close", 0) + faults.get("ambiguous_late", 0)
    cpu = sum(w.cpu for w in workers)
    dlq = run["dlq_visible"] + run["dlq_in_flight"]
    result = {
        "scenario": scenario,
        "run": run_no,
        "bridge": str(args.bridge_bin),
        "findings": len(findings),
        "resolved_first": len(run["reordered"]),
        "messages": run["messages"],
        "workers": cfg.workers,
        "concurrency": cfg.concurrency,
        "latency_ms": cfg.latency_ms,
        "rate_limit": cfg.rate_limit,
        "send_rate": cfg.send_rate,
        "search_delay_ms": cfg.search_delay_ms,
        "worker_settings": {
            k: getattr(cfg, k)
            for k in ("grace_period", "lease", "search_consistency", "request_timeout", "aws_timeout", "aws_attempt_timeout")
            if getattr(cfg, k) is not None
        },
        "fault": "; ".join(run["fault_notes"]) or None,
        "expected_tickets": len(expected),
        "tickets": total_tickets,
        "lost": len(missing),
        "duplicates": duplicates,
        "unexpected": len(unexpected),
        "open_for_resolved": open_for_resolved,
        "closed_for_resolved": closed_for_resolved,
        "dlq": dlq,
        "dead_lettered": dlq,
        "left_in_queue": run["visible"] + run["in_flight"],
        "timed_out": run["timed_out"],
        "producer_error": repr(run["producer_error"][0]) if run["producer_error"] else None,
        "elapsed_s": round(run["t_done"] - run["t0"], 2),
        "window_s": round(window, 2),
        "findings_per_s": round(len(findings) / window, 2),
        "tickets_per_s": round(total_tickets / window, 2),
        "sim_requests": requests,
        "sim_requests_accepted": accepted,
        "sim_accepted_per_s": round(accepted / window, 2),
        "rate_limit_utilisation": round(accepted / window / cfg.rate_limit, 3) if cfg.rate_limit else None,
        "rate_limit_per_system": cfg.rate_limit_per_system,
        "worker_rate_limit": cfg.worker_rate_limit,
        "rate_limit_aligned": cfg.rate_limit_aligned,
        "securityhub_rate_limit": cfg.securityhub_rate_limit if cfg.rate_limit_per_system else None,
        "utilisation_by_system": utilisation_by_system(cfg, stats, tickets, first_send),
        "sim_requests_per_ticket": round(requests / total_tickets, 2) if total_tickets else None,
        "ticket_requests_per_ticket": round(ticket_requests / total_tickets, 2) if total_tickets else None,
        "writebacks_per_100_tickets": round(writebacks * 100 / total_tickets, 1) if total_tickets else None,
        "ambiguous_creates": ambiguous,
        "refused_401": faults.get("refused_401", 0),
        "parked": int(run["parked"]) if run["parked"] is not None else None,
        "paused_seen_by_workers": sum(w.paused_seen for w in workers) if scenario == "credentials" else None,
        "ready_at_end": run["ready_at_end"],
        "sim_faults": faults,
        "latency_p50_s": round(percentile(latencies, 50), 3) if latencies else None,
        "latency_p99_s": round(percentile(latencies, 99), 3) if latencies else None,
        "latency_samples": len(latencies),
        "peak_rss_mib": [round(w.max_rss_kib / 1024, 1) for w in workers],
        "cpu_s": round(cpu, 2),
        "cpu_s_per_1000_findings": round(cpu / len(findings) * 1000, 3),
        "worker_exit_codes": [w.exit_codes for w in workers],
        "work_dir": str(run["work"]),
    }
    if cfg.rate_limit and cfg.rate_limit_per_system:
        # Each system has a budget of its own: the figure that says how well the replicas share
        # one is the bottleneck's, the system whose budget the run used the most of.
        busiest = max(result["utilisation_by_system"].values(), key=lambda u: u["of_limit"] or 0)
        result["rate_limit_utilisation"] = busiest["of_limit"]
        result["sim_accepted_per_s"] = busiest["accepted_per_s"]
    result.update(aws_request_fields(run.get("aws_requests"), len(findings)))
    result["ok"] = (
        not result["timed_out"]
        and result["producer_error"] is None
        and result["lost"] == 0
        and result["duplicates"] == 0
        and result["unexpected"] == 0
        and result["open_for_resolved"] == 0
        and result["dlq"] == 0
        and result["left_in_queue"] == 0
    )
    if scenario == "credentials":
        # The pause must have been visible, and every worker must have resumed by itself.
        result["ok"] = result["ok"] and result["paused_seen_by_workers"] > 0 and result["ready_at_end"] is True
    return result


SYSTEM_PATHS = {
    "jira": ("/rest/",),
    "servicenow": ("/api/now/", "/oauth_token"),
    "securityhub": ("/findings",),
}


def utilisation_by_system(cfg, stats: dict, tickets: list[dict], first_send: float) -> dict:
    """Per system: requests it accepted (not refused by the rate limit; injected 429 bursts and
    500s are not counted per system, and the scenarios that read this inject none), per second
    from the first send until that system's last ticket was created (Security Hub: the last
    ticket of any system), and that as a share of the rate limit. A share of *its own* budget
    only with per-system windows; with one shared window the run's overall figure is the one to
    read."""
    if not cfg.rate_limit:
        return {}
    faults = stats.get("faults", {})
    limited = faults.get("rate_limited_429_by_system", {})
    last = {}
    for t in tickets:
        if t.get("created") and (t.get("marker") or "").startswith("fb-"):
            last[t["system"]] = max(last.get(t["system"], 0.0), parse_time(t["created"]))
    end_any = max(last.values(), default=first_send)
    out = {}
    for system, prefixes in SYSTEM_PATHS.items():
        requests = sum(v for k, v in stats["requests"].items() if k.split(" ", 1)[-1].startswith(prefixes))
        if not requests:
            continue
        accepted = requests - limited.get(system, 0)
        window = max(last.get(system, end_any) - first_send, 1e-9)
        limit = cfg.rate_limit
        if system == "securityhub" and cfg.rate_limit_per_system and cfg.securityhub_rate_limit is not None:
            limit = cfg.securityhub_rate_limit
        out[system] = {
            "limit": limit,
            "requests": requests,
            "rate_limited": limited.get(system, 0),
            "window_s": round(window, 2),
            "accepted_per_s": round(accepted / window, 2),
            "of_limit": round(accepted / window / limit, 3) if limit else None,
        }
        seconds = faults.get("rate_accepted_by_second", {}).get(system)
        if seconds and limit:
            out[system]["windows"] = window_fill(seconds, limit)
    return out


def window_fill(seconds: list[int], limit: int, edge: int = 10) -> dict:
    """How full the simulator's aligned one-second windows of one system were, from its first
    window that let a request through to its last: how many were full, and the requests the
    others could still have taken ("missing"), split into the first and last `edge` seconds
    (ramp-up, the run's tail) and the rest (the steady state, where the clients' limiters are
    on trial)."""
    used = [i for i, n in enumerate(seconds) if n]
    if not used:
        return {}
    span = seconds[used[0] : used[-1] + 1]
    missing = [max(limit - n, 0) for n in span]
    short = collections.Counter(m for m in missing if m)
    head, tail = missing[:edge], missing[edge:][-edge:] if len(missing) > edge else []
    middle = missing[edge:-edge] if len(missing) > 2 * edge else []
    return {
        "seconds": len(span),
        "full": sum(1 for m in missing if not m),
        "short_by": {str(k): v for k, v in sorted(short.items())},
        "missing": sum(missing),
        "missing_first_s": sum(head),
        "missing_last_s": sum(tail),
        "missing_between": sum(middle),
        "steady_of_limit": round(1 - sum(middle) / (len(middle) * limit), 3) if middle else None,
    }


COLUMNS = [
    ("scenario", "scenario", "{}"),
    ("run", "run", "{}"),
    ("findings", "findings", "{}"),
    ("expected", "expected_tickets", "{}"),
    ("tickets", "tickets", "{}"),
    ("lost", "lost", "{}"),
    ("dup", "duplicates", "{}"),
    ("open resolved", "open_for_resolved", "{}"),
    ("DLQ", "dlq", "{}"),
    ("ambiguous", "ambiguous_creates", "{}"),
    ("401s", "refused_401", "{}"),
    ("parked", "parked", "{}"),
    ("tkt req/ticket", "ticket_requests_per_ticket", "{:.2f}"),
    ("SH/100", "writebacks_per_100_tickets", "{:.0f}"),
    ("findings/s", "findings_per_s", "{:.1f}"),
    ("req/s ok", "sim_accepted_per_s", "{:.1f}"),
    ("of limit", "rate_limit_utilisation", "{:.0%}"),
    ("p50 s", "latency_p50_s", "{:.2f}"),
    ("p99 s", "latency_p99_s", "{:.2f}"),
    ("max RSS MiB", "peak_rss_mib", None),
    ("CPU s/1k", "cpu_s_per_1000_findings", "{:.2f}"),
    ("AWS/finding", "aws_calls_per_finding", "{:.2f}"),
    ("ok", "ok", "{}"),
]


def fmt(value, spec):
    if value is None:
        return "-"
    if spec is None:
        return f"{max(value):.1f}" if isinstance(value, list) and value else str(value)
    return spec.format(value)


def print_table(rows: list[dict]) -> None:
    cells = [[h for h, _, _ in COLUMNS]] + [[fmt(r.get(k), s) for _, k, s in COLUMNS] for r in rows]
    widths = [max(len(row[c]) for row in cells) for c in range(len(COLUMNS))]
    for n, row in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def median_row(scenario: str, runs: list[dict]) -> dict:
    out = {"scenario": scenario, "run": "median"}
    for _, key, spec in COLUMNS:
        vals = [r.get(key) for r in runs]
        if key in ("scenario", "run"):
            continue
        if key == "peak_rss_mib":
            out[key] = [statistics.median(max(v) for v in vals if v)] if all(vals) else None
        elif key == "ok":
            out[key] = all(vals)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[key] = statistics.median(vals)
        else:
            out[key] = None
    return out


def settings(args, scenario: str) -> argparse.Namespace:
    """The run's knobs: DEFAULTS, then the scenario's own, then --smoke's, then the command line."""
    values = dict(DEFAULTS)
    values.update(SCENARIO_DEFAULTS.get(scenario, {}))
    if args.smoke:
        values.update(SMOKE_DEFAULTS[scenario])
    for key in DEFAULTS:
        given = getattr(args, key)
        if given is not None:
            values[key] = given
    return argparse.Namespace(**values)


def check(p: argparse.ArgumentParser, cfg: argparse.Namespace, scenario: str) -> None:
    for name in ("redelivery_share", "reorder_share", "ambiguous_rate"):
        if not 0 <= getattr(cfg, name) <= 1:
            p.error(f"{scenario}: --{name.replace('_', '-')} must be between 0 and 1")
    if cfg.findings < 1 or cfg.workers < 1 or cfg.concurrency < 1:
        p.error(f"{scenario}: --findings, --workers and --concurrency must be at least 1")
    if cfg.store == "sqlite" and (cfg.workers != 1 or scenario in ("kill", "rolling", "lease-loss")):
        p.error(f"{scenario}: --store sqlite is the single-replica store: one worker, no kill, rolling or lease-loss")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", type=pathlib.Path, required=True, help="directory with findings-bridge and findings-bridge-sim")
    p.add_argument("--bridge-bin", type=pathlib.Path, help="the findings-bridge binary to test (default: BIN_DIR/findings-bridge)")
    p.add_argument("--sim-bin", type=pathlib.Path, help="the simulator binary (default: BIN_DIR/findings-bridge-sim)")
    p.add_argument("--python-bin-dir", type=pathlib.Path, default=pathlib.Path(sys.executable).parent)
    p.add_argument("--scenario", default="baseline", help=f"comma-separated: {', '.join(SCENARIOS)}, or all")
    p.add_argument("--smoke", action="store_true", help="the small variant of each scenario that CI runs (SMOKE_DEFAULTS)")
    p.add_argument("--runs", type=int, default=1, help="runs per scenario; the table adds their median")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=pathlib.Path, help="append one JSON object per run to this file")
    p.add_argument("--work-dir", type=pathlib.Path, default=None, help="where run logs go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep run logs even when the run passed")
    # Knobs: unset means "the scenario's default" (SCENARIO_DEFAULTS, SMOKE_DEFAULTS, DEFAULTS).
    k = p.add_argument_group("run knobs (default: the scenario's; see DEFAULTS and SCENARIO_DEFAULTS)")
    k.add_argument("--findings", "-n", type=int)
    k.add_argument("--redelivery-share", type=float, help="share of findings sent twice")
    k.add_argument("--workers", "-k", type=int, help="worker processes (replicas)")
    k.add_argument("--concurrency", type=int, help="BRIDGE_CONCURRENCY of each worker")
    k.add_argument("--latency-ms", type=int, help="simulator latency on every API request")
    k.add_argument("--rate-limit", type=int, help="simulator requests per second (0: none)")
    k.add_argument(
        "--rate-limit-per-system",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a --rate-limit window for each of Jira, ServiceNow and Security Hub instead of one for all",
    )
    k.add_argument(
        "--rate-limit-aligned",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="rate-limit windows on whole seconds instead of opened by the first request after the last",
    )
    k.add_argument("--securityhub-rate-limit", type=int, help="with --rate-limit-per-system: Security Hub's own limit")
    k.add_argument("--worker-rate-limit", type=int, help="JIRA_RATE_LIMIT and SERVICENOW_RATE_LIMIT of every worker")
    k.add_argument("--store", choices=("dynamodb", "sqlite"), help="the workers' store (sqlite: one worker)")
    k.add_argument("--send-rate", type=float, help="messages per second from the producer (0: as fast as it can)")
    k.add_argument("--error-rate", type=float, help="faults: share of 500s")
    k.add_argument("--burst-every", type=int, help="faults: requests between 429 bursts")
    k.add_argument("--burst-len", type=int, help="faults: 429s per burst")
    k.add_argument("--retry-after", type=int, help="faults: Retry-After seconds")
    k.add_argument("--outage-secs", type=float, help="queue-outage: seconds the SQS endpoint is gone")
    k.add_argument("--visibility-timeout", type=int)
    k.add_argument("--max-receive", type=int, help="redrive policy maxReceiveCount")
    k.add_argument("--timeout", type=float, help="seconds before a run counts as failed")
    k.add_argument("--search-delay-ms", type=int, help="Jira search lag behind creates")
    k.add_argument("--ambiguous-rate", type=float, help="share of committed creates answered ambiguously")
    k.add_argument("--ambiguous-mode", choices=("502", "close", "late", "rotate"), help="how (rotate: each in turn)")
    k.add_argument("--ambiguous-late-ms", type=int, help="when a 'late' create is answered")
    k.add_argument("--reorder-share", type=float, help="reorder: share of findings resolved before their active version")
    k.add_argument("--reorder-delay-s", type=int, help="reorder: how much newer the resolved version is")
    k.add_argument("--stall-secs", type=float, help="lease-loss: seconds DynamoDB is stalled")
    k.add_argument("--roll-every-s", type=float, help="rolling: least seconds between two replacements")
    k.add_argument("--refuse-secs", type=float, help="credentials: seconds the credentials are refused")
    k.add_argument("--refuse-system", choices=("jira", "servicenow"), help="credentials: whose credentials")
    w = p.add_argument_group("worker settings (passed as environment variables when set)")
    w.add_argument("--grace-period", "--grace", type=int, help="BRIDGE_GRACE_PERIOD seconds")
    w.add_argument("--lease", type=int, help="BRIDGE_LEASE seconds")
    w.add_argument("--search-consistency", type=int, help="JIRA_SEARCH_CONSISTENCY seconds")
    w.add_argument("--request-timeout", type=int, help="JIRA_REQUEST_TIMEOUT and SERVICENOW_REQUEST_TIMEOUT seconds")
    w.add_argument("--aws-timeout", type=int, help="BRIDGE_AWS_TIMEOUT seconds")
    w.add_argument("--aws-attempt-timeout", type=int, help="BRIDGE_AWS_ATTEMPT_TIMEOUT seconds")
    args = p.parse_args()
    # SIGTERM (CI timeouts, kill) unwinds like Ctrl-C, so every run's `finally` stops what it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    args.bridge_bin = args.bridge_bin or args.bin_dir / "findings-bridge"
    args.sim_bin = args.sim_bin or args.bin_dir / "findings-bridge-sim"
    for path in (args.bridge_bin, args.sim_bin):
        if not os.access(path, os.X_OK):
            p.error(f"{path} is not an executable")
    scenarios = list(SCENARIOS) if args.scenario == "all" else [s.strip() for s in args.scenario.split(",")]
    for s in scenarios:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; choose from {', '.join(SCENARIOS)} or all")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    configs = {s: settings(args, s) for s in scenarios}
    for s, cfg in configs.items():
        check(p, cfg, s)

    templates = [Template(n) for n in TEMPLATE_WEIGHTS]
    with tempfile.TemporaryDirectory() as probe_dir:
        learn_routes(templates, args.bridge_bin, pathlib.Path(probe_dir))
    for t in templates:
        log(f"template {t.name}: routes to {', '.join(t.teams) or 'no team (acknowledged unrouted)'}")

    rows, ok = [], True
    for scenario in scenarios:
        runs = []
        for run_no in range(1, args.runs + 1):
            result = run_scenario(args, configs[scenario], scenario, run_no, templates)
            runs.append(result)
            ok &= result["ok"]
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(result) + "\n")
            log(f"{scenario} run {run_no}: {'ok' if result['ok'] else 'FAILED'} ({result['work_dir']})")
            if result["ok"] and not args.keep:
                subprocess.run(["rm", "-rf", result["work_dir"]], check=False)
        rows.extend(runs)
        if len(runs) > 1:
            rows.append(median_row(scenario, runs))
    print_table(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
