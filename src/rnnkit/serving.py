"""``rnnkit serve RUN_DIR``: a trained run behind an HTTP JSON API (FastAPI + uvicorn).

``GET /health`` answers ``{"status": "ok", "task": ..., "run": ...}``; the other
endpoints come from the run's task, through its ``add_routes(app, ctx)`` hook (the
endpoints themselves are in :mod:`rnnkit.tasks.routes`: ``/predict`` for text and image
classifiers, ``/generate`` for language models, ``/forecast``, ``/translate``).

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


class ServingContext:
    """What a task's ``add_routes(app, ctx)`` hook gets from the server: the run, the
    batching settings, the limits (``MAX_*``) and the request checks."""

    MAX_SEED, MAX_TEXTS, MAX_TEXT_CHARS = MAX_SEED, MAX_TEXTS, MAX_TEXT_CHARS
    MAX_GENERATE, MAX_HORIZON = MAX_GENERATE, MAX_HORIZON

    def __init__(self, run_dir: Path, checkpoint: str, max_batch: int,
                 max_wait_ms: float) -> None:
        self.run_dir, self.checkpoint = run_dir, checkpoint
        self.max_batch, self.max_wait_ms = max_batch, max_wait_ms
        self.batchers: list[MicroBatcher] = []

    def load(self, task) -> tuple[Any, Any]:
        """The run's trained module (checkpoint as asked) and its data."""
        from rnnkit.training import runner

        module, data, _ = runner.load_trained(task, self.run_dir, self.checkpoint)
        return module, data

    def batcher(self, run: Callable[[list[Any]], list[Any]]) -> MicroBatcher:
        """A :class:`MicroBatcher` over ``run``, started and stopped with the server."""
        batcher = MicroBatcher(run, self.max_batch, self.max_wait_ms / 1000)
        self.batchers.append(batcher)
        return batcher

    @staticmethod
    def too_many(what: str, count: int, limit: int) -> None:
        from fastapi import HTTPException

        if count > limit:
            raise HTTPException(413, f"{what}: {count} is over the limit of {limit}")

    @staticmethod
    def unicode(what: str, text: str) -> None:
        from fastapi import HTTPException

        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise HTTPException(422, f"{what}: not valid Unicode text (a lone surrogate "
                                     "such as \\ud800)") from None

    @classmethod
    def check_texts(cls, field: str, texts: list[str], allow_empty: bool = True) -> None:
        """A request's list of texts: not too many, none too long, valid Unicode, and (unless
        ``allow_empty``) none blank; the error names the field and the item."""
        from fastapi import HTTPException

        cls.too_many(field, len(texts), cls.MAX_TEXTS)
        for i, text in enumerate(texts):
            cls.too_many(f"{field}[{i}] characters", len(text), cls.MAX_TEXT_CHARS)
            cls.unicode(f"{field}[{i}]", text)
            if not allow_empty and not text.strip():
                raise HTTPException(422, f"{field}[{i}]: empty text")

    @staticmethod
    def top(result: dict[str, Any], top: int) -> dict[str, Any]:
        ranked = list(result["probabilities"].items())[:top]
        return {"label": result["label"], "probabilities": dict(ranked)}


def build_app(run_dir: str | Path, checkpoint: str = "best", max_batch: int = 64,
              max_wait_ms: float = 5.0, token: str | None = None, docs: bool = True):
    """The FastAPI app serving ``run_dir``: the common parts (health, token, body limit,
    validation errors) here, the endpoints from the run's task (its ``add_routes`` hook).
    ``token``: when set, every request must carry ``Authorization: Bearer <token>``."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from rnnkit.tasks import TASKS
    from rnnkit.training.run_folder import read_run_config

    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    task = TASKS.get(saved.get("task"))
    if task is None:
        raise ValueError(f"{run_dir}: unknown task {saved.get('task')!r} in config.json")
    if not hasattr(task, "add_routes"):
        served = [name for name in TASKS if hasattr(TASKS[name], "add_routes")]
        raise ValueError(f"rnnkit serve: {task.name!r} runs have no serving endpoint; serve a "
                         f"{', '.join(served[:-1])} or {served[-1]} run")
    ctx = ServingContext(run_dir, checkpoint, max_batch, max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        for batcher in ctx.batchers:
            await batcher.start()
        yield
        for batcher in ctx.batchers:
            await batcher.stop()

    hidden = {"docs_url": None, "redoc_url": None, "openapi_url": None} if not docs else {}
    app = FastAPI(title=f"rnnkit {task.name}", lifespan=lifespan, **hidden)

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

    state = {"task": task.name, "run": str(run_dir)}

    @app.get("/health")
    async def health():
        return {"status": "ok", **state}

    task.add_routes(app, ctx)
    app.state.batcher = ctx.batchers[0] if ctx.batchers else None
    return app


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
