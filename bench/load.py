"""A bounded loopback load on the API: N concurrent submissions, then status polling; no job lost.

    python -m bench.load                                  # 200 submissions, 60 s of polling
    python -m bench.load --jobs 50 --poll-seconds 10      # a quick look
    python -m bench.load --redis-url redis://127.0.0.1:6379/15   # use a running Redis (flushes nothing)

Starts a private redis-server and the API under uvicorn (one process, production settings, local
storage, bearer keys on), and no render worker: jobs stay queued, which is what measuring the API
needs. Every submission carries its own Idempotency-Key and is retried (at most 3 times) on a
transport error or 503, as a careful client would; a retry can never make a second job.

"Jobs lost" counts accepted submissions (202) whose job is missing afterwards from the job
records, the queued set or the broker queue. Latencies are measured by the client, end to end
over loopback, on the same machine as the server (so they include the client's own CPU share).
Then the cost of a status read against the cheapest request, in the same run: `--pollers` clients
call `GET /healthz`, then `GET /jobs/{id}`, each as fast as they can for `--ratio-seconds`; the
throughput ratio status/healthz is the figure to watch (target >= 0.5: a status read costs at most
twice a trivial request). Then each is sent at a fixed 200 requests/s (open loop: a request starts
every 5 ms whether or not the earlier ones finished) for `--ratio-seconds`, for its p50/p99.
The table goes to bench/results/load_<device>.md.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/load.py` as well as `python -m bench.load`

from service.jobs.fair_queue import FairQueue
from service.jobs.queue import RENDER_QUEUE
from service.jobs.record import JobStatus
from service.jobs.store import JobStore
from tests.hostile.api_process import api_process
from tests.support.media import keypoints_bytes, png_bytes
from tests.support.redis_server import redis_server

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KEY = "load-key-0123456789"
RETRIES = 3
PACED_RATE = 200  # requests/s of the fixed-rate comparison
ROUNDS = 4  # the flat-out comparison alternates healthz and status this many times
# The load comes from one key: lift its rate and queue limits high enough not to refuse it (the
# token is still taken on every request, so its cost is in the figures).
KEY_LIMITS = {"key_rate_per_s": "1000000", "key_burst": "1000000", "key_max_queued": "0"}


@dataclass
class Samples:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)

    def add(self, started: float, status: int | str) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


async def submit_all(client: httpx.AsyncClient, count: int, samples: Samples) -> tuple[list[str], int]:
    """`count` concurrent POST /animate; returns the accepted job ids and how many retries it took."""
    image, poses = png_bytes(), keypoints_bytes(8)
    retries = 0

    async def one() -> str | None:
        nonlocal retries
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        for attempt in range(RETRIES + 1):
            started = time.perf_counter()
            try:
                response = await client.post("/animate", headers=headers, files={
                    "reference_image": ("r.png", image, "image/png"),
                    "pose_keypoints": ("p.json", poses, "application/json")})
            except httpx.TransportError as exc:
                samples.add(started, type(exc).__name__)
            else:
                samples.add(started, response.status_code)
                if response.status_code == 202:
                    return response.json()["job_id"]
                if response.status_code != 503:
                    return None
            if attempt < RETRIES:
                retries += 1
                await asyncio.sleep(0.5 * (attempt + 1))
        return None

    ids = await asyncio.gather(*(one() for _ in range(count)))
    return [job_id for job_id in ids if job_id], retries


async def poll(client: httpx.AsyncClient, ids: list[str], seconds: float, pollers: int, samples: Samples
               ) -> dict[str, str]:
    """`pollers` clients GET /jobs/{id} round-robin over `ids` for `seconds`; the last status seen per job."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + seconds

    async def poller(offset: int) -> None:
        k = offset
        while time.monotonic() < deadline:
            job_id = ids[k % len(ids)]
            k += pollers
            started = time.perf_counter()
            try:
                response = await client.get(f"/jobs/{job_id}")
            except httpx.TransportError as exc:
                samples.add(started, type(exc).__name__)
                continue
            samples.add(started, response.status_code)
            if response.status_code == 200:
                seen[job_id] = response.json()["status"]

    await asyncio.gather(*(poller(i) for i in range(pollers)))
    return seen


async def timed_get(client: httpx.AsyncClient, path: str, started: float, samples: Samples) -> None:
    """One GET of `path`, recorded against `started` with its status (or the transport error's name)."""
    try:
        response = await client.get(path)
    except httpx.TransportError as exc:
        samples.add(started, type(exc).__name__)
        return
    samples.add(started, response.status_code)


async def hammer(client: httpx.AsyncClient, path: str, seconds: float, pollers: int, samples: Samples) -> float:
    """`pollers` clients GET `path` back to back for `seconds`; returns the wall time."""
    deadline = time.monotonic() + seconds

    async def one() -> None:
        while time.monotonic() < deadline:
            await timed_get(client, path, time.perf_counter(), samples)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(pollers)))
    return time.monotonic() - started


async def paced(client: httpx.AsyncClient, path: str, seconds: float, rate: int, samples: Samples) -> float:
    """GET `path` at a fixed `rate` per second for `seconds` (open loop); returns the wall time."""
    tasks, begin = [], time.perf_counter()
    for k in range(round(seconds * rate)):
        await asyncio.sleep(max(0.0, begin + k / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(timed_get(client, path, time.perf_counter(), samples)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - begin


@dataclass
class Comparison:
    """GET /healthz against GET /jobs/{id} in one run: flat out, then at PACED_RATE per second."""
    healthz: Samples = field(default_factory=Samples)
    status: Samples = field(default_factory=Samples)
    healthz_paced: Samples = field(default_factory=Samples)
    status_paced: Samples = field(default_factory=Samples)
    walls: dict[str, float] = field(default_factory=dict)
    server_cpu_s: dict[str, float] = field(default_factory=dict)  # the API process' CPU time per part

    def cpu_us(self, name: str) -> float:
        """Server CPU microseconds per request (NaN without the API's pid)."""
        return self.server_cpu_s.get(name, float("nan")) / len(getattr(self, name).latencies_ms) * 1e6

    def rate(self, name: str) -> float:
        return len(getattr(self, name).latencies_ms) / self.walls[name]

    @property
    def ratio(self) -> float:
        return self.rate("status") / self.rate("healthz")


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds used so far by process `pid` (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def compare(client: httpx.AsyncClient, job_id: str, seconds: float, pollers: int,
                  api_pid: int | None = None) -> Comparison:
    out = Comparison()
    out.walls = {"healthz": 0.0, "status": 0.0}
    cpu = {"healthz": 0.0, "status": 0.0}
    for _ in range(ROUNDS):  # alternate, so drift (warm-up, a neighbour's load) hits both alike
        for name, path in (("healthz", "/healthz"), ("status", f"/jobs/{job_id}")):
            before = process_cpu_s(api_pid)
            out.walls[name] += await hammer(client, path, seconds / ROUNDS, pollers, getattr(out, name))
            cpu[name] += process_cpu_s(api_pid) - before
    if api_pid is not None:
        out.server_cpu_s = cpu
    out.walls["healthz_paced"] = await paced(client, "/healthz", seconds, PACED_RATE, out.healthz_paced)
    out.walls["status_paced"] = await paced(client, f"/jobs/{job_id}", seconds, PACED_RATE, out.status_paced)
    return out


def lost_jobs(redis_url: str, ids: list[str]) -> list[str]:
    """Accepted ids missing from the job records, the queued set, or both the broker queue and the
    fair waiting lists (no render worker runs, so no dispatcher releases them)."""
    jobs = JobStore.from_url(redis_url)
    queued = set(jobs.ids_with_status(JobStatus.QUEUED))
    broker = jobs.redis.lrange(RENDER_QUEUE, 0, -1)
    waiting = FairQueue(jobs.redis, jobs.prefix).waiting_ids()
    recorded = {job_id for job_id in ids if jobs.redis.exists(f"{jobs.prefix}:job:{job_id}")}
    return [job_id for job_id in ids if job_id not in recorded or job_id not in queued
            or (job_id not in waiting and not any(job_id.encode() in message for message in broker))]


@dataclass
class Report:
    args: argparse.Namespace
    submit: Samples
    status: Samples
    accepted: int
    retries: int
    lost: list[str]
    not_queued: int
    submit_wall_s: float
    poll_wall_s: float
    comparison: Comparison | None = None

    def markdown(self) -> str:
        def row(name: str, s: Samples, wall: float) -> str:
            ok = sum(n for code, n in s.statuses.items() if code in (200, 202))
            return (f"| {name} | {len(s.latencies_ms)} | {s.percentile(50):.1f} | {s.percentile(90):.1f} | "
                    f"{s.percentile(99):.1f} | {max(s.latencies_ms, default=float('nan')):.1f} | "
                    f"{len(s.latencies_ms) / wall:.0f} | {ok} | {_codes(s.statuses)} |")
        a = self.args
        return "\n".join([
            f"# API load: {a.jobs} concurrent submissions, then {a.poll_seconds:.0f} s of status polling",
            "",
            (f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC with `python -m bench.load "
            f"--jobs {a.jobs} --poll-seconds {a.poll_seconds:g} --pollers {a.pollers}` on {_machine()}."),
            ("One uvicorn process (production settings, local storage, bearer auth), a private redis-server, "
            "no render worker (jobs stay queued); client and server share the machine, over loopback."),
            "",
            (f"**Jobs lost: {len(self.lost)}** of {self.accepted} accepted ({a.jobs - self.accepted} not accepted; "
            f"{self.retries} retries; {self.not_queued} seen in a state other than queued)."),
            "",
            "| request | count | p50 ms | p90 ms | p99 ms | max ms | req/s | 2xx | statuses |",
            "|---|---|---|---|---|---|---|---|---|",
            row("POST /animate (concurrent burst)", self.submit, self.submit_wall_s),
            row(f"GET /jobs/{{id}} ({a.pollers} pollers)", self.status, self.poll_wall_s),
            "",
            *self.comparison_lines(row),
        ])

    def comparison_lines(self, row) -> list[str]:
        c, a = self.comparison, self.args
        if c is None:
            return []
        return [
            f"## A status read against `/healthz`, same run, {a.ratio_seconds:g} s each",
            "",
            (f"**Throughput ratio status/healthz: {c.ratio:.2f}** (target >= 0.5); flat out with {a.pollers} "
             f"clients: {c.rate('status'):.0f} vs {c.rate('healthz'):.0f} requests/s. At a fixed {PACED_RATE} "
             f"requests/s, p99 {c.status_paced.percentile(99):.1f} ms vs {c.healthz_paced.percentile(99):.1f} ms."),
            "",
            (f"API process CPU per request (from /proc, flat-out parts): status {c.cpu_us('status'):.0f} us, "
             f"healthz {c.cpu_us('healthz'):.0f} us, ratio {c.cpu_us('status') / c.cpu_us('healthz'):.2f}. "
             "The client shares the machine's cores, so when it, not the server, is the bottleneck the "
             "throughput ratio understates the difference; the CPU figures do not."),
            "",
            "| request | count | p50 ms | p90 ms | p99 ms | max ms | req/s | 2xx | statuses |",
            "|---|---|---|---|---|---|---|---|---|",
            row("GET /healthz (flat out)", c.healthz, c.walls["healthz"]),
            row("GET /jobs/{id} (flat out)", c.status, c.walls["status"]),
            row(f"GET /healthz ({PACED_RATE}/s)", c.healthz_paced, c.walls["healthz_paced"]),
            row(f"GET /jobs/{{id}} ({PACED_RATE}/s)", c.status_paced, c.walls["status_paced"]),
            "",
        ]


def _codes(statuses: dict[int | str, int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items(), key=lambda kv: str(kv[0])))


def _machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}"


@contextlib.contextmanager
def redis_for(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with redis_server() as server:
        yield server.url


async def run(args: argparse.Namespace, api_url: str, redis_url: str, api_pid: int | None = None) -> Report:
    limits = httpx.Limits(max_connections=args.jobs, max_keepalive_connections=args.jobs)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, limits=limits, timeout=120) as client:
        submit, status = Samples(), Samples()
        started = time.monotonic()
        ids, retries = await submit_all(client, args.jobs, submit)
        submit_wall = time.monotonic() - started
        started = time.monotonic()
        seen = await poll(client, ids, args.poll_seconds, args.pollers, status) if ids else {}
        poll_wall = time.monotonic() - started
        comparison = await compare(client, ids[0], args.ratio_seconds, args.pollers, api_pid) \
            if ids and args.ratio_seconds else None
    lost = lost_jobs(redis_url, ids)
    return Report(args, submit, status, len(ids), retries, lost, sum(s != "queued" for s in seen.values()),
                  submit_wall, poll_wall, comparison)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="concurrent submissions (default 200)")
    parser.add_argument("--poll-seconds", type=float, default=60.0)
    parser.add_argument("--pollers", type=int, default=50, help="concurrent status pollers (default 50)")
    parser.add_argument("--ratio-seconds", type=float, default=10.0,
                        help="seconds of each part of the status-vs-healthz comparison (default 10)")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--device", default="cpu", help="name in the results file: load_<device>.md")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if not 1 <= args.jobs <= 2000 or not 0 < args.poll_seconds <= 600 or not 1 <= args.pollers <= 500 \
            or not 0 < args.ratio_seconds <= 120:
        parser.error("keep the load bounded: --jobs 1..2000, --poll-seconds up to 600, --pollers 1..500, "
                     "--ratio-seconds up to 120")
    with redis_for(args.redis_url) as redis_url, tempfile.TemporaryDirectory(prefix="unianimate-load-") as tmp, \
            api_process(redis_url, Path(tmp), api_keys=KEY, **KEY_LIMITS) as api:
        report = asyncio.run(run(args, api.url, redis_url, api.pid))
    text = report.markdown()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"load_{args.device}.md").write_text(text)
    print(text)
    return 1 if report.lost else 0


if __name__ == "__main__":
    sys.exit(main())
