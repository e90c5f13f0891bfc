"""Wall time of `reranker_tune.mining.mine_negatives` against `mine_hard_negatives` called directly, same data and model.

    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/mining.py --max-queries 1000 --repeats 3

Times, on one MedQuAD slice (../shared/data/medquad/train.jsonl.gz) and in one process: direct `mine_hard_negatives`,
`mine_negatives` on a first run (empty cache) and on a cached re-run. Goals: first run <= 1.05x direct, cached re-run
<= 0.1x direct. Each side runs `--repeats` times (at least 3), and the order of the two sides alternates from one
round to the next (direct first, then ours first, ...), so warm-up and drift fall on both; the script reports the
median and the spread (min-max) of each, and the ratio of medians. It also prints the median time `mine_negatives`
spends outside `mine_hard_negatives` (validation, hashing, cache writes, shortfall count). Run it on an unloaded
machine: on a shared CPU the two sides can differ by several percent from noise alone.
"""
import argparse, platform, statistics, tempfile, time
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

def _summary(times: list[float]) -> str:
    "Median and spread of one side's timings."
    return f"median {statistics.median(times):8.2f} s  (min {min(times):.2f}, max {max(times):.2f}, n={len(times)})"

def main(max_queries: int|None, num_negatives: int, batch_size: int, device: str|None, data: Path=DATA,
         model: str="all-MiniLM-L6-v2", repeats: int=3):
    if repeats < 3: raise SystemExit(f"--repeats {repeats}: at least 3 runs per side are needed for a median and a spread.")
    device = device or detect_device()
    pairs = to_pairs(load_source(data, extra_columns="drop"))
    if max_queries: pairs = pairs.select(range(min(max_queries, len(pairs))))
    embedder = load_embedder(model, device=device)
    embedder.encode(["warm-up"]) # load kernels before any timing
    params = dict(num_negatives=num_negatives, range_min=0, range_max=100, sampling_strategy="top", output_format="labeled-pair", batch_size=batch_size)
    library = mining.mine_hard_negatives
    inside = []
    def timed_library(*args, **kwargs): # how much of our wall time is the library's own work
        out, t = _timed(lambda: library(*args, **kwargs)); inside.append(t); return out
    mining.mine_hard_negatives = timed_library
    def direct_side():
        return _timed(lambda: library(pairs, embedder, anchor_column_name="query", positive_column_name="answer", verbose=False, **params))
    def our_side():
        inside.clear()
        with tempfile.TemporaryDirectory() as cache:
            first, t_first = _timed(lambda: mine_negatives(pairs, embedder, cache_folder=cache, **params))
            outside = t_first - sum(inside)
            again, t_again = _timed(lambda: mine_negatives(pairs, embedder, cache_folder=cache, **params))
        assert again.to_list() == first.to_list()
        return first, t_first, t_again, outside
    times = {"direct": [], "first": [], "cached": [], "outside": []}
    for round_ in range(repeats):
        order = ("direct", "ours") if round_ % 2 == 0 else ("ours", "direct")
        for side in order:
            if side == "direct": direct, t = direct_side(); times["direct"].append(t)
            else:
                first, t_first, t_again, outside = our_side()
                times["first"].append(t_first); times["cached"].append(t_again); times["outside"].append(outside)
        assert len(first) == len(direct)
        print(f"round {round_ + 1}/{repeats} ({' then '.join(order)}): direct {times['direct'][-1]:.2f} s, "
              f"first run {times['first'][-1]:.2f} s, cached {times['cached'][-1]:.2f} s", flush=True)
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"device: {device} ({name}); {len(pairs)} pairs, {len(set(pairs['query']))} queries, {num_negatives} negatives, "
          f"batch {batch_size}; {repeats} runs per side, order alternating")
    print(f"mine_hard_negatives direct      : {_summary(times['direct'])}  ({len(direct)} rows)")
    print(f"mine_negatives, first run       : {_summary(times['first'])}  ratio of medians {median['first'] / median['direct']:.3f} "
          f"(goal <= 1.05); median {median['outside']:.2f} s outside mine_hard_negatives ({median['outside'] / median['direct']:.1%} of direct)")
    print(f"mine_negatives, cached re-run   : {_summary(times['cached'])}  ratio of medians {median['cached'] / median['direct']:.3f} (goal <= 0.1)")

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-queries", type=int, default=None, help="first N pairs only (a quick CPU run)")
    p.add_argument("--num-negatives", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None)
    p.add_argument("--data", type=Path, default=DATA, help="MedQuAD train.jsonl.gz (default: ../shared/data/medquad)")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="embedder: short name, folder or Hub id")
    p.add_argument("--repeats", type=int, default=3, help="runs per side (at least 3), order alternating between rounds")
    a = p.parse_args()
    main(a.max_queries, a.num_negatives, a.batch_size, a.device, a.data, a.model, a.repeats)
