"""Training throughput and quality: the seed recipe against reranker_tune's defaults, same device, data and epochs.

The seed recipe is sentence-transformers' reranker example as the seed blog ran it: CrossEncoderTrainer,
BinaryCrossEntropyLoss (pos_weight = negatives per positive), batch 64, lr 2e-5, bf16 on GPU, random batches.
reranker_tune's defaults are `fine_tune`: the same loss through `make_loss` (pos_weight measured on the data),
length-grouped batches, TF32, precision from the device. Both train the same MiniLM base on the same MedQuAD
hard pairs (mined once), for the same epochs, with checkpoints off in both so only training is timed, and both
are scored on the same realistic evaluation set (the retriever's top 30 for held-out questions).

`tokenising share` is the part of the wall time spent in `CrossEncoder.preprocess`: sentence-transformers tokenises
inside the loss, in the training process, so dataloader workers cannot take it over. On a 2-core CPU, with a one-layer
16-wide BERT (so that the model costs nothing), tokenising 64 MedQuAD pairs at max_length 256 took 45-60 ms, about
the 89 ms per step the seed recipe took on an H100: the GPU mostly waits for the tokenizer.

GPU (H100):  python benchmarks/train_throughput.py --data data/medquad/train.jsonl.gz \\
                 --model models/all-MiniLM-L6-v2-fp16 --eval-queries 1000 --out bench.json
CPU check:   python benchmarks/train_throughput.py --max-queries 60 --eval-queries 15 --batch-size 16 --max-length 64
"""
from __future__ import annotations
import os, sys, json, time, shutil, argparse, tempfile
from pathlib import Path
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch, pandas as pd
from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
from reranker_tune.core import detect_device, detect_precision, seed_everything
from reranker_tune.data import load_source, to_pairs, split_by_query
from reranker_tune.pipeline import limit_queries
from reranker_tune.mining import load_embedder, mine_negatives
from reranker_tune.losses import make_loss
from reranker_tune.training import load_reranker, fine_tune
from reranker_tune.evaluation import build_eval_set, per_query_metrics, rerank_scores

def count_tokens(model) -> dict:
    "Wrap `model.preprocess` so that every training batch adds its real and padded token counts and tokenising time."
    counts, original = {"real": 0, "padded": 0, "pairs": 0, "tokenising s": 0.0}, model.preprocess
    def counting(*args, **kwargs):
        start = time.perf_counter()
        features = original(*args, **kwargs)
        mask = features["attention_mask"]
        if torch.is_grad_enabled():
            counts["real"] += int(mask.sum()); counts["padded"] += mask.numel(); counts["pairs"] += mask.shape[0]
            counts["tokenising s"] += time.perf_counter() - start
        return features
    model.preprocess = counting
    return counts

def seed_recipe(model, train, out: Path, args) -> None:
    "The seed blog's training: plain CrossEncoderTrainer, BCE with pos_weight = negatives per positive, random batches."
    precision = detect_precision(args.device)
    targs = CrossEncoderTrainingArguments(output_dir=str(out), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
                                          learning_rate=2e-5, warmup_steps=0.1, bf16=precision == "bf16", fp16=precision == "fp16",
                                          save_strategy="no", report_to="none", logging_steps=50, seed=args.seed,
                                          use_cpu=args.device == "cpu", disable_tqdm=True)
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(args.num_negatives)))
    CrossEncoderTrainer(model=model, args=targs, train_dataset=train, loss=loss).train()

def package_recipe(model, train, out: Path, args) -> None:
    "reranker_tune's `fine_tune` with its defaults (checkpoints off, as in the seed recipe)."
    fine_tune(model, train, make_loss("BinaryCrossEntropyLoss", model, train), out, seed=args.seed, epochs=args.epochs,
              batch_size=args.batch_size, learning_rate=2e-5, save_strategy="no", logging_steps=50, disable_tqdm=True)

def warm_up(train, args) -> None:
    "A few unmeasured steps first, so that neither recipe pays for CUDA / cuBLAS / allocator start-up."
    model = load_reranker(args.model, max_length=args.max_length, device=args.device, loss="BinaryCrossEntropyLoss")
    small = train.select(range(min(len(train), 4*args.batch_size)))
    fine_tune(model, small, make_loss("BinaryCrossEntropyLoss", model, small), tempfile.mkdtemp(prefix="bench-warmup-"),
              batch_size=args.batch_size, save_strategy="no", disable_tqdm=True)

def measure(name: str, recipe, train, eval_set, args) -> dict:
    "Train one model with `recipe` and return its throughput, memory and NDCG@10."
    seed_everything(args.seed)
    model = load_reranker(args.model, max_length=args.max_length, device=args.device, loss="BinaryCrossEntropyLoss")
    counts = count_tokens(model)
    if torch.cuda.is_available(): torch.cuda.reset_peak_memory_stats(); torch.cuda.synchronize()
    out = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    start = time.perf_counter()
    recipe(model, train, out, args)
    if torch.cuda.is_available(): torch.cuda.synchronize()
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    ndcg = per_query_metrics(eval_set, rerank_scores(model, eval_set, show_progress_bar=False))["ndcg@10"].mean()
    return {"recipe": name, "pairs/s": counts["pairs"]/wall, "tokens/s": counts["real"]/wall,
            "padding share": 1 - counts["real"]/max(counts["padded"], 1), "peak GPU GiB": torch.cuda.max_memory_allocated()/2**30 if torch.cuda.is_available() else float("nan"),
            "wall s": wall, "tokenising share": counts["tokenising s"]/wall, "ndcg@10": ndcg}

def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parents[1]
    p.add_argument("--data", default=str(here.parent/"shared/data/medquad/train.jsonl.gz"), help="MedQuAD train.jsonl.gz (query, positive)")
    p.add_argument("--model", default="all-MiniLM-L6-v2", help="the cross-encoder base: a folder or a known name")
    p.add_argument("--embedder", default=None, help="the mining retriever; default: --model")
    p.add_argument("--max-queries", type=int, default=None, help="use this many questions (seeded); default all")
    p.add_argument("--eval-queries", type=int, default=1000, help="held-out questions for NDCG@10")
    p.add_argument("--num-negatives", type=int, default=5, help="hard negatives mined per question")
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--top-k", type=int, default=30, help="retrieved documents reranked per held-out question")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    return p.parse_args(argv)

def main(argv=None):
    args = parse(argv)
    args.device = args.device or detect_device()
    pairs = limit_queries(to_pairs(load_source(args.data, extra_columns="drop")), args.max_queries, args.seed)
    parts = split_by_query(pairs, args.eval_queries, args.seed)
    embedder = load_embedder(args.embedder or args.model, args.device)
    t0 = time.perf_counter()
    train = mine_negatives(parts["train"], embedder, num_negatives=args.num_negatives, seed=args.seed)
    eval_set = build_eval_set(parts["eval"], pairs["answer"], embedder, top_k=args.top_k)
    print(f"{len(set(parts['train']['query']))} training questions -> {len(train)} labelled pairs; "
          f"{len(eval_set)} held-out questions; mining and eval set {time.perf_counter() - t0:.0f} s on {args.device}", flush=True)
    retriever = per_query_metrics(eval_set)["ndcg@10"].mean()
    warm_up(train, args)
    rows = [measure("seed recipe", seed_recipe, train, eval_set, args), measure("reranker_tune", package_recipe, train, eval_set, args)]
    table = pd.DataFrame(rows).set_index("recipe")
    print(f"\nretriever NDCG@10: {retriever:.3f}; precision {detect_precision(args.device)}; batch {args.batch_size}; "
          f"max_length {args.max_length}; epochs {args.epochs}\n")
    print(table.round({"pairs/s": 1, "tokens/s": 0, "padding share": 3, "peak GPU GiB": 2, "wall s": 1, "tokenising share": 3, "ndcg@10": 4}).to_markdown())
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "retriever_ndcg@10": retriever, "results": rows,
                                              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}, indent=1))
    return table

if __name__ == "__main__":
    main()
