"""TrecQA's automatically labelled training lists, made consistent for the sweeps.

Two of its 1,229 lists hold a text as both a positive and a negative of the same question; `load_source`
refuses such rows (a text is relevant to a query or not). This writes the lists with those texts dropped from
the negatives to runs/data/trecqa/train.jsonl.gz (ignored by git: the data is never copied into the repository).

    python tools/trecqa_train.py [../shared/data/trecqa/train.jsonl.gz]
"""
import sys
from pathlib import Path
import pandas as pd

source = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/trecqa/train.jsonl.gz")
target = Path("runs/data/trecqa/train.jsonl.gz")
lists = pd.read_json(source, lines=True)
kept = [[text for text in negative if text not in positive]
        for positive, negative in zip(lists["positive"], lists["negative"])]
dropped = sum(len(n) - len(k) for n, k in zip(lists["negative"], kept))
changed = sum(len(n) != len(k) for n, k in zip(lists["negative"], kept))
lists["negative"] = kept
target.parent.mkdir(parents=True, exist_ok=True)
lists.to_json(target, orient="records", lines=True, force_ascii=False, compression="gzip")
print(f"{target}: {len(lists)} lists; {dropped} negatives that were also positives dropped from {changed}")
