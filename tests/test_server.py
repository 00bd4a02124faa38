"""The vLLM server: its command line, the smoke model, and its lifecycle against real vLLM."""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import openai
import pytest

from showcase import cores, processes, server, sources
from showcase.settings import ServerSettings, SettingsError


def settings(**kw) -> ServerSettings:
    return ServerSettings(model="/m", served_model_name="m", **kw)


# -- the command line --------------------------------------------------------------------------


def test_command_has_module_entry_loopback_key_and_only_typed_flags():
    cmd = server.build_command(settings(), port=9000, python="py")
    assert cmd[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == "9000"
    assert "--api-key" not in cmd  # any local user can read a command line: the key goes in the environment
    _, env, _ = server.server_launch(cmd, sources.Device("cpu", "cpu"), "secret")
    assert env["VLLM_API_KEY"] == "secret"
    for absent in ("--max-model-len", "--max-num-seqs", "--gpu-memory-utilization", "--quantization",
                   "--enforce-eager", "--enable-chunked-prefill", "--enable-prefix-caching"):
        assert absent not in cmd  # None means vLLM's own default: say nothing


def test_api_keys_never_look_like_a_flag():
    keys = {server.new_api_key() for _ in range(2000)}
    assert len(keys) == 2000 and not any(k.startswith("-") for k in keys)


def test_command_maps_every_setting():
    s = settings(max_model_len=8192, max_num_seqs=8, enable_chunked_prefill=True, enable_prefix_caching=False,
                 gpu_memory_utilization=0.85, tensor_parallel_size=2, dtype="bfloat16", kv_cache_dtype="fp8",
                 quantization="awq", load_format="dummy", enforce_eager=True)
    cmd = server.build_command(s, 1, python="py")
    pairs = {cmd[i]: cmd[i + 1] for i in range(len(cmd) - 1)}
    assert pairs["--max-model-len"] == "8192"
    assert pairs["--max-num-seqs"] == "8"
    assert pairs["--gpu-memory-utilization"] == "0.85"
    assert pairs["--tensor-parallel-size"] == "2"
    assert pairs["--dtype"] == "bfloat16"
    assert pairs["--kv-cache-dtype"] == "fp8"
    assert pairs["--quantization"] == "awq"
    assert pairs["--load-format"] == "dummy"
    assert "--enable-chunked-prefill" in cmd and "--no-enable-prefix-caching" in cmd and "--enforce-eager" in cmd


@pytest.mark.parametrize("kw, field", [
    ({"max_model_len": 0}, "max_model_len"),
    ({"max_num_seqs": -1}, "max_num_seqs"),
    ({"tensor_parallel_size": 1.5}, "tensor_parallel_size"),
    ({"gpu_memory_utilization": 1.2}, "gpu_memory_utilization"),
    ({"dtype": "int3"}, "dtype"),
    ({"kv_cache_dtype": "--evil"}, "kv_cache_dtype"),
    ({"quantization": "; rm -rf /"}, "quantization"),
    ({"load_format": "pickle"}, "load_format"),
])
def test_invalid_settings_are_refused_naming_the_field(kw, field):
    with pytest.raises(SettingsError, match=field):
        settings(**kw)


def test_cpu_environment_keeps_kv_cache_small_and_reports_nothing():
    env = server.server_env(sources.Device("cpu", "cpu"), base={})
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_CPU_KVCACHE_SPACE" not in server.server_env(sources.Device("cuda", "A10G", 1), base={})


@pytest.mark.parametrize("available, vllm_cores, client_cores", [
    ({0, 1}, (0,), (1,)),
    (set(range(16)), tuple(range(12)), (12, 13, 14, 15)),
    ({2, 5, 7}, (2, 5), (7,)),
])
def test_cores_are_split_between_vllm_and_the_load_generator(available, vllm_cores, client_cores):
    split = cores.CoreSplit.of(available)
    assert (split.server, split.client) == (vllm_cores, client_cores)
    assert cores.CoreSplit.of({0}) is None  # one core: nothing to split


def test_a_cpu_server_is_launched_on_its_own_cores_and_a_gpu_server_is_not(monkeypatch):
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda pid: {0, 1})
    cmd, env, note = server.server_launch(["python", "-m", "vllm"], sources.Device("cpu", "cpu"))
    assert cmd[1:4] == ["-c", "0", "python"] and cmd[0].endswith("taskset")
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0" and "load generator on 1" in note
    cmd, env, note = server.server_launch(["python", "-m", "vllm"], sources.Device("cuda", "H100", 1))
    assert cmd == ["python", "-m", "vllm"] and "VLLM_CPU_OMP_THREADS_BIND" not in env and "not pinned" in note


# -- where the model comes from ------------------------------------------------------------------


def test_smoke_model_is_assembled_from_the_packaged_tokenizer(tmp_path):
    source = sources.resolve(None, "real", sources.Device("cpu", "cpu"), cache_dir=tmp_path)
    folder = tmp_path / sources.SMOKE_NAME
    assert source.path == str(folder) and source.is_smoke and source.load_format == "dummy"
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["vocab_size"] == 151936
    vocab = json.loads((folder / "vocab.json").read_text())
    assert len(vocab) > 150_000  # the real Qwen3 vocabulary, not a toy one
    assert "im_start" in (folder / "tokenizer_config.json").read_text()  # the chat template came along
    assert "gibberish" in source.warning and "CPU" in source.warning


def test_smoke_model_folder_is_rebuilt_when_its_config_changed(tmp_path):
    device = sources.Device("cpu", "cpu")
    folder = sources.assemble(sources.ASSETS / sources.SMOKE_NAME, tmp_path)
    (folder / "config.json").write_text("{}")
    sources.resolve(None, "real", device, cache_dir=tmp_path)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "qwen3"


def test_gpu_defaults_and_dummy_weights(tmp_path):
    gpu = sources.Device("cuda", "NVIDIA A10G", 1)
    real = sources.resolve(None, "real", gpu, cache_dir=tmp_path)
    assert real.path == sources.DEFAULT_GPU_MODEL and real.needs_download and real.load_format == "auto"
    dummy = sources.resolve(None, "dummy", gpu, cache_dir=tmp_path)
    assert not dummy.needs_download and dummy.load_format == "dummy"
    assert json.loads((tmp_path / sources.DUMMY_4B_NAME / "config.json").read_text())["num_hidden_layers"] == 36
    hub_dummy = sources.resolve("org/model", "dummy", gpu, cache_dir=tmp_path)
    assert hub_dummy.load_format == "dummy" and not hub_dummy.needs_download


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(sources.ModelSourceError, match="does not exist"):
        sources.resolve(str(tmp_path / "nowhere"), "real", sources.Device("cpu", "cpu"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.ModelSourceError, match="no config.json"):
        sources.resolve(str(tmp_path / "empty"), "real", sources.Device("cpu", "cpu"))


def test_device_without_nvidia_smi_is_the_cpu():
    assert sources.detect_device("no-such-nvidia-smi") == sources.Device("cpu", "cpu")


def test_download_without_network_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub as hf
    from huggingface_hub import errors

    def offline(*a, **k):
        raise errors.LocalEntryNotFoundError("no connection")

    monkeypatch.setattr(hf, "snapshot_download", offline)
    with pytest.raises(sources.ModelSourceError, match="Could not reach the model hub"):
        sources.download("Qwen/Qwen3-4B-Instruct-2507", lambda m: None)


@pytest.mark.parametrize("error, expected", [
    ("gated", "gated repository"),
    ("notfound", "not found on the hub"),
    ("full", "disk is full"),
])
def test_download_errors_are_named(monkeypatch, error, expected):
    import errno

    import httpx
    import huggingface_hub as hf
    from huggingface_hub import errors

    response = httpx.Response(403, request=httpx.Request("GET", "https://hub/x"))

    def fail(*a, **k):
        if error == "gated":
            raise errors.GatedRepoError("gated", response=response)
        if error == "notfound":
            raise errors.RepositoryNotFoundError("404", response=response)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hf, "snapshot_download", fail)
    with pytest.raises(sources.ModelSourceError, match=expected):
        sources.download("Qwen/Qwen3-4B-Instruct-2507", lambda m: None)


# -- lifecycle against the real server -------------------------------------------------------------


def test_shared_server_is_ready_and_answers_through_the_openai_sdk(vllm_server):
    status = vllm_server.status()
    assert status.state is server.State.READY and status.base_url.startswith("http://127.0.0.1:")
    client = openai.OpenAI(base_url=status.base_url + "/v1", api_key=vllm_server.api_key, max_retries=0)
    reply = client.chat.completions.create(
        model=vllm_server.served_model_name, messages=[{"role": "user", "content": "Hello"}],
        max_tokens=8, extra_body={"ignore_eos": True},
    )
    assert reply.usage.completion_tokens == 8 and reply.choices[0].message.content
    assert vllm_server.max_model_len == 4096
    log = Path(status.log_path).read_text()
    assert "NOTE: CPU smoke model" in log and "gibberish" in log  # the log says it plainly too
    assert vllm_server.api_key not in log  # the key is masked in the logged command line


def test_the_shared_server_runs_only_on_its_own_cores(vllm_server):
    import psutil

    split = cores.CoreSplit.of()
    group = [p for p in psutil.process_iter() if _pgid(p.pid) == vllm_server.pid]
    assert len(group) >= 2  # the API server and its engine processes
    for proc in group:
        assert tuple(sorted(proc.cpu_affinity())) == split.server, proc.cmdline()[:3]


def _pgid(pid: int) -> int | None:
    try:
        return server.os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_server_refuses_requests_without_its_api_key(vllm_server):
    client = openai.OpenAI(base_url=vllm_server.base_url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_missing_model_folder_fails_at_once(device, tmp_path):
    srv = server.VLLMServer(device, log_dir=tmp_path)
    srv.start(ServerSettings(model=str(tmp_path / "nowhere"), served_model_name="x"))
    status = srv.wait_ready(10)
    assert status.state is server.State.FAILED and "does not exist" in status.message


@pytest.mark.vllm
def test_port_already_taken_fails_with_a_clear_message(device, model_cache, tmp_path):
    source = sources.resolve(None, "real", device, cache_dir=model_cache)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        srv = server.VLLMServer(device, source, log_dir=tmp_path, port=port)
        srv.start(server.default_settings(source, device))
        status = srv.wait_ready(10)
    assert status.state is server.State.FAILED and f"Port {port} is already in use" in status.message


@pytest.mark.vllm
def test_a_server_killed_mid_chat_comes_back_by_itself_and_the_chat_answers_again(device, model_cache, tmp_path):
    import asyncio

    from showcase import chat

    source = sources.resolve(None, "real", device, cache_dir=model_cache)
    srv = server.VLLMServer(device, source, log_dir=tmp_path)
    srv.start(server.default_settings(source, device))
    assert srv.wait_ready(600).state is server.State.READY
    pgid = srv.pid

    async def ask(kill: bool) -> str:
        text = ""
        async for text, _, _ in chat.stream_reply(srv.base_url, srv.api_key, srv.served_model_name,
                                               [{"role": "user", "content": "Tell me a long story"}],
                                               chat.Sampling(max_tokens=2000)):
            if kill and text:
                os.kill(pgid, signal.SIGKILL)  # mid-stream
        return text

    with pytest.raises(chat.ChatError):
        asyncio.run(ask(kill=True))
    status = srv.wait_for((server.State.STARTING, server.State.FAILED), 20)
    assert status.state is server.State.STARTING and "exited (code -9)" in status.message
    assert "Restarting by itself" in status.message and "attempt 1 of" in status.message
    with pytest.raises(server.ServerNotReady, match="starting"):
        srv.require_ready()
    assert not processes.group_alive(pgid)  # the dead server's engine processes went with it
    assert srv.wait_ready(600).state is server.State.READY and srv.pid != pgid
    assert asyncio.run(ask(kill=False))  # the chat answers again, nothing restarted by hand
    new = srv.pid
    srv.stop()
    assert not processes.group_alive(new)


def test_a_server_that_keeps_dying_is_restarted_a_few_times_then_failed(device, monkeypatch, tmp_path):
    # The supervisor's policy alone, with the process faked: it dies at once every time.
    monkeypatch.setattr(server, "RESTART_BACKOFF_S", (0.05, 0.05))
    launches = []

    def launch(self, settings, port, generation):
        launches.append(port)
        return object(), tmp_path / "log"

    monkeypatch.setattr(server.VLLMServer, "_launch", launch)
    monkeypatch.setattr(server.VLLMServer, "_follow", lambda self, *a: ("vLLM exited (code 1).", 0.0))
    srv = server.VLLMServer(device, sources.ModelSource(str(tmp_path), "m", "dummy"), log_dir=tmp_path)
    srv.start(ServerSettings(model=str(tmp_path), served_model_name="m"))
    status = srv.wait_for((server.State.FAILED,), 10)
    assert status.state is server.State.FAILED and len(launches) == 3
    assert "restarted 2 times; an admin can restart it" in status.message


def test_attaching_to_an_endpoint_launches_nothing_and_follows_it(device, stub):
    url = stub()
    srv = server.VLLMServer(device, endpoint=url + "/", api_key="k")
    srv.start()
    status = srv.wait_ready(10)
    assert status.state is server.State.READY and status.base_url == url and srv.pid is None
    assert srv.served_model_name == "stub" and srv.max_model_len == 1_048_576  # the stub's context
    stub.procs[0].kill()
    status = srv.wait_for((server.State.FAILED,), 10)
    assert status.state is server.State.FAILED and "does not answer" in status.message
    srv.stop()
