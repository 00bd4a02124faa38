"""The vLLM server: its command line and cores, and its lifecycle.

This module owns the vLLM process: its command line, built only from typed `ServerSettings`
(`showcase.settings`; no free-form flags, no shell); the cores it runs on without a GPU (`CoreSplit`); its start on
127.0.0.1 with a free port and a random API key; its log file; its state (starting, ready,
failed, stopped); restarts; and its stop (SIGTERM to the whole process group, then SIGKILL). It
also attaches to an already running OpenAI-compatible endpoint instead of launching one.
`ServerHandle` is what the rest of the code may use of a server (the app's coordinator and
its test fake both keep to it).

It knows nothing about the UI, measuring or presets; where weights come from is `sources`.
"""

from __future__ import annotations

import atexit
import enum
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from showcase import api, sources
from showcase.cores import CoreSplit
from showcase.errors import UserError
from showcase.processes import STOP_GRACE_S, explain_exit, log_tail, terminate_group, watchdog_command
from showcase.settings import ServerSettings, SettingsError

LOG_DIR = Path(os.environ.get("SHOWCASE_LOG_DIR", Path.home() / ".cache" / "vllm-showcase" / "logs"))
READY_MARGIN_S = 60.0  # a caller waiting for a (re)start allows the server's own deadline plus this
RESTART_BACKOFF_S = (2.0, 10.0, 30.0)  # waits before each automatic restart of a died server; then it stays failed
STABLE_S = 120.0  # a server that served this long before it died starts its count of restarts afresh


class ServerError(UserError):
    """Base of the server's errors; the message is written for the person using the app."""


class ServerNotReady(ServerError):
    """The server is starting, failed or stopped; the message says which."""


# -- settings and the command line -------------------------------------------------------------


def build_command(settings: ServerSettings, port: int, python: str = sys.executable) -> list[str]:
    """The argv that starts vLLM's OpenAI server; a list, never a shell string. The API key is not
    on it (any local user can read a command line): vLLM reads it from `VLLM_API_KEY`."""
    s = settings
    cmd = [
        python, "-m", "vllm.entrypoints.openai.api_server",
        "--model", s.model, "--served-model-name", s.served_model_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", s.dtype, "--kv-cache-dtype", s.kv_cache_dtype, "--load-format", s.load_format,
        "--tensor-parallel-size", str(s.tensor_parallel_size),
    ]
    if s.max_model_len is not None:
        cmd += ["--max-model-len", str(s.max_model_len)]
    if s.max_num_seqs is not None:
        cmd += ["--max-num-seqs", str(s.max_num_seqs)]
    if s.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
    if s.quantization is not None:
        cmd += ["--quantization", s.quantization]
    for flag, value in (("chunked-prefill", s.enable_chunked_prefill), ("prefix-caching", s.enable_prefix_caching)):
        if value is not None:
            cmd.append(f"--enable-{flag}" if value else f"--no-enable-{flag}")
    if s.enforce_eager:
        cmd.append("--enforce-eager")
    if s.enable_prompt_tokens_details:
        cmd.append("--enable-prompt-tokens-details")
    if s.reasoning_parser is not None:
        cmd += ["--reasoning-parser", s.reasoning_parser]
    return cmd


def server_env(device: sources.Device, base: dict[str, str] | None = None,
               split: CoreSplit | None = None, api_key: str | None = None) -> dict[str, str]:
    """The environment for vLLM: its API key, no usage reports; on a CPU a small, fixed KV cache and its cores."""
    env = dict(os.environ if base is None else base)
    if api_key is not None:
        env["VLLM_API_KEY"] = api_key
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("VLLM_DO_NOT_TRACK", "1")
    if not device.is_gpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes a share of all RAM
        if split is not None:
            env["VLLM_CPU_OMP_THREADS_BIND"] = CoreSplit.listing(split.server)
    return env


def server_launch(cmd: list[str], device: sources.Device,
                  api_key: str | None = None) -> tuple[list[str], dict[str, str], str]:
    """The argv and environment that launch vLLM on this device, and a line for its log.

    Without a GPU the whole server (API server, engine core, worker) runs under `taskset` on the
    server's cores of `CoreSplit`; with a GPU nothing is pinned.
    """
    split = None if device.is_gpu else CoreSplit.of()
    if split is None:
        why = "a GPU serves" if device.is_gpu else "a single core"
        return cmd, server_env(device, api_key=api_key), f"# cores: not pinned ({why})"
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SettingsError("taskset (util-linux) is needed to keep vLLM-CPU off the load generator's core; "
                            "install util-linux.")
    cores = CoreSplit.listing(split.server)
    note = f"# cores: vLLM on {cores}, load generator on {CoreSplit.listing(split.client)}"
    return [taskset, "-c", cores, *cmd], server_env(device, split=split, api_key=api_key), note


def new_api_key() -> str:
    """A random key; the prefix keeps it from starting with '-', which argparse would read as a flag."""
    return "sk-" + secrets.token_urlsafe(24)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


# -- the server's lifecycle --------------------------------------------------------------------


class State(str, enum.Enum):
    STOPPED = "stopped"    # nothing launched, or stopped on purpose
    STARTING = "starting"  # downloading weights or loading; /health not yet answering
    READY = "ready"        # /health answers 200 and the model is listed
    FAILED = "failed"      # the process exited, the deadline passed, or the download failed


@dataclass(frozen=True)
class Status:
    """A snapshot for the UI: what state, why, and the last lines of the log."""

    state: State
    message: str
    model: str
    device: str
    warning: str = ""
    log_tail: tuple[str, ...] = ()
    base_url: str = ""
    log_path: str = ""
    settings: ServerSettings | None = None


class VLLMServer:
    """One vLLM server process, or an attached endpoint, with an explicit lifecycle.

    `start()` returns at once; a supervisor thread downloads weights if needed, launches the
    process, waits for /health and then watches for the process to exit. `stop()` runs at exit;
    if the app dies without running it, the launch's watchdog process ends vLLM's group.
    """

    def __init__(
        self,
        device: sources.Device,
        source: sources.ModelSource | None = None,
        *,
        endpoint: str | None = None,
        api_key: str | None = None,
        ready_timeout_s: float = 900.0,
        log_dir: Path = LOG_DIR,
        port: int | None = None,
    ) -> None:
        self.device = device
        self.source = source
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.ready_timeout_s = ready_timeout_s
        self.log_dir = log_dir
        self.fixed_port = port
        self._api_key = api_key if endpoint else new_api_key()
        self.auto_restart = endpoint is None  # a launched server that dies is started again by itself
        self._lock = threading.RLock()
        self._proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._generation = 0  # bumps on every start/stop so a stale supervisor stands down
        self._state = State.STOPPED
        self._message = "not started"
        self._port: int | None = None
        self._log_path: Path | None = None
        self._settings: ServerSettings | None = None
        self._launch_settings: ServerSettings | None = None  # the first start's: what presets apply to
        self._served_name = source.served_name if source else ""
        self._max_model_len: int | None = None
        atexit.register(self.stop)

    # -- what callers read ----------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._api_key or "EMPTY"

    @property
    def base_url(self) -> str:
        if self.endpoint:
            return self.endpoint
        return f"http://127.0.0.1:{self._port}" if self._port else ""

    @property
    def served_model_name(self) -> str:
        return self._served_name

    @property
    def settings(self) -> ServerSettings | None:
        """What the server runs with now (None for an attached endpoint)."""
        return self._settings

    @property
    def launch_settings(self) -> ServerSettings | None:
        """The launch defaults: the settings of the first start. A preset's server is these plus
        its own fields, never the previous preset's settings plus them."""
        return self._launch_settings

    @property
    def state(self) -> State:
        return self._state

    @property
    def max_model_len(self) -> int | None:
        return self._max_model_len

    @property
    def pid(self) -> int | None:
        """The launched process's pid, which is also its process group id."""
        proc = self._proc
        return proc.pid if proc is not None else None

    def status(self) -> Status:
        with self._lock:
            tail = log_tail(self._log_path) if self._log_path else ()
            return Status(
                state=self._state, message=self._message,
                model=self._served_name or (self.endpoint or ""),
                device=self.device.name if self.device.is_gpu else "cpu",
                warning=self.source.warning if self.source else "",
                log_tail=tail, base_url=self.base_url,
                log_path=str(self._log_path or ""), settings=self._settings,
            )

    def require_ready(self) -> str:
        """The base URL, or `ServerNotReady` saying why there is none."""
        status = self.status()
        if status.state is not State.READY:
            raise ServerNotReady(f"The model server is {status.state.value}: {status.message}")
        return status.base_url

    def wait_for(self, states: tuple[State, ...], timeout_s: float) -> Status:
        """Block until the state is one of `states` or the timeout passes; the status then."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.status()
            if status.state in states:
                return status
            time.sleep(0.2)
        return self.status()

    def wait_ready(self, timeout_s: float) -> Status:
        """Block until the start settles: ready, failed or stopped."""
        return self.wait_for((State.READY, State.FAILED, State.STOPPED), timeout_s)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, settings: ServerSettings | None = None) -> None:
        """Launch (or attach) in the background; the state says how it goes."""
        with self._lock:
            self._stop_locked()
            self._generation += 1
            generation = self._generation
            if self.endpoint:
                self._set(State.STARTING, f"connecting to {self.endpoint}", generation)
                target: Callable[..., None] = self._watch_endpoint
                args: tuple = (generation,)
            else:
                if settings is None:
                    raise SettingsError("a launched server needs settings")
                self._settings = settings
                self._launch_settings = self._launch_settings or settings
                self._served_name = settings.served_model_name
                self._set(State.STARTING, "preparing the model", generation)
                target, args = self._supervise, (settings, generation)
        threading.Thread(target=target, args=args, name="vllm-supervisor", daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            self._generation += 1
            self._stop_locked()
            self._state, self._message = State.STOPPED, "stopped"

    def _stop_locked(self) -> None:
        proc, self._proc = self._proc, None
        watchdog, self._watchdog = self._watchdog, None
        self._max_model_len = None
        if proc is not None:
            terminate_group(proc)
        if watchdog is not None and watchdog.stdin is not None:  # closing its pipe lets it exit; the group is gone
            watchdog.stdin.close()
            watchdog.wait(timeout=STOP_GRACE_S)

    def _set(self, state: State, message: str, generation: int) -> bool:
        with self._lock:
            if generation != self._generation:
                return False
            self._state, self._message = state, message
            return True

    # -- supervisor threads ---------------------------------------------------------------------

    def _supervise(self, settings: ServerSettings, generation: int) -> None:
        """Prepare the model, launch vLLM, then follow it: ready once it answers; when it dies, started
        again after a back-off (`RESTART_BACKOFF_S`), and failed once the restarts are spent."""
        attempt = 0
        while True:
            try:
                model_path = self._model_path(settings, generation)
                port = self.fixed_port or free_port()
                if port_is_taken(port):
                    raise SettingsError(f"Port {port} is already in use by another program; choose another port.")
                proc, log_path = self._launch(replace(settings, model=model_path), port, generation)
            except UserError as exc:
                self._set(State.FAILED, str(exc), generation)
                return
            ended = self._follow(proc, log_path, f"http://127.0.0.1:{port}", settings.served_model_name,
                                 generation) if proc is not None else None
            if ended is None:  # superseded by a newer start or stop, or never ready: said already
                return
            reason, served_s = ended
            attempt = 0 if served_s >= STABLE_S else attempt
            if not self.auto_restart or attempt >= len(RESTART_BACKOFF_S):
                spent = f" It was restarted {attempt} times; an admin can restart it." if attempt else ""
                self._set(State.FAILED, reason + spent, generation)
                return
            wait = RESTART_BACKOFF_S[attempt]
            attempt += 1
            self._set(State.STARTING, f"{reason} Restarting by itself in {wait:.0f} s (attempt {attempt} of "
                                      f"{len(RESTART_BACKOFF_S)}).", generation)
            if not self._pause(wait, generation):
                return

    def _pause(self, seconds: float, generation: int) -> bool:
        """Wait, unless a newer start or stop supersedes this one; whether to go on."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if generation != self._generation:
                return False
            time.sleep(0.2)
        return generation == self._generation

    def _model_path(self, settings: ServerSettings, generation: int) -> str:
        """The folder vLLM loads: downloaded first for a hub id that needs it."""
        if self.source is not None and self.source.needs_download and settings.model == self.source.path:
            def say(msg: str) -> None:
                self._set(State.STARTING, msg, generation)

            return sources.download(settings.model, say,
                                    token=os.environ.get("HF_TOKEN"))
        if settings.model.startswith(("/", ".", "~")) and not Path(settings.model).expanduser().is_dir():
            raise SettingsError(f"The model folder {settings.model} does not exist.")
        return settings.model

    def _launch(self, settings: ServerSettings, port: int, generation: int) -> tuple[subprocess.Popen | None, Path]:
        """Start vLLM and its watchdog, logging to a new file; None when a newer start took over."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"vllm-{time.strftime('%Y%m%d-%H%M%S')}-{port}.log"
        cmd, env, cores_note = server_launch(build_command(settings, port), self.device, self._api_key)
        with self._lock:
            if generation != self._generation:
                return None, log_path
            self._port, self._log_path = port, log_path
            with log_path.open("ab") as log:
                if self.source is not None and self.source.warning:
                    log.write(f"# NOTE: {self.source.warning}\n".encode())
                log.write(f"{cores_note}\n".encode())
                log.write(("$ " + " ".join(cmd) + "\n").encode())
                log.flush()
                try:
                    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True)
                except OSError as exc:
                    raise SettingsError(f"Could not start vLLM: {exc}") from exc
            self._watchdog = subprocess.Popen(watchdog_command(proc.pid), stdin=subprocess.PIPE,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              start_new_session=True)
            self._proc = proc
            self._message = f"loading {settings.served_model_name}"
        return proc, log_path

    def _follow(self, proc: subprocess.Popen, log_path: Path, base_url: str, name: str,
                generation: int) -> tuple[str, float] | None:
        """Until the process exits: (why it exited, how long it had served); None when superseded
        or never ready in time (then failed and stopped)."""
        deadline = time.monotonic() + self.ready_timeout_s
        ready_at = None
        while True:
            code = proc.poll()
            if code is not None:
                with self._lock:
                    if generation == self._generation:
                        self._stop_locked()  # vLLM's engine core can outlive a killed API server
                return explain_exit(code, log_tail(log_path, 40)), time.monotonic() - (ready_at or time.monotonic())
            if generation != self._generation:
                return None
            if ready_at is None:
                if self._probe(base_url, name):
                    ready_at = time.monotonic() if self._set(State.READY, f"serving {name}", generation) else None
                elif time.monotonic() > deadline:
                    self._set(State.FAILED, f"vLLM was not ready after {self.ready_timeout_s:.0f} s.", generation)
                    with self._lock:
                        if generation == self._generation:
                            self._stop_locked()
                    return None
            time.sleep(0.5 if ready_at is None else 1.0)

    def _watch_endpoint(self, generation: int) -> None:
        assert self.endpoint is not None
        while generation == self._generation:
            try:
                ok = self._probe(self.endpoint, None)
            except Exception:
                ok = False
            if ok:
                self._set(State.READY, f"attached to {self.endpoint}", generation)
            else:  # never answered yet: still starting; answered before: failed until it answers again
                was_up = self._state in (State.READY, State.FAILED)
                self._set(State.FAILED if was_up else State.STARTING, f"{self.endpoint} does not answer", generation)
            time.sleep(2.0)

    def _probe(self, base_url: str, expect_model: str | None) -> bool:
        """Ready means /health is 200 and /v1/models (with our key) lists the model.

        Checking the model list too means a stranger's server on a reused port never passes.
        """
        if not api.health_ok(base_url):
            return False
        try:
            data = api.models(base_url, self.api_key)
        except api.ServerAPIError:
            # Any answer at all (no list, entries that are no objects) leaves the watcher running:
            # such a server is simply not ready.
            return False
        names = {m.id: m for m in data}
        if expect_model is None:
            if not names:
                return False
            first = data[0]
            self._served_name = self._served_name or first.id
            self._max_model_len = names.get(self._served_name, first).max_model_len
            return True
        if expect_model not in names:
            return False
        self._max_model_len = names[expect_model].max_model_len
        return True


class ServerHandle(Protocol):
    """What the app and its benchmark slot use of a server; `VLLMServer` and the tests' fake keep to it."""

    device: sources.Device
    source: sources.ModelSource | None
    endpoint: str | None
    ready_timeout_s: float
    log_dir: Path

    @property
    def api_key(self) -> str: ...
    @property
    def served_model_name(self) -> str: ...
    @property
    def settings(self) -> ServerSettings | None: ...
    @property
    def launch_settings(self) -> ServerSettings | None: ...
    def status(self) -> Status: ...
    def start(self, settings: ServerSettings | None = None) -> None: ...
    def stop(self) -> None: ...
    def require_ready(self) -> str: ...
    def wait_ready(self, timeout_s: float) -> Status: ...


# -- default settings ---------------------------------------------------------------------------


def default_settings(source: sources.ModelSource, device: sources.Device) -> ServerSettings:
    """What the app launches when no preset asks for anything else."""
    if not device.is_gpu:
        # The smoke model on a CPU: small context and batch, eager mode starts ~40 s sooner.
        return ServerSettings(
            model=source.path, served_model_name=source.served_name, load_format=source.load_format,
            max_model_len=4096, max_num_seqs=64, enforce_eager=True, dtype="bfloat16",
            enable_prompt_tokens_details=True,
        )
    # Prompt-token details cost nothing to serve and say how much of each prompt the prefix cache answered.
    return ServerSettings(
        model=source.path, served_model_name=source.served_name, load_format=source.load_format,
        max_model_len=32768, gpu_memory_utilization=0.9, enable_prompt_tokens_details=True,
    )


def settings_for(server_part: dict[str, Any], base: ServerSettings, device: sources.Device) -> ServerSettings:
    """`base` with a preset's server fields applied; tensor_parallel_size "all" means every GPU."""
    fields = dict(server_part)
    if fields.get("tensor_parallel_size") == "all":
        fields["tensor_parallel_size"] = max(1, device.count)
    return replace(base, **fields)
