"""The HTTP server on localhost: concurrent requests answered correctly and batched, bad
requests refused with a 4xx and a message while the server keeps serving."""

import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rnnkit.cli import main
from tests.helpers import Client as _Client
from tests.helpers import start_server as _start

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

WORDS = {"pos": ["wonderful", "brilliant", "funny"], "neg": ["dull", "awful", "boring"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import random

    rng = random.Random(0)
    rows = ["text,label"]
    for _ in range(300):
        label = rng.choice(["pos", "neg"])
        words = [rng.choice(["the", "film", "is", "a", "plot"]) for _ in range(rng.randint(2, 8))]
        words.insert(rng.randint(0, len(words)), rng.choice(WORDS[label]))
        rows.append(f"{' '.join(words)},{label}")
    data = tmp_path_factory.mktemp("data") / "t.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path_factory.mktemp("run") / "tc"
    assert main(["train", "textclass", "--data", f"csv:{data}", "--text-col", "text",
                 "--label-col", "label", "--hidden", "8", "--embedding", "8", "--epochs", "4",
                 "--lr", "0.02", "--min-freq", "1", "--vectors", "none", "--no-progress",
                 "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def server(run):
    from rnnkit.serving import build_app

    app = build_app(run, max_batch=32, max_wait_ms=20)
    url, instance, thread = _start(app)
    assert instance.started
    yield url, app
    instance.should_exit = True
    thread.join(timeout=15)
    assert not thread.is_alive()  # graceful shutdown finished


def _post(url, body, raw=False):
    data = body if raw else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _direct(run, texts):
    from rnnkit.tasks import TASKS
    from rnnkit.training import runner

    task = TASKS["textclass"]
    module, data, _ = runner.load_trained(task, run)
    return [task.predict(module, data, t)[0]["label"] for t in texts]


def test_concurrent_requests_are_answered_correctly_and_batched(server, run):
    url, app = server
    texts = [f"the film is {w}" for w in ("wonderful", "dull", "funny", "awful")] * 15
    expected = _direct(run, texts)
    before = app.state.batcher.batches
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(lambda t: _post(f"{url}/predict", {"texts": [t]}), texts))
    elapsed = time.perf_counter() - started
    assert elapsed < 30
    assert all(status == 200 for status, _ in answers)
    assert [body["predictions"][0]["label"] for _, body in answers] == expected
    assert app.state.batcher.batches - before < len(texts)  # some requests shared a pass
    status, body = _post(f"{url}/predict", {"texts": texts[:3], "top": 1})
    assert status == 200 and len(body["predictions"]) == 3
    assert len(body["predictions"][0]["probabilities"]) == 1
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        assert json.loads(response.read())["task"] == "textclass"


@pytest.mark.parametrize("body,status,message", [
    (b"{not json", 422, "JSON decode error"),
    (json.dumps({"texts": "a string"}).encode(), 422, "valid list"),
    (json.dumps({"texts": [3]}).encode(), 422, "valid string"),
    (json.dumps({"texts": []}).encode(), 422, "at least 1"),
    (json.dumps({"texts": ["   "]}).encode(), 422, "empty text"),
    (json.dumps({"texts": ["x" * 10_001]}).encode(), 413, "over the limit"),
    (json.dumps({"texts": ["a"] * 257}).encode(), 413, "texts: 257"),
], ids=["malformed-json", "string-not-list", "number-not-string", "empty-list", "blank-text",
        "text-too-long", "too-many-texts"])
def test_bad_requests_get_a_4xx_with_a_message_and_the_server_keeps_serving(server, body, status,
                                                                           message):
    url, _ = server
    got, answer = _post(f"{url}/predict", body, raw=True)
    assert got == status
    assert message in json.dumps(answer)
    ok, _ = _post(f"{url}/predict", {"texts": ["a wonderful film"]})
    assert ok == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    """Only the headers are sent: the server answers 413 from the declared length."""
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000000\r\n\r\n")
        reply = b""
        while b"}" not in reply:
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert "over the limit" in json.loads(body)["detail"]
    assert _post(f"{url}/predict", {"texts": ["a dull film"]})[0] == 200


def test_generate_streams_the_same_text_it_returns_whole(tmp_path):
    from rnnkit.serving import build_app
    from rnnkit.tasks.lm import TextGenerator

    corpus = tmp_path / "play.txt"
    corpus.write_text("ROMEO.\nSweet love, fair night.\n\nJULIET.\nThou light of heaven!\n\n" * 80)
    run = tmp_path / "lm"
    assert main(["train", "lm", "--data", f"text:{corpus}", "--hidden", "16", "--embedding", "8",
                 "--batch-size", "4", "--bptt", "20", "--epochs", "1", "--eval-streams", "2",
                 "--no-progress", "--out", str(run)]) == 0
    url, instance, thread = _start(build_app(run))
    try:
        body = {"prompt": "ROMEO.", "length": 60, "temperature": 0.8, "seed": 3}
        status, whole = _post(f"{url}/generate", body)
        assert status == 200
        request = urllib.request.Request(f"{url}/generate",
                                         data=json.dumps({**body, "stream": True}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers.get("transfer-encoding") == "chunked"
            chunks = []
            while chunk := response.read1(64):
                chunks.append(chunk.decode())
        streamed = "".join(chunks)
        expected = "".join(TextGenerator.from_run(run).stream("ROMEO.", 60, 0.8, None, 3))
        assert whole["text"] == streamed == expected and len(expected) == 60
        assert _post(f"{url}/generate", {"length": 10**6})[0] == 413
        assert _post(f"{url}/generate", {"temperature": "hot"})[0] == 422
    finally:
        instance.should_exit = True
        thread.join(timeout=15)


def test_forecast_endpoint_matches_the_command(tmp_path):
    from rnnkit.serving import build_app

    csv = tmp_path / "s.csv"
    csv.write_text("y\n" + "\n".join(f"{3 + (i % 12) / 10:.2f}" for i in range(120)) + "\n")
    run = tmp_path / "fc"
    assert main(["train", "forecast", "--data", f"csv:{csv}", "--target", "y", "--horizon", "3",
                 "--hidden", "8", "--epochs", "2", "--baselines", "naive", "--no-progress",
                 "--out", str(run)]) == 0
    from rnnkit import Forecaster

    expected = Forecaster.from_run(run).predict(5)["forecast"].tolist()
    url, instance, thread = _start(build_app(run))
    try:
        status, body = _post(f"{url}/forecast", {"horizon": 5})
        assert status == 200
        assert [row["forecast"] for row in body["forecast"]] == pytest.approx(expected)
        assert _post(f"{url}/forecast", {"horizon": 0})[0] == 422
    finally:
        instance.should_exit = True
        thread.join(timeout=15)


def test_serve_refuses_tasks_without_an_endpoint(tmp_path):
    from rnnkit.serving import build_app

    (tmp_path / "config.json").write_text(json.dumps({"task": "adding"}))
    with pytest.raises(ValueError, match="no serving endpoint"):
        build_app(tmp_path)
    torch.set_grad_enabled(True)


# --- hostile clients -------------------------------------------------------------------




def test_a_chunked_body_is_cut_off_at_the_limit(server):
    """No Content-Length: the body comes in 64 KB chunks, 20 MB of them if the server
    kept reading. It answers 413 once the limit is passed and stops reading."""
    from rnnkit.serving import MAX_BODY

    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    chunk = b'{"texts": ["' + b"a" * 65_000
    sent = 0
    with socket.create_connection((host, int(port)), timeout=20) as conn:
        conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        reply = b""
        try:
            while sent < 20_000_000 and b"\r\n\r\n" not in reply:
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                conn.settimeout(0.001 if sent < MAX_BODY else 0.2)
                try:
                    reply += conn.recv(4096)
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        conn.settimeout(10)
        while b"}" not in reply:
            more = conn.recv(4096)
            if not more:
                break
            reply += more
    assert reply.startswith(b"HTTP/1.1 413")
    assert b"over the limit" in reply
    assert sent < 4 * MAX_BODY  # the server stopped reading soon after the limit
    assert _post(f"{url}/predict", {"texts": ["a dull film"]})[0] == 200


@pytest.mark.parametrize("raw,message", [
    (b'{"texts": ["\\ud800 lonely"]}', "texts[0]: not valid Unicode"),
    (b'{"texts": ["fine", "\\udfff"]}', "texts[1]: not valid Unicode"),
    (b'{"texts": ["fine"], "top": 1e400}', "top"),
    (b'{"texts": NaN}', "texts"), (b'{"texts": ["fine"], "top": -Infinity}', "top"),
], ids=["lone-surrogate", "second-text", "huge-top", "nan-texts", "minus-infinity-top"])
def test_bad_text_values_get_a_422_naming_the_field(server, raw, message):
    url, _ = server
    status, answer = _post(f"{url}/predict", raw, raw=True)
    assert status == 422 and message in json.dumps(answer)


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus") / "play.txt"
    corpus.write_text("ROMEO.\nSweet love, fair night.\n\nJULIET.\nThou light of heaven!\n\n" * 80)
    run = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "lm", "--data", f"text:{corpus}", "--hidden", "16", "--embedding", "8",
                 "--batch-size", "4", "--bptt", "20", "--epochs", "1", "--eval-streams", "2",
                 "--no-progress", "--out", str(run)]) == 0
    return run


def test_a_dropped_stream_frees_the_generator_at_once(lm_run):
    from rnnkit.serving import build_app

    url, instance, thread = _start(build_app(lm_run))
    try:
        host, port = url.removeprefix("http://").split(":")
        for _ in range(3):
            body = json.dumps({"prompt": "ROMEO.", "length": 5000, "stream": True}).encode()
            conn = socket.create_connection((host, int(port)), timeout=20)
            conn.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                         b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")  # streaming has begun
            conn.close()  # the client goes away mid-stream
            start = time.monotonic()
            status, answer = _post(f"{url}/generate", {"prompt": "JULIET.", "length": 20,
                                                       "seed": 1})
            assert status == 200 and len(answer["text"]) == 20
            assert time.monotonic() - start < 1.0
    finally:
        instance.should_exit = True
        thread.join(timeout=15)


@pytest.mark.parametrize("raw,field", [
    (b'{"temperature": NaN}', "temperature"), (b'{"temperature": Infinity}', "temperature"),
    (b'{"temperature": 1e308}', "temperature"), (b'{"seed": 1180591620717411303424}', "seed"),
    (b'{"seed": -1}', "seed"), (b'{"prompt": "\\ud800"}', "prompt"),
    (b'{"top_k": 0}', "top_k"), (b'{"length": -5}', "length"),
], ids=["nan", "inf", "huge", "seed-2**70", "seed-negative", "surrogate", "top-k", "length"])
def test_generate_answers_bad_numbers_and_text_with_422(lm_run, raw, field):
    from rnnkit.serving import build_app

    with _Client(build_app(lm_run)) as client:
        status, _, text = client.post("/generate", raw=raw)
        assert status == 422, text
        assert field in text
        assert client.post("/generate", {"length": 5})[0] == 200


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "run"
    assert main(["train", "seqclass", "--data", "digits", "--hidden", "8", "--epochs", "1",
                 "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e308", "-0.5", "2"])
def test_images_with_values_that_are_not_pixels_get_a_422(image_run, value):
    from rnnkit.serving import build_app

    row = ", ".join(["0.5"] * 7 + [value])
    raw = ('{"images": [[' + ", ".join([f"[{row}]"] + ["[" + ", ".join(["0.1"] * 8) + "]"] * 7)
           + "]]}").encode()
    with _Client(build_app(image_run)) as client:
        status, _, text = client.post("/predict", raw=raw)
        assert status == 422 and "images[0]" in text
        status, _, text = client.post("/predict", {"images": [[[0.5] * 8] * 8]})
        assert status == 200 and json.loads(text)["predictions"][0]["label"]


def test_a_token_is_required_when_set_and_docs_can_be_off(image_run):
    from rnnkit.serving import build_app

    good = {"images": [[[0.5] * 8] * 8]}
    with _Client(build_app(image_run, token="s3cret", docs=False)) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            status, reply_headers, _ = client.post("/predict", good, headers=headers)
            assert status == 401
            assert reply_headers["www-authenticate"] == "Bearer"
        assert client.get("/health")[0] == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert client.post("/predict", good, headers=auth)[0] == 200
        assert json.loads(client.get("/health", headers=auth)[2])["status"] == "ok"
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path, headers=auth)[0] == 404
    with _Client(build_app(image_run)) as client:
        assert client.get("/docs")[0] == 200


def test_binding_beyond_this_machine_without_a_token_warns(image_run, monkeypatch, capsys):
    from rnnkit import serving

    started = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: started.append(kw))
    monkeypatch.delenv(serving.TOKEN_ENV, raising=False)
    serving.serve(image_run, host="0.0.0.0", port=8123)
    assert "without a token" in capsys.readouterr().err
    serving.serve(image_run, host="127.0.0.1", port=8123)
    monkeypatch.setenv(serving.TOKEN_ENV, "t")
    serving.serve(image_run, host="0.0.0.0", port=8123)
    assert capsys.readouterr().err == "" and len(started) == 3
