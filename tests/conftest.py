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
