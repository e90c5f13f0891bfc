"Tiny offline models built in-process, so that tests never download anything."
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from pathlib import Path
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent/"shared"/"data"

def _sentences() -> list[str]:
    from reranker_tune.data import sample_pairs
    pairs = sample_pairs()
    return list(pairs["query"]) + list(pairs["answer"])

def labelled_sample_rows(n_queries: int, wrong_offset: int):
    "A right answer and a wrong one (the answer `wrong_offset` questions on) for each of the first sample questions."
    import datasets
    from reranker_tune.data import sample_pairs
    pairs = sample_pairs().select(range(n_queries))
    answers = pairs["answer"]
    return datasets.Dataset.from_dict({"query": [q for q in pairs["query"] for _ in range(2)],
                                       "document": [d for i, a in enumerate(answers) for d in (a, answers[(i + wrong_offset) % n_queries])],
                                       "label": [1.0, 0.0]*n_queries})

@pytest.fixture(scope="session")
def tiny_tokenizer_folder(tmp_path_factory) -> Path:
    "A WordPiece vocabulary trained on the bundled sample, saved as a BERT tokenizer."
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast
    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(_sentences(), vocab_size=600, show_progress=False)
    wordpiece.save_model(str(folder))
    # from_pretrained reads vocab.txt; transformers 5 ignores BertTokenizerFast(vocab_file=...) and keeps a 5-token
    # vocabulary, which turned every word into [UNK] and made the tiny models' predictions constant
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    assert tokenizer.tokenize("water the soil") == ["water", "the", "soil"], "the tiny vocabulary is in use"
    tokenizer.save_pretrained(str(folder))
    return folder

@pytest.fixture(scope="session")
def tiny_bert(tiny_tokenizer_folder, tmp_path_factory) -> str:
    "A two-layer, 32-wide BERT with a fresh one-label head: a cross-encoder in seconds."
    import shutil, torch
    from transformers import BertConfig, BertForSequenceClassification
    folder = tmp_path_factory.mktemp("tiny-bert")
    for f in tiny_tokenizer_folder.iterdir(): shutil.copy(f, folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(str(folder))
    return str(folder)

@pytest.fixture(scope="session")
def tiny_encoder(tiny_bert, tmp_path_factory) -> str:
    "tiny_bert without its one-output head: load_reranker refuses to swap a checkpoint's trained head for another size."
    from transformers import AutoModel, AutoTokenizer
    folder = str(tmp_path_factory.mktemp("tiny-encoder"))
    AutoModel.from_pretrained(tiny_bert).save_pretrained(folder); AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    return folder

@pytest.fixture(scope="session")
def tiny_embedder(tiny_tokenizer_folder, tmp_path_factory) -> str:
    "A random StaticEmbedding bi-encoder, saved as a SentenceTransformer folder."
    import torch
    from transformers import BertTokenizerFast
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    torch.manual_seed(0)
    static = StaticEmbedding(BertTokenizerFast.from_pretrained(str(tiny_tokenizer_folder)), embedding_dim=32)
    folder = tmp_path_factory.mktemp("tiny-embedder")
    SentenceTransformer(modules=[static], device="cpu").save(str(folder))
    return str(folder)

@pytest.fixture
def shared_data() -> Path:
    "../shared/data beside the checkout; tests that need it skip when it is absent."
    if not SHARED_DATA.is_dir(): pytest.skip("../shared/data is not present")
    return SHARED_DATA

# --- a served run: the tiny cross-encoder and retriever in a hand-made run folder (test_serving, test_server) ---
import json, shutil
import numpy as np
from reranker_tune.evaluation import RETRIEVER, CROSS_ENCODER, FUSION

QUERY = "how often should I water tomatoes"
DOCS = ["Water tomatoes deeply twice a week.", "Prune apple trees in late winter.", "Roses like full sun.",
        "Tomatoes need more water when they fruit.", "Mulch keeps the soil moist.", "Garlic is planted in autumn."]

def eval_samples(n=4):
    "Eval-set samples: each query with every document as a candidate (the first one its positive)."
    queries = [QUERY, "when to prune apple trees", "do roses need sun", "when to plant garlic"][:n]
    return [{"query": q, "positive": [DOCS[i]], "documents": DOCS} for i, q in enumerate(queries)]

@pytest.fixture(scope="session")
def model_folder(tiny_bert, tmp_path_factory) -> Path:
    "The tiny cross-encoder, saved by the training stage's `save_model`, its fresh head scaled so that pairs score apart."
    import torch
    from reranker_tune.training import load_reranker, save_model
    model = load_reranker(tiny_bert, device="cpu")
    with torch.no_grad(): model[0].model.classifier.weight.mul_(100) # a fresh head scores every pair about the same
    return save_model(model, tmp_path_factory.mktemp("saved")/"model")

@pytest.fixture(scope="session")
def retriever_folder(tiny_embedder) -> str:
    "conftest's tiny StaticEmbedding retriever, on the same tokenizer as the tiny cross-encoder."
    return tiny_embedder

SYSTEM_OF = {0.0: RETRIEVER, 0.3: FUSION, 1.0: CROSS_ENCODER}

def cosines(embedder, query, documents) -> np.ndarray:
    "The retriever's scores as the evaluation computes them: normalised embeddings, dot product."
    encode = dict(convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
    return embedder.encode(documents, **encode) @ embedder.encode([query], **encode)[0]

@pytest.fixture(scope="session")
def heldout(retriever_folder) -> list[dict]:
    "eval_samples() in the tiny retriever's order, with its scores: what a run writes to heldout.jsonl."
    from sentence_transformers import SentenceTransformer
    embedder, out = SentenceTransformer(retriever_folder, device="cpu"), []
    for s in eval_samples():
        sims = cosines(embedder, s["query"], s["documents"])
        order = np.argsort(-sims, kind="stable")
        out.append({**s, "documents": [s["documents"][j] for j in order], "retriever_scores": [float(sims[j]) for j in order]})
    return out

@pytest.fixture
def make_run(model_folder, retriever_folder, heldout, tmp_path):
    "A run folder built by hand after the layout in the issue: model/, shipped.json, heldout.jsonl."
    from reranker_tune.run_folder import NORMALISATION
    def make(weight: float, name: str="run", **fields) -> Path:
        run = tmp_path/name
        shutil.copytree(model_folder, run/"model")
        rule = {"format": 1, "shipped": SYSTEM_OF[weight], "fusion_weight": weight,
                "normalisation": NORMALISATION, "cross_encoder": {"folder": "model", "scores": "raw logits, no activation"},
                "retriever": {"model": retriever_folder},
                "top_k": None, "dev_ndcg@10_by_weight": {}, "reason": "hand-made for a test", **fields}
        (run/"shipped.json").write_text(json.dumps(rule))
        (run/"heldout.jsonl").write_text("".join(json.dumps(s) + "\n" for s in heldout))
        return run
    return make


# Seconds each long test took on a clean clone here (2026-12-03, two workers). Only the order depends on
# them: a stale figure makes the two workers finish less evenly, never a test fail.
SECONDS = {"test_sweep_keeps_going_past_a_failure_skips_finished_runs_and_forces": 33,
           "test_notebook[04_training.ipynb]": 31, "test_notebook[05_evaluation.ipynb]": 22,
           "test_pipeline_notebook_runs_under_papermill": 20, "test_main_job_with_minilm_on_a_slice": 16,
           "test_two_processes_train_and_one_saves": 14,
           "test_pipeline_on_a_medquad_slice_with_tiny_models": 14,
           "test_rerank_command_prints_results_on_stdout_and_nothing_on_stderr": 11,
           "test_imports_at_run_time_without_the_onnx_extra": 11, "test_notebook[07_batch.ipynb]": 11,
           "test_notebook[02_mining.ipynb]": 10, "test_notebook[04b_advanced_training.ipynb]": 10,
           "test_the_cli_serves_and_sigterm_finishes_the_request_in_flight": 10,
           "test_sigterm_mid_run_removes_the_staging_folder_and_keeps_the_previous_run": 9,
           "test_notebook[08_serving.ipynb]": 9, "test_site_renders_every_notebook_with_working_links": 8,
           "test_notebook[09_server.ipynb]": 7, "test_notebook[08b_export.ipynb]": 6}

def two_queues(items: list, seconds: dict) -> list:
    """`items` as two halves of equal count and about equal time: the long tests (`seconds`) shared out longest
    first, then the others in collection order, so that a module's shared fixtures are built once a half."""
    long = sorted((i for i in items if i.name in seconds), key=lambda i: seconds[i.name], reverse=True)
    short = [i for i in items if i.name not in seconds]
    halves, totals = ([], []), [0.0, 0.0]
    for item in long: # greedy: the next longest to the half with less time so far
        emptier = 0 if totals[0] <= totals[1] else 1
        halves[emptier].append(item); totals[emptier] += seconds[item.name]
    first = max(0, min(len(short), len(items) // 2 - len(halves[0]))) # the first half: len(items) // 2 in all
    return halves[0] + short[:first] + halves[1] + short[first:]

def pytest_collection_modifyitems(items):
    """Two workers (`make test`'s `-n 2 --dist worksteal`) each start with half the tests, in collection order:
    give each half the same share of the long tests, longest first, so both finish together."""
    items[:] = two_queues(items, SECONDS)
