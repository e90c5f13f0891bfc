"The HTTP server: the cohere SDK and plain HTTP against a tiny run, bad requests, concurrency, the CLI and SIGTERM."
import json, os, signal, socket, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np, pytest
pytest.importorskip("fastapi"); pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
cohere = pytest.importorskip("cohere")
from reranker_tune.serving import Reranker
from reranker_tune.server import create_app, running_server
from conftest import QUERY, DOCS

@pytest.fixture
def served(make_run):
    "Start the server on a hand-made run (by its fusion weight) on 127.0.0.1; stopped when the test ends."
    with __import__("contextlib").ExitStack() as stack:
        def start(weight: float, **options) -> tuple[str, Path, object]:
            run = make_run(weight, name=f"run-{weight}")
            app = create_app(run, device="cpu", **options)
            return stack.enter_context(running_server(app, timeout=120)), run, app
        yield start

def expected(run, query, documents, top_k=None):
    return Reranker(run, device="cpu").rerank(query, documents, top_k=top_k)

@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_the_cohere_sdk_gets_what_the_reranker_serves(served, heldout, weight):
    url, run, _ = served(weight)
    v1, v2 = cohere.Client(base_url=url, api_key="unused"), cohere.ClientV2(base_url=url, api_key="unused")
    for s in heldout:
        want = expected(run, s["query"], s["documents"])
        first = v1.rerank(query=s["query"], documents=s["documents"], return_documents=True)
        second = v2.rerank(model="run", query=s["query"], documents=s["documents"], top_n=3)
        assert [r.index for r in first.results] == [h.id for h in want]
        assert [r.document.text for r in first.results] == [h.text for h in want]
        np.testing.assert_allclose([r.relevance_score for r in first.results], [h.score for h in want], atol=1e-5)
        assert [r.index for r in second.results] == [h.id for h in want[:3]] and second.id and second.meta.api_version
        np.testing.assert_allclose([r.relevance_score for r in second.results], [h.score for h in want[:3]], atol=1e-5)

def test_every_field_the_sdk_sends_is_accepted_and_v1_documents_come_back_whole(served):
    url, run, _ = served(0.3)
    v1, v2 = cohere.Client(base_url=url, api_key="k"), cohere.ClientV2(base_url=url, api_key="k")
    docs = [{"text": t, "id": f"faq-{i}"} for i, t in enumerate(DOCS)]
    got = v1.rerank(model="m", query=QUERY, documents=docs, top_n=2, rank_fields=["text"], return_documents=True,
                    max_chunks_per_doc=10)
    want = expected(run, QUERY, DOCS, 2)
    assert [r.index for r in got.results] == [h.id for h in want]
    assert [dict(r.document) for r in got.results] == [docs[h.id] for h in want] # every field preserved
    got = v2.rerank(model="m", query=QUERY, documents=DOCS, top_n=10, max_tokens_per_doc=512, priority=1,
                    relevant_spans={"mode": "disabled"})
    assert [r.index for r in got.results] == [h.id for h in expected(run, QUERY, DOCS)] # top_n over the count: all
    with pytest.raises(cohere.errors.UnprocessableEntityError) as refused:
        v2.rerank(model="m", query=QUERY, documents=["fine", " "])
    assert refused.value.body["field"] == "documents" and refused.value.body["positions"] == [1]

@pytest.mark.parametrize("weight", [0.3, 1.0])
def test_tei_over_plain_http(served, heldout, weight):
    url, run, app = served(weight)
    reranker = Reranker(run, device="cpu")
    for s in heldout:
        got = httpx.post(f"{url}/rerank", json={"query": s["query"], "texts": s["documents"], "return_text": True})
        assert got.status_code == 200
        want = reranker.rerank(s["query"], s["documents"], top_k=None)
        assert [r["index"] for r in got.json()] == [h.id for h in want]
        assert [r["text"] for r in got.json()] == [h.text for h in want]
        np.testing.assert_allclose([r["score"] for r in got.json()], [h.score for h in want], atol=1e-5)
    raw = httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": DOCS, "raw_scores": True, "truncate": True}).json()
    assert "text" not in raw[0] and [r["index"] for r in raw] == [h.id for h in reranker.rerank(QUERY, DOCS, None)]
    if weight == 1: # the raw logits, not their sigmoid
        logits = reranker.cross_encoder_logits(QUERY, DOCS)
        np.testing.assert_allclose([r["score"] for r in raw], logits[[r["index"] for r in raw]], atol=1e-5)
        activated = [h.score for h in reranker.rerank(QUERY, DOCS, None)] # the sigmoid's, in (0, 1)
        assert np.abs(np.array([r["score"] for r in raw]) - activated).max() > 1e-3

def test_health_and_info_name_the_run_its_rule_and_held_out_table(served, make_run):
    url, run, _ = served(0.3)
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    info = httpx.get(f"{url}/info").json()
    assert (info["run"], info["shipped"], info["fusion_weight"]) == ("run-0.3", "fine-tuned + retriever", 0.3)
    assert info["held_out"] is None and info["limits"]["max_documents"] == 1000 and "fastapi" in info["versions"]
    other = make_run(1.0, name="with-metrics")
    table = {"retriever": {"ndcg@10": 0.7}, "fine-tuned": {"ndcg@10": 0.8}, "verdict": "ships the cross-encoder"}
    (other/"metrics.json").write_text(json.dumps(table))
    with running_server(create_app(other, device="cpu")) as url:
        info = httpx.get(f"{url}/info").json()
    assert info["held_out"] == {"retriever": {"ndcg@10": 0.7}, "fine-tuned": {"ndcg@10": 0.8}}
    assert info["verdict"] == "ships the cross-encoder" and str(other) not in json.dumps(info)

BAD = [ # (endpoint, body, status, field, positions)
    ("rerank", b'{"query": "q", "texts": [', 400, "body", None),
    ("rerank", b'\xff\xfe not utf-8', 400, "body", None),
    ("rerank", b'[' * 3000, 400, "body", None), # deeper than Python's json parser goes
    ("rerank", [1, 2], 422, "body", None),
    ("rerank", {"texts": ["a"]}, 422, "query", None),
    ("v1/rerank", {"query": "q"}, 422, "documents", None),
    ("rerank", {"query": "q", "texts": ["a"], "top_k": 2}, 422, "top_k", None),
    ("v2/rerank", {"query": "q", "documents": ["a"], "file": "/etc/passwd"}, 422, "file", None),
    ("v2/rerank", {"query": 5, "documents": ["a"]}, 422, "query", None),
    ("v2/rerank", {"query": " ", "documents": ["a"]}, 422, "query", None),
    ("v2/rerank", {"query": "q", "documents": []}, 422, "documents", None),
    ("v2/rerank", {"query": "q", "documents": ["a", 3, None, ["x"]]}, 422, "documents", [1, 2, 3]),
    ("rerank", {"query": "q", "texts": ["a", "", " \n"]}, 422, "texts", [1, 2]),
    ("v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}, 422, "documents", [0]),
    ("v2/rerank", {"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n", None),
    ("v2/rerank", {"query": "q", "documents": ["a"], "top_n": "3"}, 422, "top_n", None),
    ("v1/rerank", {"query": "q", "documents": ["a"], "rank_fields": ["title"]}, 422, "rank_fields", None),
    ("v2/rerank", {"query": "q", "documents": ["a"], "relevant_spans": {"mode": "enabled"}}, 422, "relevant_spans", None),
    ("v2/rerank", {"query": "q", "documents": ["a"]*11}, 413, "documents", None),
    ("rerank", {"query": "q", "texts": ["a", "b"*201]}, 413, "texts", [1]),
    ("rerank", {"query": "q"*201, "texts": ["a"]}, 413, "query", None),
    ("rerank", {"query": "q", "texts": ["a"], "pad": "x"*5000}, 413, "body", None)]

def test_bad_requests_get_a_4xx_naming_the_field_and_the_server_goes_on(served):
    url, run, _ = served(0.3, max_documents=10, max_characters=200, max_request_bytes=4000)
    for endpoint, body, status, field, positions in BAD:
        sent = {"content": body} if isinstance(body, bytes) else {"json": body}
        got = httpx.post(f"{url}/{endpoint}", **sent)
        assert got.status_code == status, (body if not isinstance(body, bytes) else body[:40], got.text)
        assert got.json()["field"] == field and got.json().get("positions") == positions, got.json()
        assert got.json()["error"] == got.json()["message"] and field in got.json()["error"] or field == "body"
    assert httpx.post(f"{url}/rerank", json={"query": QUERY, "texts": DOCS}).status_code == 200

def test_oversized_requests_are_refused_with_413(served):
    url, _, _ = served(1.0)
    many = httpx.post(f"{url}/v2/rerank", json={"query": "q", "documents": ["a short text"]*10_000})
    assert many.status_code == 413 and "max_documents" in many.json()["error"]
    long = httpx.post(f"{url}/rerank", json={"query": "q", "texts": ["a", "word " * 400_000]}) # 2 MB
    assert long.status_code == 413 and long.json()["positions"] == [1]

def test_a_request_that_breaks_the_model_fails_alone(served, monkeypatch):
    url, run, app = served(1.0)
    reranker, real = app.state.reranker, app.state.reranker.rerank_batch
    def fragile(requests):
        if any(r["query"] == "boom" for r in requests): raise RuntimeError("the model broke")
        return real(requests)
    monkeypatch.setattr(reranker, "rerank_batch", fragile)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda q: httpx.post(f"{url}/rerank", json={"query": q, "texts": DOCS}, timeout=60),
                                [QUERY, "boom", QUERY, "boom"]))
    assert [a.status_code for a in answers] == [200, 500, 200, 500]
    assert "the model broke" in answers[1].json()["error"] and httpx.get(f"{url}/health").status_code == 200

def test_concurrent_clients_are_batched_and_each_gets_its_own_ranking(served, heldout):
    url, run, app = served(0.3)
    reranker, real, calls = app.state.reranker, app.state.reranker.rerank_batch, []
    def slow(requests): # a slower model, so that requests queue while it works
        calls.append(len(requests)); time.sleep(0.05); return real(requests)
    reranker.rerank_batch = slow
    jobs = [heldout[i % len(heldout)] for i in range(24)]
    def ask(s):
        with httpx.Client(timeout=60) as client:
            return client.post(f"{url}/v2/rerank", json={"query": s["query"], "documents": s["documents"]})
    with ThreadPoolExecutor(6) as pool: answers = list(pool.map(ask, jobs))
    assert all(a.status_code == 200 for a in answers)
    for s, a in zip(jobs, answers):
        assert [r["index"] for r in a.json()["results"]] == [h.id for h in expected(run, s["query"], s["documents"])]
    assert sum(calls) == len(jobs) and max(calls) > 1 # several requests in one model call

def free_port() -> int:
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def test_the_cli_serves_and_sigterm_finishes_the_request_in_flight(make_run, tmp_path):
    run, port = make_run(1.0), free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "reranker_tune.cli", "serve", str(run), "--port", str(port)],
                               env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200: break
            except httpx.TransportError: pass
            assert process.poll() is None and time.time() < deadline, process.stdout.read() if process.poll() else "slow"
            time.sleep(0.2)
        # The body arrives in two parts with SIGTERM between them, so the request is in flight when the
        # signal lands whatever the speed of this machine.
        body = json.dumps({"query": QUERY, "texts": DOCS}).encode()
        first_part_sent, signalled, answer, finished = threading.Event(), threading.Event(), {}, {}
        def parts():
            yield body[:10]
            first_part_sent.set(); signalled.wait(60)
            yield body[10:]
        def ask():
            answer["response"] = httpx.post(f"{url}/rerank", content=parts(), timeout=120,
                                            headers={"content-type": "application/json"})
            finished["at"] = time.time()
        asker = threading.Thread(target=ask); asker.start()
        assert first_part_sent.wait(60)
        time.sleep(0.5) # let the server read the headers and the first part
        sent_at = time.time(); process.send_signal(signal.SIGTERM)
        time.sleep(0.5); signalled.set()
        asker.join(120)
        assert answer["response"].status_code == 200, (answer["response"].text, process.kill(), process.stdout.read()[-3000:])
        assert len(answer["response"].json()) == len(DOCS)
        assert finished["at"] > sent_at
        process.wait(60)
        assert process.returncode in (0, -signal.SIGTERM), process.stdout.read()
        with pytest.raises(httpx.TransportError): httpx.get(f"{url}/health", timeout=2)
    finally:
        if process.poll() is None: process.kill(); process.wait()

def test_the_cli_names_a_run_it_cannot_serve(tmp_path, capsys):
    from reranker_tune.cli import main
    assert main(["serve", str(tmp_path/"nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
