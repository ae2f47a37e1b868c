"""``rnnkit serve RUN_DIR``: a trained run behind an HTTP JSON API (FastAPI + uvicorn).

Endpoints, by the run's task:

- ``GET /health``: ``{"status": "ok", "task": ..., "run": ...}``.
- ``POST /predict`` (textclass): ``{"texts": ["...", ...], "top": 3}`` -> one label and
  its probabilities per text. (seqclass): ``{"images": [[[...]]]}``, arrays of the run's
  image size with values in [0, 1].
- ``POST /generate`` (lm): ``{"prompt": "...", "length": 200, "temperature": 0.8,
  "top_k": null, "seed": null, "stream": false}``; with ``stream`` the text arrives as it
  is sampled (``text/plain``, chunked).
- ``POST /forecast`` (forecast): ``{"horizon": 12}`` -> the forecast past the end of the
  run's series, by date.
- ``POST /translate`` (translate): ``{"sentences": ["...", ...], "beam": null}`` -> one
  translation per sentence (``beam`` null: the run's beam size), with the source tokens
  cut off past the run's ``--max-tokens`` and those read as ``<unk>``. An empty sentence
  translates to an empty string, as in ``rnnkit translate``.

Bad requests get a 4xx with a message and never stop the server: malformed JSON or
wrong types (422, FastAPI's validation), values that are not finite or out of range and
text that is not valid Unicode (422, naming the field), too many or too long inputs
(413), bodies over :data:`MAX_BODY` bytes (413: read only up to the limit, whether the
length is declared or the body comes in chunks). With a token (``--token`` or
:data:`TOKEN_ENV`) every request must carry ``Authorization: Bearer <token>`` (401
otherwise); ``docs=False`` (``--no-docs``) serves no ``/docs``, ``/redoc`` or
``/openapi.json``. A client that drops a streaming ``/generate`` frees the generator at
once for the next request. Concurrent classification requests are batched: requests
arriving within ``max_wait_ms`` of each other run as one forward pass of at most
``max_batch`` inputs, and so do concurrent translation requests (one decoding per beam
size). The server binds to 127.0.0.1 unless told otherwise and shuts
down gracefully on SIGINT/SIGTERM (uvicorn lets in-flight requests finish).
"""


import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rnnkit.body_limit import BodyLimit

MAX_BODY = 1_000_000  # bytes
TOKEN_ENV = "RNNKIT_SERVE_TOKEN"
MAX_SEED = 2**63 - 1
MAX_TEXTS = 256  # texts or images per request
MAX_TEXT_CHARS = 10_000
MAX_GENERATE = 5_000  # tokens
MAX_HORIZON = 10_000


class MicroBatcher:
    """Collects items from concurrent requests and runs them through ``run`` together.

    ``run(items) -> results`` is called in a worker thread (the event loop stays free)
    with at most ``max_batch`` items, gathered for up to ``max_wait`` seconds after the
    first one arrives.
    """

    def __init__(self, run: Callable[[list[Any]], list[Any]], max_batch: int = 64,
                 max_wait: float = 0.005) -> None:
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.queue: asyncio.Queue | None = None
        self.task: asyncio.Task | None = None
        self.batches = 0  # forward passes run, for the tests and the log
        self.lock = threading.Lock()  # one forward pass at a time

    async def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.create_task(self._worker())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def submit(self, items: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            await self.queue.put((item, future))
        return list(await asyncio.gather(*futures))

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(pending) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    pending.append(await asyncio.wait_for(self.queue.get(), timeout))
                except TimeoutError:
                    break
            items = [item for item, _ in pending]
            try:
                results = await loop.run_in_executor(None, self._locked_run, items)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for _, future in pending:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(pending, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _locked_run(self, items: list[Any]) -> list[Any]:
        import torch

        # no_grad here, in the worker thread: grad mode is per thread
        with self.lock, torch.no_grad():
            self.batches += 1
            return self.run(items)


def build_app(run_dir: str | Path, checkpoint: str = "best", max_batch: int = 64,
              max_wait_ms: float = 5.0, token: str | None = None, docs: bool = True):
    """The FastAPI application serving ``run_dir``; with ``token``, requests must carry
    ``Authorization: Bearer <token>``."""
    from contextlib import asynccontextmanager

    import torch
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool

    from rnnkit.tasks import TASKS
    from rnnkit.training import runner
    from rnnkit.training.run_folder import read_run_config

    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    task = TASKS.get(saved.get("task"))
    if task is None:
        raise ValueError(f"{run_dir}: unknown task {saved.get('task')!r} in config.json")
    if task.name not in ("textclass", "seqclass", "lm", "forecast", "translate"):
        raise ValueError(f"rnnkit serve: {task.name!r} runs have no serving endpoint; serve a "
                         "textclass, seqclass, lm, forecast or translate run")
    state: dict[str, Any] = {"task": task.name, "run": str(run_dir)}
    batcher: MicroBatcher | None = None
    if task.name == "lm":
        from rnnkit.tasks.lm import TextGenerator

        generator = TextGenerator.from_run(run_dir, checkpoint)
        generate_lock = asyncio.Lock()  # one sample at a time: the model is not re-entrant
    elif task.name == "translate":
        from rnnkit.tasks.translate import SentenceTranslator

        translator = SentenceTranslator.from_run(run_dir, checkpoint)
        batcher = MicroBatcher(_translate_batch(translator), max_batch, max_wait_ms / 1000)
    else:
        module, data, _ = runner.load_trained(task, run_dir, checkpoint)
        if task.name in ("textclass", "seqclass"):
            batcher = MicroBatcher(_classify_batch(task.name, module, data), max_batch,
                                   max_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app):
        if batcher is not None:
            await batcher.start()
        yield
        if batcher is not None:
            await batcher.stop()

    hidden = {"docs_url": None, "redoc_url": None, "openapi_url": None} if not docs else {}
    app = FastAPI(title=f"rnnkit {task.name}", lifespan=lifespan, **hidden)
    app.state.batcher = batcher

    if token:
        import hmac

        expected = f"Bearer {token}".encode()

        @app.middleware("http")
        async def require_token(request: Request, call_next):
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"detail": "missing or wrong bearer token (send "
                                               "Authorization: Bearer <token>)"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return await call_next(request)

    app.add_middleware(BodyLimit, limit=MAX_BODY)  # outermost: before anything reads

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's own handler echoes each bad input back, and a NaN or 1e400 in it
        # cannot be written as JSON (a 500); the field and the reason are enough.
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")),
                   "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/health")
    async def health():
        return {"status": "ok", **state}

    def too_many(what: str, count: int, limit: int) -> None:
        if count > limit:
            raise HTTPException(413, f"{what}: {count} is over the limit of {limit}")

    def unicode(what: str, text: str) -> None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPException(422, f"{what}: not valid Unicode text (a lone surrogate "
                                     "such as \\ud800)") from None

    if task.name == "textclass":
        class TextRequest(BaseModel):
            texts: list[str] = Field(min_length=1)
            top: int = Field(3, ge=1)

        @app.post("/predict")
        async def predict_texts(body: TextRequest):
            too_many("texts", len(body.texts), MAX_TEXTS)
            for i, text in enumerate(body.texts):
                too_many(f"texts[{i}] characters", len(text), MAX_TEXT_CHARS)
                unicode(f"texts[{i}]", text)
                if not text.strip():
                    raise HTTPException(422, f"texts[{i}]: empty text")
            results = await batcher.submit(list(body.texts))
            return {"predictions": [_top(r, body.top) for r in results]}

    if task.name == "seqclass":
        height, width = data.splits.image_shape

        class ImageRequest(BaseModel):
            images: list[list[list[float]]] = Field(min_length=1)
            top: int = Field(3, ge=1)

        @app.post("/predict")
        async def predict_images(body: ImageRequest):
            too_many("images", len(body.images), MAX_TEXTS)
            for i, image in enumerate(body.images):
                if len(image) != height or any(len(row) != width for row in image):
                    raise HTTPException(422, f"images[{i}]: expected {height}x{width} values "
                                             "(the run's image size)")
                if not all(0.0 <= v <= 1.0 for row in image for v in row):  # NaN fails too
                    raise HTTPException(422, f"images[{i}]: expected values in [0, 1] (not "
                                             "NaN or infinite)")
            results = await batcher.submit(list(body.images))
            return {"predictions": [_top(r, body.top) for r in results]}

    if task.name == "lm":
        class GenerateRequest(BaseModel):
            prompt: str = ""
            length: int = Field(200, ge=0)
            temperature: float = Field(0.8, ge=0, le=1000, allow_inf_nan=False)
            top_k: int | None = Field(None, ge=1, le=10**9)
            seed: int | None = Field(None, ge=0, le=MAX_SEED)
            stream: bool = False

        @app.post("/generate")
        async def generate(body: GenerateRequest):
            too_many("length", body.length, MAX_GENERATE)
            too_many("prompt characters", len(body.prompt), MAX_TEXT_CHARS)
            unicode("prompt", body.prompt)
            ids, unknown = generator.encode_prompt(body.prompt)

            def sample():
                return generator.stream(ids, body.length, body.temperature, body.top_k,
                                        body.seed)

            if not body.stream:
                async with generate_lock:
                    text = await run_in_threadpool(lambda: "".join(sample()))
                return {"prompt": body.prompt, "text": text, "unknown": unknown}

            async def pieces():
                # Each token is sampled in a worker thread; if the client goes away the
                # response is cancelled between tokens and the lock is released at once.
                async with generate_lock:
                    tokens = sample()
                    try:
                        while True:
                            piece = await run_in_threadpool(next, tokens, None)
                            if piece is None:
                                return
                            yield piece
                    finally:
                        tokens.close()

            return StreamingResponse(pieces(), media_type="text/plain; charset=utf-8")

    if task.name == "forecast":
        from rnnkit.tasks.forecast import forecast_frame

        class ForecastRequest(BaseModel):
            horizon: int | None = Field(None, ge=1)

        forecast_lock = threading.Lock()

        @app.post("/forecast")
        async def forecast(body: ForecastRequest):
            horizon = body.horizon or data.config["horizon"]
            too_many("horizon", horizon, MAX_HORIZON)

            def run():
                with forecast_lock, torch.no_grad():
                    return forecast_frame(module, data, horizon, seed=data.config["seed"])

            try:
                frame = await asyncio.get_running_loop().run_in_executor(None, run)
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
            rows = [{"time": str(index), **{k: float(v) for k, v in row.items()}}
                    for index, row in frame.iterrows()]
            return {"target": data.series.columns[0], "forecast": rows}

    if task.name == "translate":
        class TranslateRequest(BaseModel):
            sentences: list[str] = Field(min_length=1)
            beam: int | None = Field(None, ge=1, le=64)

        @app.post("/translate")
        async def translate(body: TranslateRequest):
            too_many("sentences", len(body.sentences), MAX_TEXTS)
            for i, text in enumerate(body.sentences):
                too_many(f"sentences[{i}] characters", len(text), MAX_TEXT_CHARS)
                unicode(f"sentences[{i}]", text)
            beam = body.beam or translator.config["beam"]
            results = await batcher.submit([(text, beam) for text in body.sentences])
            return {"beam": beam, "translations": results}

    return app


def _translate_batch(translator) -> Callable[[list[Any]], list[Any]]:
    """Translate (sentence, beam) items together, one decoding per beam size."""
    known = translator.data.source_vocab.index

    def run(items: list[tuple[str, int]]) -> list[dict[str, Any]]:
        results: list[dict[str, Any] | None] = [None] * len(items)
        for beam in sorted({b for _, b in items}):
            where = [i for i, (_, b) in enumerate(items) if b == beam]
            for i, item in zip(where, translator.translate([items[i][0] for i in where], beam)):
                results[i] = {"text": item.text, "truncated": item.truncated,
                              "unknown": list(dict.fromkeys(
                                  t for t in item.source_tokens if t not in known))}
        return results

    return run


def _top(result: dict[str, Any], top: int) -> dict[str, Any]:
    ranked = list(result["probabilities"].items())[:top]
    return {"label": result["label"], "probabilities": dict(ranked)}


def _classify_batch(task_name: str, module, data) -> Callable[[list[Any]], list[Any]]:
    """One forward pass over a list of texts (or images): ranked class probabilities."""
    import numpy as np
    import torch

    from rnnkit.training.predictions import ranked_predictions

    classes = data.classes

    if task_name == "textclass":
        from rnnkit.data.batching import pad_batch

        def run(texts: list[str]) -> list[dict[str, Any]]:
            tokens, lengths, _ = pad_batch([(data.encode(t), 0) for t in texts])
            probs = torch.softmax(module(tokens, lengths), dim=-1)
            return ranked_predictions(probs, classes, len(classes))
        return run

    def run_images(images: list[list[list[float]]]) -> list[dict[str, Any]]:
        array = torch.from_numpy(np.asarray(images, dtype=np.float32))
        probs = torch.softmax(module(data.as_sequences(array)), dim=-1)
        return ranked_predictions(probs, classes, len(classes))
    return run_images


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000,
          checkpoint: str = "best", max_batch: int = 64, max_wait_ms: float = 5.0,
          token: str | None = None, docs: bool = True) -> None:
    """Run the server until SIGINT/SIGTERM. ``token`` (default: :data:`TOKEN_ENV`) makes
    every request need ``Authorization: Bearer <token>``."""
    import os
    import sys

    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not _loopback(host):
        print(f"rnnkit: warning: serving on {host} without a token: anyone who can reach "
              f"this address can use the model; set --token or {TOKEN_ENV}", file=sys.stderr)
    app = build_app(run_dir, checkpoint, max_batch, max_wait_ms, token=token, docs=docs)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)


def _loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    import ipaddress

    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
