"""The default recipe on the three shared data sets, and what the dev guard changes (issue 19).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python tools/trecqa_train.py   # once: runs/data/trecqa/train.jsonl.gz
    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/recipe.py [--only sample medquad trecqa]
    PYTHONPATH=. HF_HUB_OFFLINE=1 python benchmarks/recipe.py --lever listnet --set loss=ListNetLoss batch_size=4

For each data set it runs the main job with the current defaults (or the defaults changed by `--set`, recorded under the
lever's name) into runs/recipe/<lever>/<name> (the sweeps' `default` runs:
the bundled sample; a seeded 1,000-question MedQuAD subset with 200 held out; TrecQA's training lists with at
most 10 negatives each, its dev split for selection and its clean test split), then reads the finished run:

- dev: the retriever, the cross-encoder alone, the best fusion weight in sample, and the guard's test (each dev
  fold scored at the weight chosen on the others, paired 95% CI against the retriever);
- held out: the retriever, the cross-encoder alone, what the run ships (with its paired CI), and what the previous
  guard (the best weight on dev, shipped whatever the size of its gain) would have shipped, scored the same way;
- for the MedQuAD run, LiveQA-Med's 30 graded questions served by `Reranker(run_dir)`.

Writes benchmarks/results/recipe_cpu.json (one record per data set and lever, each with its machine and minutes). Run it with
nothing else running: the minutes are part of the result.
"""
import argparse, json, os, time
from pathlib import Path
import pandas as pd
import yaml
from sentence_transformers import CrossEncoder, SentenceTransformer
from reranker_tune.core import resolve_model, quiet_libraries
from machine import cpu_summary # benchmarks/machine.py
from reranker_tune.evaluation import (RETRIEVER, CROSS_ENCODER, best_weight, eval_set_from_candidate_lists,
                                      fuse_scores, paired_comparison, per_query_metrics, read_eval_set,
                                      rerank_scores, shipped_system)
from reranker_tune.pipeline import run_pipeline
from reranker_tune.serving import served_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/"shared"/"data"
DATA_SETS = {
    "sample": {},
    "medquad": {"source": SHARED/"medquad"/"train.jsonl.gz", "max_queries": 1000, "eval_size": 200},
    "trecqa": {"source": ROOT/"runs"/"data"/"trecqa"/"train.jsonl.gz", "dev_source": SHARED/"trecqa"/"dev.jsonl",
               "test_source": SHARED/"trecqa"/"test.jsonl", "max_negatives": 10},
}

def _paired(ours, theirs) -> dict:
    p = paired_comparison(ours, theirs, seed=12)
    return {k: round(p[k], 4) if isinstance(p[k], float) else p[k] for k in ("difference", "low", "high", "p_value", "wins", "losses")}

def measure(name: str, config: dict, runs: Path, lever: str="default", changes: dict|None=None) -> dict:
    "One run on one data set, read back: dev, the guard, held out, the previous guard's choice."
    start = time.time()
    run_pipeline(run_dir=runs/lever/name, **config, **(changes or {}))
    return read_run(runs/lever/name, name, lever, config, changes, (time.time() - start)/60)

def read_run(folder: Path, name: str, lever: str, config: dict, changes: dict|None, minutes: float) -> dict:
    "A finished run's record: dev, the guard, held out, the previous guard's choice (and LiveQA-Med)."
    metrics = json.loads((folder/"metrics.json").read_text())
    rule = json.loads((folder/"shipped.json").read_text())
    curve = {float(k): v for k, v in rule["dev_ndcg@10_by_weight"].items()}
    previous = best_weight(pd.Series(curve)) # the old guard: the best weight, shipped
    heldout = read_eval_set(folder)
    model = CrossEncoder(str(folder/"model"), device="cpu")
    scores = rerank_scores(model, heldout, precision=rule["cross_encoder"]["precision"], show_progress_bar=False)
    retriever = per_query_metrics(heldout)["ndcg@10"]
    old = per_query_metrics(heldout, fuse_scores(heldout, scores, previous))["ndcg@10"]
    served = served_metrics(folder)["ndcg@10"]
    record = {
        "data": name, "lever": lever, "changes": changes or {}, "minutes": round(minutes, 1),
        "config": {k: os.path.relpath(v, ROOT) if isinstance(v, Path) else v for k, v in config.items()},
        "steps": _steps(folder),
        "precision": metrics["training"]["precision"], "dev": metrics["dev"],
        "test": {"queries": len(heldout), "retriever": round(retriever.mean(), 4),
                 "cross-encoder alone": round(metrics[CROSS_ENCODER]["ndcg@10"], 4),
                 "shipped": metrics["shipped"], "fusion_weight": rule["fusion_weight"],
                 "shipped ndcg@10": round(served.mean(), 4), "shipped vs retriever": _paired(served, retriever),
                 "map": {system: round(metrics[system]["map"], 4) for system in (RETRIEVER, CROSS_ENCODER)}
                        | {"shipped": round(metrics[metrics["shipped"]]["map"], 4)},
                 "cross-encoder alone vs retriever": _paired(per_query_metrics(heldout, scores)["ndcg@10"], retriever),
                 "previous guard": {"weight": previous, "shipped": shipped_system(previous),
                                    "ndcg@10": round(old.mean(), 4), "vs retriever": _paired(old, retriever)}},
        "verdict": metrics["verdict"]}
    if name == "medquad" and (SHARED/"liveqa_med"/"test.jsonl").is_file():
        with quiet_libraries():
            embedder = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu")
            graded = eval_set_from_candidate_lists(SHARED/"liveqa_med"/"test.jsonl", grade_range=(1, 4), embedder=embedder)
        first, live = per_query_metrics(graded)["ndcg@10"], served_metrics(folder, graded)["ndcg@10"]
        record["liveqa-med"] = {"queries": len(graded), "retriever": round(first.mean(), 4),
                                "served": round(live.mean(), 4), "served vs retriever": _paired(live, first)}
    return record

def _steps(folder: Path) -> dict:
    "Optimizer steps run, and the step of the checkpoint kept, from the run's trainer state."
    state = json.loads((folder/"trainer_state.json").read_text())
    best = state.get("best_global_step") or state.get("best_model_checkpoint")
    kept = int(str(best).rsplit("-", 1)[-1]) if best else None
    return {"run": state.get("global_step"), "kept": kept}

def main(only: list[str], runs: Path, out: Path, lever: str, changes: dict, reread: bool=False):
    records = json.loads(out.read_text())["records"] if out.is_file() else []
    for name in only:
        if reread: # the record again from the finished run, its minutes kept
            before = next(r for r in records if (r["data"], r["lever"]) == (name, lever))
            record = read_run(runs/lever/name, name, lever, DATA_SETS[name], before["changes"], before["minutes"])
            record["cpu"] = before.get("cpu", cpu_summary()) # where it was trained
        else: record = measure(name, DATA_SETS[name], runs, lever, changes) | {"cpu": cpu_summary()}
        records = [r for r in records if (r["data"], r["lever"]) != (name, lever)] + [record]
        records.sort(key=lambda r: (list(DATA_SETS).index(r["data"]), r["lever"] != "default", r["lever"]))
        out.write_text(json.dumps({"cores": os.cpu_count(), "records": records}, indent=1) + "\n")
        print(json.dumps(record["test"], indent=1))

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(DATA_SETS), default=list(DATA_SETS))
    parser.add_argument("--runs", type=Path, default=ROOT/"runs"/"recipe")
    parser.add_argument("--out", type=Path, default=ROOT/"benchmarks"/"results"/"recipe_cpu.json")
    parser.add_argument("--lever", default="default", help="the name the record is kept under")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="job parameters the lever changes")
    parser.add_argument("--reread", action="store_true", help="read the finished runs again, train nothing")
    args = parser.parse_args()
    changes = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    if not args.reread and bool(changes) == (args.lever == "default"):
        parser.error("--set needs a --lever name, and a --lever other than 'default' needs --set")
    main(args.only, args.runs, args.out, args.lever, changes, args.reread)
