"""Load test of `domainbert serve`: N concurrent clients for S seconds on loopback.

Starts ``domainbert serve`` in a subprocess with the given models (default: MiniLM for /embed and
the tiny hand-built NER and MLM models of tests/inference_models.py), then runs ``--clients``
asyncio clients, each sending one request after another (cycling /ner, /fill-mask, /embed with one
biomedical sentence each) for ``--seconds``. Prints requests/s, p50/p99 latency, errors (any non-200
or transport error) and the server's peak RSS (sampled every 0.2 s with psutil).

    python benchmarks/serve_load.py --clients 32 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Patients with breast cancer and diabetes mellitus were treated with [MASK] for six months."
REQUESTS = [("/ner", {"texts": [TEXT]}), ("/fill-mask", {"texts": [TEXT], "top_k": 5}),
            ("/embed", {"texts": [TEXT]})]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _client(base: str, until: float, latencies: list[float], errors: list[str], offset: int) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        i = offset
        while time.monotonic() < until:
            path, body = REQUESTS[i % len(REQUESTS)]
            i += 1
            start = time.perf_counter()
            try:
                r = await client.post(path, json=body)
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code} {r.text[:100]}")
            except httpx.HTTPError as exc:
                errors.append(f"{path}: {type(exc).__name__}")
            latencies.append(time.perf_counter() - start)


async def _load(base: str, clients: int, seconds: float) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    start = time.monotonic()
    await asyncio.gather(*(_client(base, start + seconds, latencies, errors, k) for k in range(clients)))
    return latencies, errors, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--model", type=Path, help="--model of the server (default: a tiny MLM)")
    parser.add_argument("--ner-model", type=Path, help="--ner-model of the server (default: the tiny rule NER)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    sys.path.insert(0, str(ROOT / "tests"))
    from inference_models import save_rule_ner, save_tiny_mlm

    model = args.model or save_tiny_mlm(work / "mlm")
    ner = args.ner_model or save_rule_ner(work / "ner")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "domainbert", "serve", "--model", str(model),
                               "--ner-model", str(ner), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {server.stdout.read() if server.stdout else ''}")
            time.sleep(0.2)
        proc = psutil.Process(server.pid)
        peak = [proc.memory_info().rss]

        async def sample() -> None:
            while True:
                peak[0] = max(peak[0], proc.memory_info().rss)
                await asyncio.sleep(0.2)

        async def run() -> tuple[list[float], list[str], float]:
            sampler = asyncio.create_task(sample())
            try:
                return await _load(base, args.clients, args.seconds)
            finally:
                sampler.cancel()

        latencies, errors, elapsed = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)
    q = statistics.quantiles(latencies, n=100)
    result = {"clients": args.clients, "seconds": round(elapsed, 1), "requests": len(latencies),
              "requests_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(q[49] * 1000, 1),
              "p99_ms": round(q[98] * 1000, 1), "errors": len(errors),
              "server_peak_rss_mib": round(peak[0] / 2**20, 1), "cpus": os.cpu_count(),
              "model": str(args.model or "tiny MLM (tests/inference_models.py)"),
              "ner_model": str(args.ner_model or "tiny rule NER (tests/inference_models.py)")}
    print(json.dumps(result, indent=2))
    if errors:
        print("first errors:", *errors[:5], sep="\n  ", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
