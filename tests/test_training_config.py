"`train_from_config`: a bad config is refused with a `ConfigError` that names the file, before anything is trained."
import pytest, yaml
from reranker_tune.advanced_training import train_from_config, ConfigError

def _config(tmp_path, **changes):
    (tmp_path/"rows.jsonl").write_text('{"query": "q", "document": "a", "label": 1}\n{"query": "q", "document": "b", "label": 0}\n')
    cfg = {"base_model": "all-MiniLM-L6-v2", "loss": "BinaryCrossEntropyLoss", "source": str(tmp_path/"rows.jsonl"),
           "run_dir": str(tmp_path/"ck"), "save_to": str(tmp_path/"model"), **changes}
    (path := tmp_path/"run.yaml").write_text(yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}))
    return path

CASES = {
    "missing file": (lambda p: p/"absent.yaml", "absent.yaml: no such config file."),
    "not YAML": (lambda p: (p/"run.yaml").write_text("base_model: [all-MiniLM-L6-v2\nloss: x\n") and p/"run.yaml", "run.yaml: not valid YAML ("),
    "a list, not a mapping": (lambda p: (p/"run.yaml").write_text("- base_model\n- loss\n") and p/"run.yaml",
                              "run.yaml: must be a YAML mapping of options (key: value), not list."),
    "key typo": (lambda p: _config(p, learning_rte=1e-5),
                 "run.yaml: unknown key 'learning_rte' (did you mean 'learning_rate'?). Known keys: base_model, loss, source, run_dir"),
    "missing key": (lambda p: _config(p, run_dir=None), "run.yaml: lacks ['run_dir']"),
    "missing source file": (lambda p: _config(p, source=str(p/"nope.jsonl")), "run.yaml: source '"),
    "old key base": (lambda p: _config(p, base="x"), "run.yaml: 'base' is now called 'base_model'"),
    "old key train_data": (lambda p: _config(p, source=None, train_data="rows.jsonl"), "run.yaml: 'train_data' is now called 'source'"),
    "old key output_dir": (lambda p: _config(p, run_dir=None, output_dir="ck"), "run.yaml: 'output_dir' is now called 'run_dir'"),
}

@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_config_is_refused_naming_the_file(case, tmp_path):
    make, message = CASES[case]
    path = make(tmp_path)
    with pytest.raises(ConfigError) as err: train_from_config(path)
    text = " ".join(str(err.value).split())
    assert str(path) in text and message in text, text
    assert not (tmp_path/"model").exists() and not (tmp_path/"ck").exists()

def test_unknown_key_lists_every_known_key_and_trainer_fields_are_accepted(tmp_path):
    with pytest.raises(ConfigError) as err: train_from_config({"base_model": "b", "loss": "l", "source": str(tmp_path),
                                                               "run_dir": "o", "patiense": 2})
    message = str(err.value)
    assert "(did you mean 'patience'?)" in message
    for key in ("epochs", "batch_size", "learning_rate", "eval_steps", "state_file", "device", "save_to", "max_length"):
        assert key in message.split("Known keys: ")[1]
    with pytest.raises(ConfigError, match="source 'nowhere.jsonl' does not exist"):  # past the key check: a trainer field is known
        train_from_config({"base_model": "b", "loss": "l", "source": "nowhere.jsonl", "run_dir": "o", "gradient_accumulation_steps": 2})
