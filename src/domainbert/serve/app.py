"""The HTTP service: fill-mask, NER, classification and embeddings over JSON, with a small web page.

``domainbert serve --model DIR [--ner-model DIR] [--classify-model DIR]`` runs :func:`create_app`
under uvicorn (the ``serve`` extra: ``pip install 'domainbert[serve]'``; the command line says so
when it is missing). The app holds the predictors of :mod:`domainbert.serve.inference`:

==================  =========================================================  ======================
endpoint            body → response                                            model
==================  =========================================================  ======================
``GET /``           the web page (plain HTML + JS, no build step)              —
``GET /health``     which models are loaded, the limits                        —
``POST /fill-mask`` ``{"texts": [...], "top_k": 5}`` → ``{"results": [...]}``  ``--model`` (MLM head)
``POST /ner``       ``{"texts": [...]}`` → ``{"results": [{"entities"}]}``     ``--ner-model``
``POST /classify``  ``{"texts": [...], "text_pairs": [...]?}`` → results       ``--classify-model``
``POST /embed``     ``{"texts": [...], "pooling", "normalize"}`` → vectors     ``--model``
``GET /openapi.json`` the schema of all of the above (FastAPI)                 —
==================  =========================================================  ======================

Bad requests are answered with a 4xx and a JSON body whose ``message`` is one line saying what to
change, never with a crash: a body that is not UTF-8 (400), not JSON or not matching the schema
(422: empty or whitespace-only text, text over ``max_text_chars``, more than ``max_batch`` texts,
``top_k`` out of range), a body over ``max_body_bytes`` (413), a fill-mask text without ``[MASK]``
or too long for the model (422), and an endpoint whose model was not loaded (404, naming the flag).
Predictions run in FastAPI's worker threads; each predictor serialises its forward passes (one
model on one set of cores gains nothing from running two at once).
"""

# No ``from __future__ import annotations`` here: FastAPI and pydantic read the annotations of the
# request models and endpoints that create_app defines locally, which strings would hide.
import argparse
import json
import logging
import socket
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from domainbert import __version__
from domainbert.errors import CheckpointError, ConfigError, DomainBertError
from domainbert.model.hub import add_revision_argument, resolve_model
from domainbert.serve.inference import Classifier, Embedder, FillMask, InputError, Tagger

logger = logging.getLogger("domainbert")


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; anything beyond is a 4xx with a message naming the limit."""

    max_text_chars: int = 20_000
    """Characters per text (NER windows any length; this bounds the work of one request)."""
    max_batch: int = 32
    """Texts per request."""
    max_top_k: int = 50
    """Largest ``top_k`` of fill-mask."""
    max_body_bytes: int = 2_000_000
    """Bytes of one request body (checked before parsing: 413 beyond)."""

    def __post_init__(self) -> None:
        bad = [f"{k} must be a positive integer, got {v!r}" for k, v in asdict(self).items()
               if not isinstance(v, int) or v < 1]
        if bad:
            raise ConfigError("; ".join(bad))


@dataclass
class Models:
    """The predictors a server holds (None: that endpoint answers 404 with the flag to pass)."""

    fill_mask: Any = None
    ner: Any = None
    classify: Any = None
    embed: Any = None
    fill_mask_reason: str = "start the server with --model DIR (a checkpoint with its masked-LM head)"
    """Why there is no fill-mask model, shown in the 404 (e.g. the --model checkpoint has no MLM head)."""


def load_models(model: str | Path | None = None, ner_model: str | Path | None = None,
                classify_model: str | Path | None = None, *, device: str | None = None,
                precision: str = "auto", batch_size: int = 32) -> Models:
    """Load the predictors; ``--model`` serves embeddings, and fill-mask when it has its MLM head."""
    opts: dict[str, Any] = dict(device=device, precision=precision, batch_size=batch_size)
    models = Models()
    if model is not None:
        models.embed = Embedder(model, **opts)
        try:
            models.fill_mask = FillMask(model, **opts)
        except CheckpointError as exc:
            models.fill_mask_reason = str(exc)
            logger.warning("fill-mask disabled: %s", exc)
    if ner_model is not None:
        models.ner = Tagger(ner_model, **opts)
    if classify_model is not None:
        models.classify = Classifier(classify_model, **opts)
    if not any((models.fill_mask, models.ner, models.classify, models.embed)):
        raise ConfigError("no model to serve: pass --model DIR (and/or --ner-model DIR, --classify-model DIR)")
    return models


def page_html() -> str:
    """The web page served at ``/`` (``page.html`` beside this module)."""
    return resources.files("domainbert.serve").joinpath("page.html").read_text(encoding="utf-8")


class _BodyGuard:
    """ASGI middleware: refuse request bodies over the size limit (413) or not UTF-8 (400), before parsing.

    The body is read here once (it is bounded by the limit) and replayed to the app.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, 413, f"request body is {int(declared)} bytes; the limit is "
                              f"{self.max_bytes}: send fewer or shorter texts per request")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_error(send, 413, f"request body exceeds {self.max_bytes} bytes: send fewer "
                                  "or shorter texts per request")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            await _send_error(send, 400, f"request body is not UTF-8 (invalid byte at offset {exc.start}): "
                              "send JSON encoded as UTF-8")
            return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Any, status: int, message: str) -> None:
    payload = json.dumps({"message": message, "detail": message}).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def create_app(model: str | Path | None = None, ner_model: str | Path | None = None,
               classify_model: str | Path | None = None, *, limits: Limits | None = None,
               device: str | None = None, precision: str = "auto", batch_size: int = 32,
               models: Models | None = None) -> Any:
    """The FastAPI app serving the given model directories (or already loaded ``models``)."""
    limits = limits or Limits()
    if models is None:
        models = load_models(model, ner_model, classify_model, device=device, precision=precision,
                             batch_size=batch_size)

    # A text: at least one non-space character, at most max_text_chars.
    Text = Annotated[str, StringConstraints(min_length=1, max_length=limits.max_text_chars, pattern=r"\S")]
    Texts = Annotated[list[Text], Field(min_length=1, max_length=limits.max_batch,
                                        description=f"1 to {limits.max_batch} texts of 1 to "
                                                    f"{limits.max_text_chars} characters (not only spaces)")]

    class Request_(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class FillMaskRequest(Request_):
        texts: Texts
        top_k: int = Field(5, ge=1, le=limits.max_top_k, description="tokens to list per [MASK]")

    class NerRequest(Request_):
        texts: Texts

    class ClassifyRequest(Request_):
        texts: Texts
        text_pairs: Annotated[list[Text | None], Field(max_length=limits.max_batch)] | None = Field(
            None, description="a second text per text (or null) for pair classifiers")

    class EmbedRequest(Request_):
        texts: Texts
        pooling: Literal["mean", "cls"] = "mean"
        normalize: bool = False

    class Prediction(BaseModel):
        token: str
        token_id: int
        score: float

    class MaskResult(BaseModel):
        start: int = Field(description="character offset of the [MASK] in the text")
        end: int
        predictions: list[Prediction]

    class FillMaskResult(BaseModel):
        masks: list[MaskResult]

    class FillMaskResponse(BaseModel):
        results: list[FillMaskResult]

    class Entity(BaseModel):
        start: int = Field(description="character offset where the entity starts")
        end: int = Field(description="character offset just after the entity")
        label: str
        text: str
        score: float = Field(description="mean probability of the entity's word tags")

    class NerResult(BaseModel):
        entities: list[Entity]

    class NerResponse(BaseModel):
        results: list[NerResult]

    class ClassifyResult(BaseModel):
        label: str | None = Field(None, description="single label: the best class")
        score: float | None = Field(None, description="single label: its softmax probability")
        labels: list[str] | None = Field(None, description="multi-label: classes above the threshold")
        scores: dict[str, float] | None = Field(None, description="probability of every class")
        value: float | None = Field(None, description="regression with one output")
        values: dict[str, float] | None = Field(None, description="regression with several outputs")

    class ClassifyResponse(BaseModel):
        results: list[ClassifyResult]
        problem_type: str

    class EmbedResponse(BaseModel):
        embeddings: list[list[float]]
        dim: int
        pooling: str

    class Health(BaseModel):
        status: str
        version: str
        models: dict[str, str | None]
        limits: dict[str, int]

    class ErrorBody(BaseModel):
        message: str = Field(description="what is wrong and what to change, in one line")
        detail: Any = None

    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorBody, "description": "body is not UTF-8"},
        404: {"model": ErrorBody, "description": "this server has no model for the endpoint"},
        413: {"model": ErrorBody, "description": "body over max_body_bytes"},
        422: {"model": ErrorBody, "description": "input outside the schema or the model's limits"}}

    app = FastAPI(title="domainbert", version=__version__,
                  description="Fill-mask, NER, classification and embeddings with domain-specific BERT models.")
    app.add_middleware(_BodyGuard, max_bytes=limits.max_body_bytes)
    app.state.models = models
    app.state.limits = limits

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Built by hand: FastAPI's default echoes the input, which may be bytes it cannot encode.
        details = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))} for e in exc.errors()]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "body"
        message = f"{where}: {first['msg']}"
        if first.get("type") == "string_pattern_mismatch":
            message = f"{where}: a text must hold at least one non-space character"
        if first.get("type") == "json_invalid":
            message = "the body is not valid JSON: send a JSON object such as {\"texts\": [\"...\"]}"
        return JSONResponse({"message": message, "detail": details}, status_code=422)

    @app.exception_handler(InputError)
    async def _bad_input(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"message": str(exc), "detail": str(exc)}, status_code=422)

    def need(kind: str) -> Any:
        predictor = getattr(models, kind)
        if predictor is None:
            hint = {"fill_mask": models.fill_mask_reason,
                    "ner": "start the server with --ner-model DIR (a model from "
                           "`domainbert finetune --task ncbi-disease`)",
                    "classify": "start the server with --classify-model DIR (a fine-tuned sequence classifier)",
                    "embed": "start the server with --model DIR"}[kind]
            raise HTTPException(404, detail=f"no {kind.replace('_', '-')} model is loaded: {hint}")
        return predictor

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"message": str(exc.detail), "detail": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page_html())

    @app.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Which models this server holds (their directories) and the request limits."""
        def where(p: Any) -> str | None:
            return str(p.model_dir) if p is not None else None
        return {"status": "ok", "version": __version__,
                "models": {"fill_mask": where(models.fill_mask), "ner": where(models.ner),
                           "classify": where(models.classify), "embed": where(models.embed)},
                "limits": asdict(limits)}

    @app.post("/fill-mask", response_model=FillMaskResponse, responses=errors)
    def fill_mask(req: FillMaskRequest) -> dict[str, Any]:
        """Top-k tokens (softmax scores) for each [MASK] of each text."""
        return {"results": need("fill_mask")(req.texts, top_k=req.top_k)}

    @app.post("/ner", response_model=NerResponse, responses=errors)
    def ner(req: NerRequest) -> dict[str, Any]:
        """Entities with character offsets; texts longer than the model reads are windowed."""
        return {"results": [{"entities": e} for e in need("ner")(req.texts)]}

    @app.post("/classify", response_model=ClassifyResponse, responses=errors, response_model_exclude_none=True)
    def classify(req: ClassifyRequest) -> dict[str, Any]:
        """Labels with scores (single/multi-label) or values (regression) per text or text pair."""
        predictor = need("classify")
        if req.text_pairs is not None and len(req.text_pairs) != len(req.texts):
            raise InputError(f"{len(req.texts)} texts but {len(req.text_pairs)} text_pairs: "
                             "give one pair (or null) per text")
        return {"results": predictor(req.texts, req.text_pairs), "problem_type": predictor.problem_type}

    @app.post("/embed", response_model=EmbedResponse, responses=errors)
    def embed(req: EmbedRequest) -> dict[str, Any]:
        """One vector per text: masked mean of the last layer, or the [CLS] vector."""
        vectors = need("embed")(req.texts, pooling=req.pooling, normalize=req.normalize)
        return {"embeddings": vectors.tolist(), "dim": vectors.shape[1], "pooling": req.pooling}

    return app


# ==================================================================================== command line
def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535")
    return port


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model for /fill-mask (needs its MLM head) and /embed: a directory or a "
                        "Hugging Face Hub repo id")
    parser.add_argument("--ner-model", help="fine-tuned token-classification model for /ner (directory or Hub id)")
    parser.add_argument("--classify-model", help="fine-tuned sequence classifier for /classify (directory or Hub id)")
    add_revision_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on (1-65535)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="bf16 autocast where native (auto), or forced")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass")
    defaults = Limits()
    parser.add_argument("--max-text-chars", type=int, default=defaults.max_text_chars, help="characters per text")
    parser.add_argument("--max-batch", type=int, default=defaults.max_batch, help="texts per request")
    parser.add_argument("--max-body-bytes", type=int, default=defaults.max_body_bytes, help="bytes per request body")


def run(args: argparse.Namespace) -> int:
    if args.model is None and args.ner_model is None and args.classify_model is None:
        raise ConfigError("no model to serve: pass --model DIR (and/or --ner-model DIR, --classify-model DIR)")
    _check_port(args.host, args.port)
    limits = Limits(max_text_chars=args.max_text_chars, max_batch=args.max_batch,
                    max_body_bytes=args.max_body_bytes)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # --revision is for the Hub ids among the three; a directory beside them keeps its files
    model, ner_model, classify_model = (
        None if value is None else resolve_model(value, None if Path(value).is_dir() else args.revision).path
        for value in (args.model, args.ner_model, args.classify_model))
    app = create_app(model, ner_model, classify_model, limits=limits, device=args.device,
                     precision=args.precision, batch_size=args.batch_size)
    loaded = [k for k, v in app.state.models.__dict__.items() if v is not None and not k.endswith("reason")]
    print(f"domainbert serve: {', '.join(loaded)} on http://{args.host}:{args.port}/ "
          f"(API schema: /openapi.json)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port(host: str, port: int) -> None:
    """Fail with a one-line message (not uvicorn's exit) when the address cannot be bound."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise DomainBertError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port "
                              "or --host") from None
