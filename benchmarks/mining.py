"""Wall time of `reranker_tune.mining.mine_negatives` against `mine_hard_negatives` called directly, same data and model.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/mining.py --max-queries 1000

Prints three timings on one MedQuAD slice (../shared/data/medquad/train.jsonl.gz), all in one process:
direct `mine_hard_negatives`, `mine_negatives` on a first run (empty cache) and on a cached re-run. Goals: first run
<= 1.05x direct, cached re-run <= 0.1x direct. The order is direct first, so any warm-up cost falls on the baseline.
On a shared CPU the two mining runs can differ by several percent from noise alone, so the script also prints the
time `mine_negatives` spends outside `mine_hard_negatives` (validation, hashing, cache writes, shortfall count).
"""
import argparse, platform, tempfile, time
from pathlib import Path
import torch
from sentence_transformers.util import mine_hard_negatives
from reranker_tune.core import detect_device
from reranker_tune.data import load_source, to_pairs
import reranker_tune.mining as mining
from reranker_tune.mining import load_embedder, mine_negatives

DATA = Path(__file__).resolve().parents[1].parent/"shared"/"data"/"medquad"/"train.jsonl.gz"

def _timed(f):
    start = time.perf_counter(); out = f(); return out, time.perf_counter() - start

def main(max_queries: int|None, num_negatives: int, batch_size: int, device: str|None, data: Path=DATA, model: str="all-MiniLM-L6-v2"):
    device = device or detect_device()
    pairs = to_pairs(load_source(data, extra_columns="drop"))
    if max_queries: pairs = pairs.select(range(min(max_queries, len(pairs))))
    embedder = load_embedder(model, device=device)
    embedder.encode(["warm-up"]) # load kernels before any timing
    params = dict(num_negatives=num_negatives, range_min=0, range_max=100, sampling_strategy="top", output_format="labeled-pair", batch_size=batch_size)
    direct, t_direct = _timed(lambda: mine_hard_negatives(pairs, embedder, anchor_column_name="query", positive_column_name="answer",
                                                           verbose=False, **params))
    inside = []
    def timed_library(*args, **kwargs): # how much of our wall time is the library's own work
        out, t = _timed(lambda: mine_hard_negatives(*args, **kwargs)); inside.append(t); return out
    mining.mine_hard_negatives = timed_library
    with tempfile.TemporaryDirectory() as cache:
        first, t_first = _timed(lambda: mine_negatives(pairs, embedder, cache_folder=cache, **params))
        again, t_again = _timed(lambda: mine_negatives(pairs, embedder, cache_folder=cache, **params))
    assert len(first) == len(direct) and again.to_list() == first.to_list()
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}); {len(pairs)} pairs, {len(set(pairs['query']))} queries, {num_negatives} negatives, batch {batch_size}")
    print(f"mine_hard_negatives direct      : {t_direct:8.2f} s  ({len(direct)} rows)")
    print(f"mine_negatives, first run       : {t_first:8.2f} s  ratio {t_first / t_direct:.3f} (goal <= 1.05); "
          f"{t_first - sum(inside):.2f} s of it outside mine_hard_negatives ({(t_first - sum(inside)) / t_direct:.1%} of direct)")
    print(f"mine_negatives, cached re-run   : {t_again:8.2f} s  ratio {t_again / t_direct:.3f} (goal <= 0.1)")

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-queries", type=int, default=None, help="first N pairs only (a quick CPU run)")
    p.add_argument("--num-negatives", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--data", type=Path, default=DATA, help="MedQuAD train.jsonl.gz (default: ../shared/data/medquad)")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="embedder: short name, folder or Hub id")
    a = p.parse_args()
    main(a.max_queries, a.num_negatives, a.batch_size, a.device, a.data, a.model)
