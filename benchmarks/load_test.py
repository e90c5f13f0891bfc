"""Load test of `reranker-tune serve`: concurrent clients on loopback, failures, memory, latency, oversized requests.

    PYTHONPATH=. HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python benchmarks/load_test.py

Starts `reranker-tune serve runs/demo` as a subprocess on a free port of 127.0.0.1, then 16 clients (threads, one
keep-alive connection each) send held-out questions with their 30 candidates for 60 s, alternating TEI's
`POST /rerank` and Cohere's `POST /v2/rerank`. Reports requests, failed requests (anything but a 200 with a ranking
of every candidate; the goal is 0), p50/p95/max latency, requests/s, and the server's RSS at start (after a warm-up
request) and at the end. Then two oversized requests, which must be refused with 413 while the server keeps serving:
10,000 documents, and one document of 5 MB. SIGTERM stops the server; its exit status is recorded.
Writes benchmarks/results/load_test_cpu.json; exits 1 when a request failed or an oversized one was not refused.

`--quick`: 4 clients for 10 s (written to a temporary file). `--hand-made`: serves a run made by
benchmarks/serving.py's `hand_made_run` (MiniLM, untrained head), for checking this script without `make demo`.
"""
from __future__ import annotations
import argparse, json, os, random, signal, socket, subprocess, sys, tempfile, threading, time
from pathlib import Path
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false"); os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np, httpx
from reranker_tune.evaluation import read_eval_set
from serving import DEMO, HERE, cpu, versions, hand_made_run, the_run # benchmarks/serving.py

def rss_mb(pid: int) -> float:
    "The resident memory of process `pid`, in MB (Linux)."
    line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("VmRSS"))
    return round(int(line.split()[1])/1024, 1)

def start_server(run: Path) -> tuple[subprocess.Popen, str, Path]:
    "`reranker-tune serve run` on a free port; its URL once /health answers."
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    log = Path(tempfile.mkstemp(prefix="serve-", suffix=".log")[1])
    process = subprocess.Popen([sys.executable, "-m", "reranker_tune.cli", "serve", str(run), "--port", str(port)],
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200: return process, url, log
        except httpx.TransportError: pass
        if process.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)

def client(url: str, eval_set: list[dict], until: float, seed: int, results: list):
    "One client: requests until `until`, each recorded as (ms, ok, why)."
    rng = random.Random(seed)
    with httpx.Client(timeout=120) as c:
        while time.time() < until:
            s, tei = rng.choice(eval_set), rng.random() < 0.5
            t = time.perf_counter()
            try:
                if tei: answer = c.post(f"{url}/rerank", json={"query": s["query"], "texts": s["documents"]})
                else: answer = c.post(f"{url}/v2/rerank", json={"query": s["query"], "documents": s["documents"]})
                ranked = answer.json() if tei else answer.json().get("results", [])
                ok = answer.status_code == 200 and len(ranked) == len(s["documents"])
                why = None if ok else f"{answer.status_code}: {answer.text[:200]}"
            except Exception as e: ok, why = False, repr(e)[:200]
            results.append(((time.perf_counter() - t)*1000, ok, why))

def oversized(url: str) -> dict:
    "The status of a 10,000-document request and of a 5 MB document, and whether the server still answers."
    many = httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": ["a short text"]*10_000}, timeout=120)
    huge = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a", "x"*5_000_000]}, timeout=120)
    return {"10000 documents": many.status_code, "a 5 MB document": huge.status_code,
            "health after": httpx.get(f"{url}/health", timeout=10).status_code}

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(DEMO), help="a finished run folder (default runs/demo)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--quick", action="store_true", help="4 clients, 10 s; written to a temporary file")
    parser.add_argument("--hand-made", action="store_true", help="serve a run made here, not a trained one")
    args = parser.parse_args(argv)
    if args.quick: args.clients, args.seconds = 4, 10
    scratch = Path(tempfile.mkdtemp(prefix="load-test-"))
    run = the_run(args, scratch)
    eval_set = read_eval_set(run)
    process, url, log = start_server(run)
    try:
        httpx.post(f"{url}/rerank", json={"query": eval_set[0]["query"], "texts": eval_set[0]["documents"]}, timeout=120)
        rss_start, results = rss_mb(process.pid), []
        until = time.time() + args.seconds
        threads = [threading.Thread(target=client, args=(url, eval_set, until, i, results)) for i in range(args.clients)]
        started = time.time()
        for t in threads: t.start()
        for t in threads: t.join()
        elapsed, rss_end = time.time() - started, rss_mb(process.pid)
        refused = oversized(url)
    finally:
        process.send_signal(signal.SIGTERM)
        try: status = process.wait(60)
        except subprocess.TimeoutExpired: process.kill(); status = "killed after 60 s"
    ms = [r[0] for r in results]
    failed = [r[2] for r in results if not r[1]]
    record = {"run": "hand-made (untrained head)" if args.hand_made else Path(args.run).name, "clients": args.clients,
              "seconds": args.seconds, "requests": len(results), "failed": len(failed), "failures": failed[:10],
              "requests_per_s": round(len(results)/elapsed, 2),
              "p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
              "max_ms": round(max(ms), 1), "rss_mb": {"start": rss_start, "end": rss_end}, "oversized": refused,
              "server_exit_status": status, "candidates": len(eval_set[0]["documents"]), "machine": cpu(),
              "versions": versions(), "quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = (scratch/"load_test.json" if args.quick or args.hand_made else HERE/"results"/"load_test_cpu.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("requests", "failed", "requests_per_s", "p50_ms", "p95_ms", "rss_mb",
                                             "oversized", "server_exit_status")}, indent=1))
    print(f"written to {out}")
    good = not failed and refused["10000 documents"] == 413 and refused["a 5 MB document"] == 413 \
        and refused["health after"] == 200
    return 0 if good else 1

if __name__ == "__main__": sys.exit(main())
