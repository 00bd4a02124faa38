"""One door to a server's HTTP API off the measured path: /health, /v1/models, /tokenize, /metrics
and /version, each with a timeout of its own name.

Every request goes on a new connection: a health check that met a stale pooled connection would
call a live server dead, and nothing here should leave idle connections beside the measured ones.
`ServerAPI` is the asynchronous door (the run: prompt building, samplers, the health watch);
`models`, `health_ok` and `only_model` are the same answers, read the same way, for synchronous
callers (the server lifecycle's watcher thread, the command line). This module owns what those
answers must look like and says, in a `ServerAPIError`, what a wrong one was. Measured requests are
`bench.wire`'s; this module knows nothing about benchmarks.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import TracebackType

import aiohttp

from showcase.errors import UserError

CONNECT_TIMEOUT_S = 10.0
HEALTH_TIMEOUT_S = 3.0  # a live server answers /health at once; no answer this long is a paused or swamped one
MODELS_TIMEOUT_S = 10.0
TOKENIZE_TIMEOUT_S = 30.0  # a 256K-token prompt takes seconds to tokenize on a busy CPU
METRICS_TIMEOUT_S = 5.0
VERSION_TIMEOUT_S = 5.0
MAX_MODELS_BYTES = 2**20
MAX_METRICS_BYTES = 8 * 2**20  # a /metrics body beyond this is no vLLM's (its own are tens of kB)
MAX_TOKENIZE_BYTES = 64 * 2**20  # the token ids of a 16M-token prompt
ERROR_CHARS = 300  # of a wrong answer, quoted in the error


class ServerAPIError(UserError):
    """The server could not be reached, or answered what its API never does; the message names the
    route and what came back."""


@dataclass(frozen=True)
class Model:
    """One entry of /v1/models."""

    id: str
    max_model_len: int | None


def parse_models(url: str, data: object, model: str | None = None) -> list[Model]:
    """The models of a /v1/models answer; entries without a name are left out, and a length that
    is no length is refused for `model` (the one a run is for) and unknown (None) for the others."""
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(m, dict) for m in entries):
        raise ServerAPIError(f"{url} answered no list of models: {str(data)[:ERROR_CHARS]}")
    out = []
    for m in entries:
        name, length = m.get("id"), m.get("max_model_len")
        if not isinstance(name, str) or not name:
            continue
        if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 1):
            if name == model:
                raise ServerAPIError(f"{url} gives {name!r} a max_model_len of {length!r}, not a length")
            length = None
        out.append(Model(name, length))
    return out


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


# -- synchronous: the server lifecycle and the command line --------------------------------------


def health_ok(base_url: str) -> bool:
    """Whether /health answers 200 within `HEALTH_TIMEOUT_S`."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=HEALTH_TIMEOUT_S) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def models(base_url: str, api_key: str) -> list[Model]:
    """The server's /v1/models (`ServerAPIError` when it cannot be reached or answers no list)."""
    url = f"{base_url}/v1/models"
    req = urllib.request.Request(url, headers=_headers(api_key))
    try:
        with urllib.request.urlopen(req, timeout=MODELS_TIMEOUT_S) as resp:
            data = json.loads(resp.read(MAX_MODELS_BYTES))
    except (OSError, ValueError, urllib.error.URLError) as exc:
        raise ServerAPIError(f"Cannot reach the server at {base_url} to ask which model it serves: {exc}") from exc
    return parse_models(url, data)


def only_model(base_url: str, api_key: str) -> str:
    """The one model a server serves (as `vllm bench serve` takes it); refused when it serves
    none or several, naming them."""
    try:
        names = [m.id for m in models(base_url, api_key)]
    except ServerAPIError as exc:
        if "no list of models" not in str(exc):
            raise
        raise ServerAPIError(f"{exc}; say which model with --model.") from exc
    if len(names) != 1:
        raise ServerAPIError(f"{base_url} serves {', '.join(names) or 'no model'}: say which with --model.")
    return names[0]


# -- asynchronous: the run -----------------------------------------------------------------------


class ServerAPI:
    """The server's API for a run, over a session that opens a new connection for every request.
    Use as `async with ServerAPI(base_url, api_key) as api:`."""

    def __init__(self, base_url: str, api_key: str = "EMPTY", metrics_url: str | None = None) -> None:
        self.base_url, self.api_key = base_url, api_key
        self.metrics_url = metrics_url or f"{base_url}/metrics"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ServerAPI:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=32),
            timeout=aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT_S))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("ServerAPI is used inside `async with`")
        return self._session

    async def health(self) -> bool | str | None:
        """True/False for a vLLM /health (False: refused, or an error); None when the server has no
        such route; "silent" when it did not answer within `HEALTH_TIMEOUT_S` (paused or swamped,
        not yet dead)."""
        try:
            async with self.session.get(f"{self.base_url}/health",
                                        timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)) as resp:
                return None if resp.status == 404 else resp.status == 200
        except TimeoutError:
            return "silent"
        except aiohttp.ClientError:
            return False

    async def models(self, model: str | None = None) -> list[Model]:
        """/v1/models (see `parse_models` for `model`)."""
        url = f"{self.base_url}/v1/models"
        try:
            async with self.session.get(url, headers=_headers(self.api_key),
                                        timeout=aiohttp.ClientTimeout(total=MODELS_TIMEOUT_S)) as resp:
                if resp.status != 200:
                    raise ServerAPIError(f"{url} answered HTTP {resp.status}")
                data = json.loads(await capped_body(resp, MAX_MODELS_BYTES) or b"null")
        except TimeoutError as exc:
            raise ServerAPIError(f"{url} did not answer within {MODELS_TIMEOUT_S:g} s.") from exc
        except (aiohttp.ClientError, ValueError, UnicodeDecodeError) as exc:
            raise ServerAPIError(f"Cannot reach the server at {self.base_url}: {exc}") from exc
        return parse_models(url, data, model)

    async def max_model_len(self, model: str) -> int | None:
        """The served model's context length (None where the server does not say); refused when
        the server does not serve `model`."""
        served = await self.models(model)
        for m in served:
            if m.id == model:
                return m.max_model_len
        names = ", ".join(m.id for m in served)
        raise ServerAPIError(f"The server does not serve {model!r} (it serves: {names or 'nothing'}).")

    async def tokenize(self, model: str, **body: object) -> int:
        """The token count /tokenize answers for `body` (a prompt or chat messages)."""
        try:
            async with self.session.post(f"{self.base_url}/tokenize", json={"model": model, **body},
                                         headers=_headers(self.api_key),
                                         timeout=aiohttp.ClientTimeout(total=TOKENIZE_TIMEOUT_S)) as resp:
                if resp.status != 200:
                    text = (await resp.content.read(4 * ERROR_CHARS)).decode("utf-8", "replace")
                    raise ServerAPIError(f"The server's /tokenize answered HTTP {resp.status}: {text[:ERROR_CHARS]}")
                data = json.loads(await capped_body(resp, MAX_TOKENIZE_BYTES) or b"null")
        except TimeoutError as exc:
            raise ServerAPIError(f"The server's /tokenize did not answer within {TOKENIZE_TIMEOUT_S:g} s.") from exc
        except aiohttp.ClientError as exc:
            raise ServerAPIError(f"Cannot reach the server's /tokenize: {exc}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ServerAPIError(f"The server's /tokenize answered something that is not JSON ({exc}).") from exc
        count = data.get("count") if isinstance(data, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ServerAPIError(f"The server's /tokenize answered without a token count: {str(data)[:ERROR_CHARS]}")
        return count

    async def metrics(self) -> tuple[int, bytes | None]:
        """GET /metrics (or the engine's own, `metrics_url`): its status and body (b"" unless 200;
        None when longer than `MAX_METRICS_BYTES`). Raises aiohttp's errors and TimeoutError."""
        async with self.session.get(self.metrics_url, headers=_headers(self.api_key),
                                    timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT_S)) as resp:
            return resp.status, await capped_body(resp, MAX_METRICS_BYTES) if resp.status == 200 else b""

    async def version(self) -> str | None:
        """The server's vLLM version; None when it does not say (another server, a router, no answer)."""
        try:
            async with self.session.get(f"{self.base_url}/version", headers=_headers(self.api_key),
                                        timeout=aiohttp.ClientTimeout(total=VERSION_TIMEOUT_S)) as resp:
                data = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, ValueError, TimeoutError):
            return None
        version = data.get("version") if isinstance(data, dict) else None
        return str(version)[:100] if version is not None else None


async def capped_body(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The whole body, or None when it is longer than `cap` bytes (read no further). Not
    `content.read(cap)`: that returns what has arrived so far, which for a body of many TCP
    segments is a part of it."""
    parts, size = [], 0
    async for chunk in resp.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
    return b"".join(parts)
