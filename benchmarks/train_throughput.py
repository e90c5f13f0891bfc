"""Training throughput and quality: the seed recipe in fp32 and in bf16 against reranker_tune's defaults, side by side.

Full run (about 44 minutes on the 2-core CPU, 42 when the data are already cached; run it on an unloaded machine,
with the default thread count: the JSON records the load average at start and end):

    PYTHONPATH=. HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false python benchmarks/train_throughput.py --device cpu

It writes benchmarks/results/train_throughput_cpu.json and prints a markdown table. Smoke run, under 3 minutes, whose
numbers are not results (written to a temporary file): add `--smoke`. `--prepare-only` mines and builds the evaluation
sets into the cache, prints the plan and the time estimate, and stops. GPU: `--device cuda` (row 2 is dropped there: the
seed recipe already trains in bf16 on a GPU).

Data: a fixed seeded subset of MedQuAD (../shared/data/medquad, next to the repository): training questions until
their answers and 5 mined hard negatives per question make at least `--train-pairs` labelled pairs (2,000), 200
held-out questions reranked from the retriever's top 30, 30 dev questions (top 10) for time-to-quality, and the answers
of `--corpus-queries` questions in all as the corpus searched. Mining and the evaluation sets are made once and cached
(`--cache`); every row and repeat trains on the same pairs and is scored on the same candidates.

Rows, run in alternating order (1, 2, 3, 1, 2, 3, ...), each in a fresh process so that peak RSS is its own:
  1. the seed recipe as a CPU user runs it: CrossEncoderTrainer, BinaryCrossEntropyLoss with pos_weight = negatives
     per positive in the mined data (about 4.4: some questions have several answers), batch 64, lr 2e-5, warmup 0.1, random batches, fp32 (the seed set bf16 for GPUs only);
  2. the same with bf16 forced (bf16=True with use_cpu: autocast);
  3. reranker_tune's `fine_tune` with its defaults (precision, batch size, batch order, learning rate: whatever the
     package chooses), checkpoints off as in rows 1-2 (their 32 steps never reach the trainer's save_steps=500).

Columns: pairs/s and tokens/s (real, unpadded tokens) over the wall time of the training call less the dev
evaluations; padding share (padded positions / all positions of the training batches); tokenising share (time inside
`CrossEncoder.preprocess` during training / wall time); peak RSS of the row's process up to the end of training;
NDCG@10 on the held-out set with the paired 95% CI of the difference to row 1 (`evaluation.paired_comparison`); and
time-to-quality: training seconds until dev NDCG@10 first reaches row 1's final dev value, dev being evaluated after
25, 50, 75 and 100% of the epoch in every row. The repeats use the same seed and data, so they train the same model
(the weights checksum in the JSON shows it): the first round scores held-out and dev, later rounds only time.
Held-out and dev scoring run under bf16 autocast for every row on a CPU with bf16 (`--eval-precision fp32` to change):
one scorer for all rows, so the comparison is of training only, and 6,000 pairs per row cost 3 minutes instead of 5.
"""
from __future__ import annotations
import os, sys, json, math, time, random, shutil, hashlib, argparse, resource, statistics, subprocess, tempfile
from collections.abc import Mapping # the tokenizer's BatchEncoding is a Mapping, not a dict
from pathlib import Path
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch, datasets, transformers
from transformers import TrainerCallback
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from reranker_tune.core import detect_device, detect_precision
from machine import BF16_FLAGS, cpuinfo, cpu_model # benchmarks/machine.py
from reranker_tune.data import load_source
from reranker_tune.mining import load_embedder, mine_negatives
from reranker_tune.training import load_reranker, fine_tune
from reranker_tune.evaluation import build_eval_set, rerank_scores, per_query_metrics, paired_comparison, found_share

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1]/"shared"/"data"/"medquad"/"train.jsonl.gz" # ../shared/data from the repository root
ROWS = {"seed": "1. seed recipe", "seed bf16": "2. seed recipe, bf16 forced", "package": "3. reranker_tune defaults"}
CACHE_LAYOUT = 2 # bump when what `prepare` writes changes, so that old caches are not reused
DEV_POINTS = (0.25, 0.5, 0.75, 1.0) # shares of the epoch after which dev is scored, the same for every row
# Measured here (issue 12), max_length 256, 2 threads: training pairs/s, and scoring / embedding speeds derived from them
# (a forward pass is about a third of a training step). Used only for the estimate printed before the run.
SPEEDS = {"seed": 5.2, "seed bf16": 7.5, "package fp32": 8.4, "package bf16": 12.6,
          "score fp32": 21.0, "score bf16": 32.0, "embed": 20.0}
SMOKE = dict(train_pairs=48, eval_queries=10, dev_queries=5, top_k=10, dev_top_k=5, corpus_queries=60, max_length=64,
             seed_batch_size=16)

def cpu_bf16_flags() -> dict:
    "Which bf16 instructions this CPU has (from /proc/cpuinfo), and whether oneDNN can use bf16."
    flags = set((cpuinfo("flags") or "").split())
    found = {f: f in flags for f in (*BF16_FLAGS, "amx_tile", "avx512_vnni")}
    try: found["onednn_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError): found["onednn_bf16"] = None
    return found

def device_info(device: str) -> dict:
    "The machine, as the JSON names it: CPU model, cores, threads, torch version, bf16 support; the GPU if any."
    model = cpu_model()
    info = {"device": device, "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
            "transformers": transformers.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16": cpu_bf16_flags(), "load_average_at_start": os.getloadavg()}
    if device.startswith("cuda"): info["gpu"] = torch.cuda.get_device_name()
    return info

def plan_sizes(lists: datasets.Dataset, args) -> dict:
    "Seeded question subsets: training questions until enough labelled pairs, then eval, dev and corpus-only questions."
    positives = dict(zip(lists["query"], lists["positive"]))
    questions = sorted(positives); random.Random(args.seed).shuffle(questions)
    train, rows = [], 0 # mining gives each question its positives and `num_negatives` negatives (not per positive)
    while rows < args.train_pairs: train.append(questions[len(train)]); rows += len(positives[train[-1]]) + args.num_negatives
    rest = questions[len(train):]
    held, dev = rest[:args.eval_queries], rest[args.eval_queries:args.eval_queries + args.dev_queries]
    others = rest[args.eval_queries + args.dev_queries:max(args.corpus_queries - len(train), len(held) + len(dev))]
    def pairs(qs): return datasets.Dataset.from_dict({"query": [q for q in qs for _ in positives[q]],
                                                      "answer": [a for q in qs for a in positives[q]]})
    corpus = list(dict.fromkeys(a for q in train + held + dev + others for a in positives[q]))
    return {"train": pairs(train), "eval": pairs(held), "dev": pairs(dev), "corpus": corpus}

def cache_folder(args) -> Path:
    "One folder per data set-up (data file, sizes, seed, models), so that a re-run reuses its mining and eval sets."
    keys = ("data", "train_pairs", "eval_queries", "dev_queries", "top_k", "dev_top_k", "corpus_queries",
            "num_negatives", "seed", "embedder", "device")
    stat = Path(args.data).stat()
    key = json.dumps([getattr(args, k) for k in keys] + [stat.st_size, stat.st_mtime_ns, CACHE_LAYOUT])
    return Path(args.cache)/hashlib.sha256(key.encode()).hexdigest()[:16]

def prepare(args) -> Path:
    "Mine the training pairs and build the held-out and dev sets once; return the folder that holds them."
    folder = cache_folder(args)
    if (folder/"meta.json").exists(): print(f"data from the cache: {folder}", flush=True); return folder
    start = time.perf_counter()
    subsets = plan_sizes(load_source(args.data, extra_columns="drop"), args)
    embedder = load_embedder(args.embedder, args.device)
    held_pairs = datasets.concatenate_datasets([subsets["eval"], subsets["dev"]])
    samples = build_eval_set(held_pairs, subsets["corpus"], embedder, top_k=args.top_k)
    dev_queries = set(subsets["dev"]["query"])
    held = [s for s in samples if s["query"] not in dev_queries]
    dev = [{**s, "documents": s["documents"][:args.dev_top_k], "retriever_scores": s["retriever_scores"][:args.dev_top_k]}
           for s in samples if s["query"] in dev_queries]
    exclude = list(held_pairs["answer"]) # evaluation answers never become training negatives
    train = mine_negatives(subsets["train"], embedder, corpus=subsets["corpus"], exclude=exclude,
                           num_negatives=args.num_negatives, seed=args.seed, cache_folder=str(Path(args.cache)/"mining"))
    if len(train) < args.train_pairs: print(f"mining gave {len(train)} labelled pairs, fewer than {args.train_pairs}")
    folder.mkdir(parents=True, exist_ok=True)
    train.save_to_disk(str(folder/"train"))
    for name, part in (("eval", held), ("dev", dev)): (folder/f"{name}.json").write_text(json.dumps(part))
    meta = {"training questions": len(set(subsets["train"]["query"])),
            "training (question, answer) pairs": len(subsets["train"]),
            "labelled training pairs": len(train), "positives": int(sum(train["label"])),
            "held-out questions": len(held), "dev questions": len(dev), "corpus": len(subsets["corpus"]),
            f"found@{args.top_k}": found_share(held), "retriever ndcg@10": float(per_query_metrics(held)["ndcg@10"].mean()),
            "preparation s": time.perf_counter() - start}
    (folder/"meta.json").write_text(json.dumps(meta, indent=1))
    return folder

class Meter:
    "Counts the training batches' real and padded tokens (at the encoder's input) and the time spent tokenising."
    def __init__(self, model):
        self.pairs = self.real = self.padded = 0; self.tokenising_s, self.dtypes = 0.0, set()
        model[0].register_forward_pre_hook(self.count, with_kwargs=True)
        original = model.preprocess
        def timed(*args, **kwargs):
            start = time.perf_counter(); out = original(*args, **kwargs)
            if torch.is_grad_enabled(): self.tokenising_s += time.perf_counter() - start
            return out
        model.preprocess = timed

    def count(self, module, args, kwargs):
        features = args[0] if args else kwargs.get("features", {})
        if torch.is_grad_enabled() and isinstance(features, Mapping) and "attention_mask" in features:
            mask = features["attention_mask"]
            self.real += int(mask.sum()); self.padded += mask.numel(); self.pairs += mask.shape[0]
            kind = mask.device.type # what the encoder computes in: autocast's dtype, else its weights'
            on = torch.is_autocast_enabled(kind)
            self.dtypes.add(str(torch.get_autocast_dtype(kind) if on else next(module.parameters()).dtype))

class DevCurve(TrainerCallback):
    "Score dev after fixed shares of the epoch (timed apart from training) and record what the trainer was given."
    def __init__(self, model, dev: list|None, meter: Meter, cfg: dict):
        self.model, self.dev, self.meter, self.cfg = model, dev, meter, cfg
        self.start, self.eval_s, self.points, self.curve, self.setup = None, 0.0, {}, [], {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.points = {max(1, math.ceil(f*state.max_steps)): f for f in DEV_POINTS}
        sampler = args.batch_sampler # a class (the package's), or the trainer's enum: "batch_sampler" is random batches
        by_value = {"batch_sampler": "random"}.get(getattr(sampler, "value", None), str(sampler))
        sampler = getattr(sampler, "__name__", None) or by_value
        self.setup = {"steps": state.max_steps, "batch size": args.per_device_train_batch_size,
                      "precision (arguments)": "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32",
                      "learning rate": args.learning_rate, "batch sampler": sampler}

    def on_step_end(self, args, state, control, **kwargs):
        if self.dev is None or state.global_step not in self.points: return
        synchronise(self.cfg["device"]); now = time.perf_counter()
        scores = rerank_scores(self.model, self.dev, show_progress_bar=False, precision=self.cfg["eval_precision"])
        ndcg = float(per_query_metrics(self.dev, scores)["ndcg@10"].mean())
        self.model.train()
        self.curve.append({"share": self.points[state.global_step], "step": state.global_step, "pairs": self.meter.pairs,
                           "train s": now - self.start - self.eval_s, "dev ndcg@10": ndcg})
        self.eval_s += time.perf_counter() - now

def synchronise(device: str):
    if device.startswith("cuda"): torch.cuda.synchronize()

def seed_recipe(model, train, out: Path, curve: DevCurve, cfg: dict, precision: str):
    "The seed blog's training as written there: plain CrossEncoderTrainer and BCE with pos_weight = negatives per positive."
    targs = CrossEncoderTrainingArguments(output_dir=str(out), num_train_epochs=cfg["epochs"],
                                          per_device_train_batch_size=cfg["seed_batch_size"], learning_rate=2e-5,
                                          warmup_steps=0.1, bf16=precision == "bf16", fp16=precision == "fp16",
                                          save_strategy="no", report_to="none", logging_steps=10, seed=cfg["seed"],
                                          use_cpu=cfg["device"] == "cpu", disable_tqdm=True)
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(cfg["negatives_per_positive"]))
    CrossEncoderTrainer(model=model, args=targs, train_dataset=train, loss=loss, callbacks=[curve]).train()

def package_recipe(model, train, out: Path, curve: DevCurve, cfg: dict):
    "reranker_tune's `fine_tune` with its defaults; only checkpoints and the progress bar are off."
    fine_tune(model, train, "BinaryCrossEntropyLoss", out, seed=cfg["seed"], epochs=cfg["epochs"], callbacks=[curve],
              save_strategy="no", disable_tqdm=True)

def run_row(cfg: dict, row: str, repeat: int) -> dict:
    "Train one row once in this process; score held-out and dev in the first round only. Returns the measurements."
    folder, first = Path(cfg["folder"]), repeat == 0
    transformers.set_seed(cfg["seed"]) # the same fresh head for every row
    model = load_reranker(cfg["model"], max_length=cfg["max_length"], device=cfg["device"],
                          loss="BinaryCrossEntropyLoss")
    train = datasets.load_from_disk(str(folder/"train"))
    meter = Meter(model)
    curve = DevCurve(model, json.loads((folder/"dev.json").read_text()) if first else None, meter, cfg)
    out = Path(tempfile.mkdtemp(prefix=f"bench-{row.replace(' ', '-')}-"))
    if cfg["device"].startswith("cuda"): torch.cuda.reset_peak_memory_stats()
    synchronise(cfg["device"]); curve.start = time.perf_counter()
    if row == "package": package_recipe(model, train, out, curve, cfg)
    else: seed_recipe(model, train, out, curve, cfg, cfg["seed_precision"] if row == "seed" else "bf16")
    synchronise(cfg["device"]); wall = time.perf_counter() - curve.start - curve.eval_s
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024 # KiB on Linux
    shutil.rmtree(out, ignore_errors=True)
    names = {"torch.bfloat16": "bf16", "torch.float16": "fp16", "torch.float32": "fp32"}
    precision = "+".join(sorted(names.get(d, d) for d in meter.dtypes)) # observed in the training forwards
    result = {"row": row, "repeat": repeat, **curve.setup, "precision": precision, "pairs": meter.pairs, "real tokens": meter.real,
              "padded tokens": meter.padded, "wall s": wall, "dev evaluation s": curve.eval_s,
              "pairs/s": meter.pairs/wall, "tokens/s": meter.real/wall, "padding share": 1 - meter.real/max(meter.padded, 1),
              "tokenising share": meter.tokenising_s/wall, "peak RSS MiB": peak_rss,
              "peak GPU GiB": torch.cuda.max_memory_allocated()/2**30 if cfg["device"].startswith("cuda") else None,
              "weights checksum": float(sum(p.detach().double().sum() for p in model.parameters())),
              "dev curve": curve.curve, "load average": os.getloadavg()}
    if first:
        start, held = time.perf_counter(), json.loads((folder/"eval.json").read_text())
        scores = rerank_scores(model, held, show_progress_bar=False, precision=cfg["eval_precision"])
        result["held-out ndcg@10 per query"] = per_query_metrics(held, scores)["ndcg@10"].tolist()
        result["held-out scoring s"] = time.perf_counter() - start
    return result

def median_spread(values: list) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}

def time_to_quality(curve: list, target: float) -> float|None:
    "Training seconds until dev NDCG@10 first reaches `target`; None when it never does."
    return next((p["train s"] for p in curve if p["dev ndcg@10"] >= target - 1e-12), None)

def summarise(runs: list[dict], rows: list[str]) -> dict:
    "Per row: median and spread of each timing, NDCG@10 with the paired CI against row 1, time-to-quality."
    first = {r["row"]: r for r in runs if r["repeat"] == 0}
    target = first["seed"]["dev curve"][-1]["dev ndcg@10"]
    seed_ndcg = first["seed"]["held-out ndcg@10 per query"]
    setup = ("precision", "precision (arguments)", "batch size", "batch sampler", "learning rate", "steps", "pairs")
    timed = ("pairs/s", "tokens/s", "wall s", "padding share", "tokenising share", "peak RSS MiB")
    summary = {}
    for row in rows:
        mine = [r for r in runs if r["row"] == row]
        ndcg = first[row]["held-out ndcg@10 per query"]
        summary[row] = {"label": ROWS[row], **{k: first[row][k] for k in setup},
                        **{k: median_spread([r[k] for r in mine]) for k in timed},
                        "ndcg@10": statistics.fmean(ndcg),
                        "ndcg diff vs seed": None if row == "seed" else paired_comparison(ndcg, seed_ndcg),
                        "dev target (row 1 final)": target,
                        "time to quality s": time_to_quality(first[row]["dev curve"], target),
                        "same weights in every repeat": len({r["weights checksum"] for r in mine}) == 1}
    return summary

def fmt(x, digits=1) -> str: return "n/a" if x is None else f"{x:,.{digits}f}"

def markdown(summary: dict, retriever: float) -> str:
    "The table the training chapter shows."
    head = ("| row | precision, batch, order | pairs/s (min-max) | tokens/s | padding | tokenising | peak RSS MiB "
            "| wall s | NDCG@10 | vs row 1 (95% CI) | time-to-quality s |")
    lines = [head, "|" + "---|"*head.count(" | ") + "---|"]
    for s in summary.values():
        d = s["ndcg diff vs seed"]
        ci = "-" if d is None else f"{d['difference']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})"
        p = s["pairs/s"]
        lines.append(f"| {s['label']} | {s['precision']}, {s['batch size']}, {s['batch sampler']} | {fmt(p['median'])} "
                     f"({fmt(p['min'])}-{fmt(p['max'])}) | {fmt(s['tokens/s']['median'], 0)} "
                     f"| {s['padding share']['median']:.0%} | {s['tokenising share']['median']:.1%} "
                     f"| {fmt(s['peak RSS MiB']['median'], 0)} | {fmt(s['wall s']['median'])} | {s['ndcg@10']:.3f} | {ci} "
                     f"| {fmt(s['time to quality s'])} |")
    return "\n".join(lines) + f"\n\nRetriever alone (the candidates' order): NDCG@10 {retriever:.3f}."

def estimate(meta: dict, args, rows: list[str], cached: bool) -> dict:
    "Seconds each part should take at max_length 256 on the issue's 2-core CPU, from the speeds it measured."
    package = f"package {detect_precision(args.device)}"
    train = meta["labelled training pairs"]*args.epochs*args.repeats*sum(
        1/SPEEDS[package if r == "package" else r] for r in rows)
    scored = len(rows)*(meta["held-out questions"]*args.top_k + len(DEV_POINTS)*meta["dev questions"]*args.dev_top_k)
    parts = {"preparation": 0 if cached else 2*(meta["corpus"] + meta["held-out questions"])/SPEEDS["embed"],
             "training": train, "scoring": scored/SPEEDS[f"score {args.eval_precision}"],
             "process start and model load": 15*len(rows)*args.repeats}
    return {**parts, "total": sum(parts.values())}

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda; default: the best here")
    p.add_argument("--data", default=str(DATA), help="MedQuAD train.jsonl.gz")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="the cross-encoder base")
    p.add_argument("--embedder", default="all-MiniLM-L6-v2", help="the mining embedder and first-stage retriever")
    p.add_argument("--train-pairs", type=int, default=2000, help="at least this many labelled training pairs")
    p.add_argument("--eval-queries", type=int, default=200, help="held-out questions")
    p.add_argument("--dev-queries", type=int, default=30, help="dev questions for time-to-quality")
    p.add_argument("--top-k", type=int, default=30, help="retrieved documents reranked per held-out question")
    p.add_argument("--dev-top-k", type=int, default=10, help="retrieved documents reranked per dev question")
    p.add_argument("--corpus-queries", type=int, default=1000, help="questions whose answers make the corpus searched")
    p.add_argument("--num-negatives", type=int, default=5, help="hard negatives mined per positive")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed-batch-size", type=int, default=64, help="batch size of rows 1 and 2 (the seed's 64)")
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--repeats", type=int, default=2, help="runs per row (at least 2), order alternating")
    p.add_argument("--eval-precision", choices=("bf16", "fp32"), default=None,
                   help="scorer precision for every row; default: bf16 on a CPU with bf16, else fp32")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir())/"reranker_tune_bench"), help="mining/eval-set cache")
    p.add_argument("--out", default=None, help="JSON results; default benchmarks/results/train_throughput_<device>.json")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a check that the script runs (not results)")
    p.add_argument("--prepare-only", action="store_true", help="mine and build the eval sets (cached), print the plan, stop")
    p.add_argument("--run-row", nargs=3, metavar=("CONFIG", "ROW", "REPEAT"), help=argparse.SUPPRESS) # child process
    args = p.parse_args(argv)
    if args.smoke: vars(args).update(SMOKE)
    if args.repeats < 2: p.error("--repeats: at least 2 runs per row are needed for a median and a spread")
    args.device = args.device or detect_device()
    if args.eval_precision is None:
        cpu_bf16 = cpu_bf16_flags()
        has_bf16 = args.device == "cpu" and (cpu_bf16["avx512_bf16"] or cpu_bf16["amx_bf16"])
        args.eval_precision = "bf16" if has_bf16 else "fp32"
    return args

def child(config: str, row: str, repeat: str):
    "One row, one repeat, in its own process: the measurements go to a JSON file next to the config."
    cfg = json.loads(Path(config).read_text())
    result = run_row(cfg, row, int(repeat))
    Path(config).with_name(f"{row.replace(' ', '-')}-{repeat}.json").write_text(json.dumps(result))

def main(argv=None):
    args = parse(argv)
    if args.run_row: return child(*args.run_row)
    rows = [r for r in ROWS if not (r == "seed bf16" and args.device.startswith("cuda"))] # the seed is bf16 on GPU
    device = device_info(args.device)
    cached = (cache_folder(args)/"meta.json").exists()
    folder = prepare(args)
    meta = json.loads((folder/"meta.json").read_text())
    runs_dir = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    cfg = {"folder": str(folder), "device": args.device, "model": args.model, "max_length": args.max_length,
           "epochs": args.epochs, "seed": args.seed, "seed_batch_size": args.seed_batch_size,
           "negatives_per_positive": meta["labelled training pairs"]/meta["positives"] - 1, # pos_weight
           "eval_precision": args.eval_precision,
           "seed_precision": "fp32" if args.device == "cpu" else detect_precision(args.device)} # as the seed set it
    (runs_dir/"config.json").write_text(json.dumps(cfg))
    guess = estimate(meta, args, rows, cached)
    print(f"plan: {meta['labelled training pairs']} labelled training pairs ({meta['training questions']} questions, "
          f"{args.num_negatives} mined negatives per question), max_length {args.max_length}, {args.epochs} epoch; "
          f"{meta['held-out questions']} held-out questions x top {args.top_k}, {meta['dev questions']} dev questions x top "
          f"{args.dev_top_k} at {', '.join(f'{p:.0%}' for p in DEV_POINTS)} of the epoch; corpus {meta['corpus']} answers; "
          f"rows {', '.join(rows)} x {args.repeats} in alternating order, each in its own process; scoring in "
          f"{args.eval_precision}; {torch.get_num_threads()} threads on {args.device}")
    print("estimate at max_length 256 from the issue's speeds on the 2-core CPU: " +
          ", ".join(f"{k} {v/60:.1f} min" for k, v in guess.items()) + (" (smoke sizes: far less)" if args.smoke else ""),
          flush=True)
    if args.prepare_only: return meta
    started, runs = time.perf_counter(), []
    for repeat in range(args.repeats):
        for row in rows:
            t = time.perf_counter()
            command = [sys.executable, __file__, "--run-row", str(runs_dir/"config.json"), row, str(repeat)]
            subprocess.run(command, check=True)
            r = json.loads((runs_dir/f"{row.replace(' ', '-')}-{repeat}.json").read_text()); runs.append(r)
            print(f"[{time.perf_counter() - started:6.0f} s] {row}, run {repeat + 1}: {r['pairs/s']:.2f} pairs/s, "
                  f"{r['precision']}, batch {r['batch size']}, padding {r['padding share']:.0%}, "
                  f"peak RSS {r['peak RSS MiB']:.0f} MiB, process {time.perf_counter() - t:.0f} s", flush=True)
    retriever = meta["retriever ndcg@10"]
    summary = summarise(runs, rows)
    seed_speed = {r: summary[r]["pairs/s"]["median"] for r in rows}
    result = {"ratio_vs_seed_fp32": seed_speed["package"]/seed_speed["seed"], # on GPU row 1 is the seed's bf16
              "ratio_vs_seed_bf16": seed_speed["package"]/seed_speed.get("seed bf16", seed_speed["seed"]),
              "ndcg_diff_ci_vs_seed": summary["package"]["ndcg diff vs seed"],
              "device": {**device, "load_average_at_end": os.getloadavg()},
              "data": meta, "settings": {**cfg, "dev points": DEV_POINTS, "repeats": args.repeats, "rows": rows,
                                         "smoke": args.smoke, "total s": time.perf_counter() - started},
              "rows": summary, "runs": runs}
    table = markdown(summary, retriever)
    print(f"\n{table}\n\npackage defaults: {result['ratio_vs_seed_fp32']:.2f}x row 1's pairs/s, "
          f"{result['ratio_vs_seed_bf16']:.2f}x row 2's; total {result['settings']['total s']/60:.1f} min")
    out = Path(args.out or (Path(tempfile.gettempdir())/"train_throughput_smoke.json" if args.smoke
                            else HERE/"results"/f"train_throughput_{args.device.split(':')[0]}.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**result, "table": table}, indent=1))
    print(f"written: {out}")
    shutil.rmtree(runs_dir, ignore_errors=True)

if __name__ == "__main__":
    main()
