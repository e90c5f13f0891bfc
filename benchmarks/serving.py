"""Serving a finished run: latency per query in-process and over HTTP, pairs/s and NDCG@10, per backend.

    PYTHONPATH=. HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python benchmarks/serving.py

On the demo run (`runs/demo`, from `make demo`) and its held-out questions x 30 candidates (heldout.jsonl), each
backend serves the run's shipped rule through `Reranker`, the retriever's scores computed as a service computes them:
  - torch fp32;
  - torch bf16 (autocast; on a CPU without AVX512-BF16 or AMX it is emulated and slow: measured all the same, on the
    first 10 questions, and the JSON says whether the CPU has the instructions);
  - ONNX fp32 and dynamic int8 (`reranker_tune.export.export_onnx`), exported into a temporary copy of the run (without
    its training/ and onnx/ folders), never into runs/demo.
Per backend: p50 and p95 ms per query in-process (`Reranker.rerank`) and over HTTP (`POST /v2/rerank` to
`reranker_tune.server` on 127.0.0.1, one keep-alive client, one request at a time), pairs/s in-process, and NDCG@10 of
what was served. Writes benchmarks/results/serving_cpu.json with the CPU model, the cores and the versions.

`--quick`: 10 questions, one pass (numbers not results: written to a temporary file). `--run DIR`: another finished
run. `--hand-made`: no trained run needed, a run folder made here (MiniLM with an untrained head, fused with the
retriever at weight 0.4, the bundled sample's held-out questions): for checking this script, its rankings mean nothing.
"""
from __future__ import annotations
import argparse, json, os, platform, shutil, statistics, sys, tempfile, time
from pathlib import Path
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false"); os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np, torch, transformers, sentence_transformers
import reranker_tune
from reranker_tune.core import cpu_supports_bf16
from machine import cpu_model, bf16_flags # benchmarks/machine.py
from reranker_tune.evaluation import per_query_metrics, read_eval_set, HELDOUT_FILE, FUSION
from reranker_tune.serving import Reranker
from reranker_tune.run_folder import SHIPPED_FILE

HERE = Path(__file__).resolve().parent
DEMO = HERE.parent/"runs"/"demo"
BACKENDS = {"torch fp32": dict(precision="fp32"), "torch bf16": dict(precision="bf16"),
            "onnx fp32": dict(onnx="fp32"), "onnx int8": dict(onnx="int8")}

def cpu() -> dict:
    "The CPU's model, cores, torch's threads and whether torch finds bfloat16 instructions."
    return {"model": cpu_model(), "bf16_flags": bf16_flags(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "bf16_instructions": cpu_supports_bf16()}

def versions() -> dict:
    import fastapi, uvicorn, onnxruntime
    return {"reranker_tune": reranker_tune.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "sentence_transformers": sentence_transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__}

def hand_made_run(folder: Path, queries: int=80) -> Path:
    "A run folder in the pipeline's layout: MiniLM with an untrained head, fused at weight 0.4; held-out questions."
    from reranker_tune.core import seed_everything
    from reranker_tune.data import sample_pairs, split_by_query
    from reranker_tune.mining import load_embedder
    from reranker_tune.training import load_reranker, save_model
    from reranker_tune.evaluation import build_eval_set, write_eval_set
    pairs = sample_pairs(); held_out = split_by_query(pairs, eval_size=0.2, seed=12)["eval"]
    eval_set = build_eval_set(held_out, pairs["answer"], load_embedder("all-MiniLM-L6-v2"), top_k=30)[:queries]
    seed_everything(12); save_model(load_reranker("all-MiniLM-L6-v2", max_length=128, device="cpu"), folder/"model")
    rule = {"format": 1, "shipped": FUSION, "fusion_weight": 0.4, "retriever": {"model": "all-MiniLM-L6-v2"},
            "cross_encoder": {"folder": "model", "scores": "raw logits, no activation", "precision": "fp32"},
            "reason": "hand-made by benchmarks: an untrained head, fused at an arbitrary weight"}
    (folder/SHIPPED_FILE).write_text(json.dumps(rule))
    write_eval_set(eval_set, folder/HELDOUT_FILE)
    return folder

def the_run(args, scratch: Path) -> Path:
    "A copy of the run to serve (exports go into it), or a hand-made one; exits when there is none."
    if args.hand_made: return hand_made_run(scratch/"hand-made", 10 if args.quick else 80)
    run = Path(args.run)
    if not (run/SHIPPED_FILE).is_file():
        sys.exit(f"{run}: no finished run (no {SHIPPED_FILE}). Make it first: `make demo` writes runs/demo "
                 "(or check this script with --hand-made).")
    return Path(shutil.copytree(run, scratch/run.name, ignore=shutil.ignore_patterns("training", "onnx", "*.lock")))

def percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2)}

def ndcg_of(eval_set: list[dict], rankings: list[list[int]]) -> float:
    "Mean NDCG@10 of served orders (first served: the highest score)."
    scores = []
    for s, order in zip(eval_set, rankings):
        x = np.zeros(len(s["documents"])); x[order] = np.arange(len(order), 0, -1.0); scores.append(x)
    return round(float(per_query_metrics(eval_set, scores)["ndcg@10"].mean()), 4)

def in_process(reranker: Reranker, eval_set: list[dict]) -> tuple[dict, list]:
    "Latency of `Reranker.rerank` per question (after a warm-up), pairs/s, and the orders served."
    reranker.rerank(eval_set[0]["query"], eval_set[0]["documents"])
    ms, orders, start = [], [], time.perf_counter()
    for s in eval_set:
        t = time.perf_counter()
        orders.append([h.id for h in reranker.rerank(s["query"], s["documents"], top_k=None)])
        ms.append((time.perf_counter() - t)*1000)
    pairs = sum(len(s["documents"]) for s in eval_set)
    return {**percentiles(ms), "pairs_per_s": round(pairs/(time.perf_counter() - start), 1)}, orders

def over_http(run: Path, options: dict, eval_set: list[dict]) -> tuple[dict, list]:
    "Latency of `POST /v2/rerank` per question, one request at a time, from a keep-alive client."
    import httpx
    from reranker_tune.server import create_app, running_server
    with running_server(create_app(run, device="cpu", **options), timeout=300) as url, httpx.Client(timeout=300) as c:
        ask = lambda s: c.post(f"{url}/v2/rerank", json={"query": s["query"], "documents": s["documents"]})
        ask(eval_set[0]).raise_for_status()
        ms, orders = [], []
        for s in eval_set:
            t = time.perf_counter(); answer = ask(s); ms.append((time.perf_counter() - t)*1000)
            answer.raise_for_status(); orders.append([r["index"] for r in answer.json()["results"]])
    return percentiles(ms), orders

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(DEMO), help="a finished run folder (default runs/demo)")
    parser.add_argument("--quick", action="store_true", help="10 questions; written to a temporary file")
    parser.add_argument("--hand-made", action="store_true", help="serve a run made here, not a trained one")
    parser.add_argument("--out", help="the JSON file (default benchmarks/results/serving_cpu.json)")
    args = parser.parse_args(argv)
    from reranker_tune.export import export_onnx
    scratch = Path(tempfile.mkdtemp(prefix="serving-benchmark-"))
    try:
        run = the_run(args, scratch)
        eval_set = read_eval_set(run)[:10 if args.quick else None]
        files = export_onnx(run, quantize=True) # into the copy's model/
        rows = {}
        for name, spec in BACKENDS.items():
            options = ({"onnx_file": str(files[spec["onnx"]].relative_to(run/"model"))} if "onnx" in spec
                       else {"precision": spec["precision"]})
            started, emulated = time.time(), name == "torch bf16" and not cpu()["bf16_instructions"]
            questions = eval_set[:10] if emulated else eval_set # emulated bf16 is minutes per question
            measured, orders = in_process(Reranker(run, device="cpu", **options), questions)
            http, http_orders = over_http(run, options, questions)
            rows[name] = {"queries": len(questions), "in_process": measured, "http": http,
                          "ndcg@10": ndcg_of(questions, orders),
                          "http_same_order": float(np.mean([a == b for a, b in zip(orders, http_orders)])),
                          "seconds": round(time.time() - started, 1)}
            if name == "torch bf16" and not cpu()["bf16_instructions"]:
                rows[name]["note"] = ("this CPU has no AVX512-BF16 or AMX: bf16 is emulated, measured but slow, "
                                      "on the first 10 questions only (its NDCG@10 is theirs)")
            print(f"{name:11} in-process p50 {measured['p50_ms']:8.1f} ms p95 {measured['p95_ms']:8.1f} ms "
                  f"{measured['pairs_per_s']:8.1f} pairs/s | HTTP p50 {http['p50_ms']:8.1f} ms p95 {http['p95_ms']:8.1f} ms"
                  f" | NDCG@10 {rows[name]['ndcg@10']:.4f}", flush=True)
        record = {"run": Path(args.run).name if not args.hand_made else "hand-made (untrained head)",
                  "shipped": Reranker(run).shipped, "queries": len(eval_set),
                  "candidates": max(len(s["documents"]) for s in eval_set), "quick": args.quick,
                  "machine": cpu(), "versions": versions(), "backends": rows,
                  "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        out = Path(args.out) if args.out else (scratch.parent/"serving_quick.json" if args.quick or args.hand_made
                                              else HERE/"results"/"serving_cpu.json")
        out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"written to {out}")
        return 0
    finally: shutil.rmtree(scratch, ignore_errors=True)

if __name__ == "__main__": sys.exit(main())
