"""The HTTP endpoints each task serves (``rnnkit serve``), one function per kind of
endpoint; a task's ``add_routes(app, ctx)`` hook calls its own. ``ctx`` is the server's
:class:`rnnkit.serving.ServingContext`: the run, its limits and the request helpers.

(No ``from __future__ import annotations`` here: FastAPI reads the request models of the
endpoints below from their annotations, and those models are local classes.)
"""

import asyncio
import threading
from typing import Any


def classify_texts(app, ctx, task) -> None:
    """``POST /predict`` ``{"texts": [...], "top": 3}``: a label and its probabilities per
    text; concurrent requests share forward passes."""
    import torch
    from pydantic import BaseModel, Field

    from rnnkit.data.batching import pad_batch
    from rnnkit.training.predictions import ranked_predictions

    module, data = ctx.load(task)
    classes = data.classes

    def run(texts: list[str]) -> list[dict[str, Any]]:
        tokens, lengths, _ = pad_batch([(data.encode(t), 0) for t in texts])
        probs = torch.softmax(module(tokens, lengths), dim=-1)
        return ranked_predictions(probs, classes, len(classes))

    batcher = ctx.batcher(run)

    class TextRequest(BaseModel):
        texts: list[str] = Field(min_length=1)
        top: int = Field(3, ge=1)

    @app.post("/predict")
    async def predict_texts(body: TextRequest):
        ctx.check_texts("texts", body.texts, allow_empty=False)
        results = await batcher.submit(list(body.texts))
        return {"predictions": [ctx.top(r, body.top) for r in results]}


def classify_images(app, ctx, task) -> None:
    """``POST /predict`` ``{"images": [[[...]]], "top": 3}``: arrays of the run's image
    size with values in [0, 1]; concurrent requests share forward passes."""
    import numpy as np
    import torch
    from fastapi import HTTPException
    from pydantic import BaseModel, Field

    from rnnkit.training.predictions import ranked_predictions

    module, data = ctx.load(task)
    classes = data.classes
    height, width = data.splits.image_shape

    def run(images: list[list[list[float]]]) -> list[dict[str, Any]]:
        array = torch.from_numpy(np.asarray(images, dtype=np.float32))
        probs = torch.softmax(module(data.as_sequences(array)), dim=-1)
        return ranked_predictions(probs, classes, len(classes))

    batcher = ctx.batcher(run)

    class ImageRequest(BaseModel):
        images: list[list[list[float]]] = Field(min_length=1)
        top: int = Field(3, ge=1)

    @app.post("/predict")
    async def predict_images(body: ImageRequest):
        ctx.too_many("images", len(body.images), ctx.MAX_TEXTS)
        for i, image in enumerate(body.images):
            if len(image) != height or any(len(row) != width for row in image):
                raise HTTPException(422, f"images[{i}]: expected {height}x{width} values "
                                         "(the run's image size)")
            if not all(0.0 <= v <= 1.0 for row in image for v in row):  # NaN fails too
                raise HTTPException(422, f"images[{i}]: expected values in [0, 1] (not "
                                         "NaN or infinite)")
        results = await batcher.submit(list(body.images))
        return {"predictions": [ctx.top(r, body.top) for r in results]}


def generate(app, ctx, task) -> None:
    """``POST /generate`` ``{"prompt", "length", "temperature", "top_k", "seed",
    "stream"}``; with ``stream`` the text arrives as it is sampled."""
    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel, Field
    from starlette.concurrency import run_in_threadpool

    from rnnkit.tasks.lm import TextGenerator

    generator = TextGenerator.from_run(ctx.run_dir, ctx.checkpoint)
    generate_lock = asyncio.Lock()  # one sample at a time: the model is not re-entrant

    class GenerateRequest(BaseModel):
        prompt: str = ""
        length: int = Field(200, ge=0)
        temperature: float = Field(0.8, ge=0, le=1000, allow_inf_nan=False)
        top_k: int | None = Field(None, ge=1, le=10**9)
        seed: int | None = Field(None, ge=0, le=ctx.MAX_SEED)
        stream: bool = False

    @app.post("/generate")
    async def generate_text(body: GenerateRequest):
        ctx.too_many("length", body.length, ctx.MAX_GENERATE)
        ctx.too_many("prompt characters", len(body.prompt), ctx.MAX_TEXT_CHARS)
        ctx.unicode("prompt", body.prompt)
        ids, unknown = generator.encode_prompt(body.prompt)

        def sample():
            return generator.stream(ids, body.length, body.temperature, body.top_k, body.seed)

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


def forecast(app, ctx, task) -> None:
    """``POST /forecast`` ``{"horizon": 12}``: the forecast past the end of the run's
    series, by date."""
    import torch
    from fastapi import HTTPException
    from pydantic import BaseModel, Field

    from rnnkit.tasks.forecast import forecast_frame

    module, data = ctx.load(task)
    forecast_lock = threading.Lock()

    class ForecastRequest(BaseModel):
        horizon: int | None = Field(None, ge=1)

    @app.post("/forecast")
    async def forecast_series(body: ForecastRequest):
        horizon = body.horizon or data.config["horizon"]
        ctx.too_many("horizon", horizon, ctx.MAX_HORIZON)

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


def translate(app, ctx, task) -> None:
    """``POST /translate`` ``{"sentences": [...], "beam": null}``: one translation per
    sentence (``beam`` null: the run's beam size); concurrent requests share decodings
    (one per beam size)."""
    from pydantic import BaseModel, Field

    from rnnkit.tasks.translate import SentenceTranslator

    translator = SentenceTranslator.from_run(ctx.run_dir, ctx.checkpoint)
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

    batcher = ctx.batcher(run)

    class TranslateRequest(BaseModel):
        sentences: list[str] = Field(min_length=1)
        beam: int | None = Field(None, ge=1, le=64)

    @app.post("/translate")
    async def translate_sentences(body: TranslateRequest):
        ctx.check_texts("sentences", body.sentences)  # an empty one translates to ""
        beam = body.beam or translator.config["beam"]
        results = await batcher.submit([(text, beam) for text in body.sentences])
        return {"beam": beam, "translations": results}


def recommend(app, ctx, task) -> None:
    """``POST /recommend`` ``{"history": ["i1", "i2"], "k": 20}``: the next items after a
    history of item ids (unknown ids are skipped and listed); concurrent requests share
    forward passes."""
    from fastapi import HTTPException
    from pydantic import BaseModel, Field

    from rnnkit.tasks.nextitem.recommend import Recommender

    recommender = Recommender.from_run(ctx.run_dir, ctx.checkpoint)

    def run(requests: list[tuple[list[str], int]]) -> list[list[dict[str, Any]]]:
        ranked = recommender.recommend([h for h, _ in requests], max(k for _, k in requests))
        return [r[:k] for r, (_, k) in zip(ranked, requests)]

    batcher = ctx.batcher(run)

    class RecommendRequest(BaseModel):
        history: list[str] = Field(min_length=1)
        k: int = Field(20, ge=1)

    @app.post("/recommend")
    async def recommend_items(body: RecommendRequest):
        ctx.too_many("history items", len(body.history), ctx.MAX_TEXT_CHARS)
        for i, item in enumerate(body.history):
            ctx.too_many(f"history[{i}] characters", len(item), ctx.MAX_TEXT_CHARS)
        known, unknown = recommender.encode(body.history)
        if not known:
            raise HTTPException(422, "history: none of its items is known to the run")
        ranked = (await batcher.submit([(list(body.history), body.k)]))[0]
        return {"recommendations": ranked, "unknown": list(dict.fromkeys(unknown))}


MAX_AUDIO_SECONDS = 120.0


def transcribe(app, ctx, task) -> None:
    """``POST /transcribe?beam=K``: the body is one audio file (WAV, FLAC, Ogg Vorbis, ...;
    any rate, mixed to mono), at most the server's body limit and 120 seconds; the answer
    is its text. ``beam`` 0 decodes greedily; none: the run's ``--beam``. Concurrent
    requests share forward passes."""
    import io

    from fastapi import HTTPException, Query, Request

    from rnnkit.data.speech import SAMPLE_RATE, read_audio
    from rnnkit.tasks.asr.task import Transcriber

    transcriber = Transcriber.from_run(ctx.run_dir, ctx.checkpoint)
    batcher = ctx.batcher(lambda items: transcriber.transcribe_samples(
        [samples for samples, _ in items], [beam for _, beam in items]))

    @app.post("/transcribe")
    async def transcribe_audio(request: Request, beam: int | None = Query(None, ge=0, le=64)):
        body = await request.body()
        if not body:
            raise HTTPException(422, "expected an audio file as the request body (e.g. curl "
                                     "--data-binary @clip.wav)")
        try:
            samples = read_audio(io.BytesIO(body), "the request body")
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        seconds = len(samples) / SAMPLE_RATE
        if seconds > MAX_AUDIO_SECONDS:
            raise HTTPException(413, f"audio of {seconds:.0f} s is over the limit of "
                                     f"{MAX_AUDIO_SECONDS:.0f} s")
        chosen = transcriber.data.config["beam"] if beam is None else beam
        text = (await batcher.submit([(samples, chosen)]))[0]
        return {"text": text, "seconds": round(seconds, 3), "beam": chosen}
