"""The chat's streaming against the stub server: updates, stats, stop, and sharing the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import server_metric

from showcase import chat

HELLO = [{"role": "user", "content": "hello"}]


async def collect(url: str, max_tokens: int, interval_s: float) -> list[tuple[float, str, chat.ReplyStats | None]]:
    out = []
    async for text, stats, _ in chat.stream_reply(url, "key", "stub", HELLO, chat.Sampling(max_tokens=max_tokens),
                                               update_interval_s=interval_s):
        out.append((time.perf_counter(), text, stats))
    return out


def test_first_token_at_once_then_updates_at_most_once_per_interval(stub):
    url = stub(ttft_ms=100, itl_ms=10)

    async def warm_then_collect() -> tuple[float, list]:
        await collect(url, 1, interval_s=0.2)  # the SDK's client and its first imports: not what is timed
        start = time.perf_counter()
        return start, await collect(url, 100, interval_s=0.2)  # about 1.1 s of streaming

    start, updates = asyncio.run(warm_then_collect())
    *partial, (end, final_text, stats) = updates
    assert partial[0][1] == " tok"  # the first token is shown as soon as it comes
    assert partial[0][0] - start < 0.5
    assert end - partial[0][0] > 0.9  # not held for the interval: shown ~99 tokens (0.99 s) before the end
    assert 3 <= len(partial) <= 1.1 / 0.2 + 2  # not one update per token
    assert final_text == " tok" * 100  # nothing held back at the end
    assert stats.tokens == 100 and stats.finish_reason == "length"
    assert 0.09 < stats.ttft_s < 0.3  # timed on the chunk, not on the update
    assert stats.tokens_per_s == pytest.approx(1 / 0.010, rel=0.3)


def test_a_fast_stream_leaves_the_event_loop_to_others(stub):
    # With no delay per token the stub's reply arrives in large buffered blocks; parsing them must
    # still give other tasks (other visitors, a stop) their turn between chunks.
    url = stub(ttft_ms=0, itl_ms=0)

    async def main() -> tuple[int, int]:
        turns = 0

        async def other() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        updates = await collect(url, 3000, interval_s=60)  # only the first token and the final text
        task.cancel()
        return turns, len(updates)

    turns, n_updates = asyncio.run(main())
    assert n_updates == 2
    assert turns >= 3000  # at least one turn per chunk


def test_stopping_the_reader_ends_the_request_on_the_server(stub):
    url = stub(ttft_ms=50, itl_ms=20)

    async def main() -> None:
        streaming = asyncio.Event()

        async def read() -> None:
            async for _ in chat.stream_reply(url, "key", "stub", HELLO, chat.Sampling(max_tokens=2000)):
                streaming.set()

        task = asyncio.create_task(read())
        await asyncio.wait_for(streaming.wait(), 30)  # tokens flow
        assert server_metric(url, "vllm:num_requests_running") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while server_metric(url, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the server kept the request after the reader stopped"
        time.sleep(0.05)


def test_an_unreachable_server_is_a_clear_chat_error():
    with pytest.raises(chat.ChatError, match="cannot be reached"):
        asyncio.run(collect("http://127.0.0.1:9", 8, interval_s=0.05))


def test_history_to_openai_messages_leaves_out_the_stats_lines():
    history: list[dict] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
        {"role": "assistant", "content": "", "metadata": {"title": "first token 0.10 s"}},
    ]
    assert chat.to_openai(history, "be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]


def test_retry_and_undo_work_on_the_last_user_message():
    history = chat.add_user([], "first")
    history += [{"role": "assistant", "content": "one"}, chat.note("⏱ stats")]
    history = chat.add_user(history, "second") + [{"role": "assistant", "content": "two"}]
    assert chat.retry(history) == history[:4]  # up to and with "second"
    kept, text = chat.undo(history)
    assert kept == history[:3] and text == "second"
    assert chat.undo([]) == ([], "") and chat.retry([]) == []


def test_an_error_replaces_an_empty_reply_and_is_said_under_it():
    history = chat.add_user([], "hi") + [{"role": "assistant", "content": ""}]
    shown = chat.with_error(history, "The model server is starting")
    assert shown[:-1] == history[:1] and shown[-1]["metadata"]["title"] == "⚠️ The model server is starting"


@pytest.mark.parametrize("t, p, n, says", [
    (float("nan"), 0.9, 16, "temperature"), (0.7, float("inf"), 16, "top_p"), (0.7, 0.9, float("inf"), "max_tokens"),
    (0.7, 0.9, 2.5, "max_tokens"), (-1, 0.9, 16, "temperature"), (0.7, 0, 16, "top_p"), (None, 0.9, 16, "numbers"),
])
def test_sampling_out_of_range_is_refused_naming_the_parameter(t, p, n, says):
    with pytest.raises(chat.ChatError, match=says):
        chat.Sampling.of(t, p, n)
    assert chat.Sampling.of("0.5", 1, "64") == chat.Sampling(0.5, 1.0, 64)


def test_a_stream_without_its_end_or_with_a_malformed_chunk_is_said_not_shown_complete(hostile):
    url = hostile('event:{"choices": 42}')
    # The hostile server's good replies carry no finish_reason: not shown as complete.
    with pytest.raises(chat.ChatError, match="ended before the model server said the reply was complete"):
        asyncio.run(collect(url, 4, 0.05))
    with pytest.raises(chat.ChatError, match="malformed stream"):  # its every other reply
        asyncio.run(collect(url, 4, 0.05))


def test_an_endless_stream_line_ends_the_reply_instead_of_filling_memory(hostile):
    import resource

    url = hostile("endless")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(chat.ChatError, match="stream line longer than 1 MiB"):
        asyncio.run(collect(url, 4, 0.05))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 40  # the endless line is not buffered (it would be 64 MB)


def test_a_reasoning_models_thinking_folds_above_its_answer_and_is_never_sent_back(stub):
    url = stub(ttft_ms=50, itl_ms=20, reasoning_tokens=5)

    async def main() -> list[list[dict]]:
        return [h async for h in chat.answer([{"role": "user", "content": "why?"}], url, "key", "stub", "",
                                             chat.Sampling(max_tokens=10))]

    final = asyncio.run(main())[-1]
    think, reply, stats = final[1], final[2], final[3]
    assert think["content"] == " think" * 5 and think["metadata"]["status"] == "done"
    assert think["metadata"]["title"].startswith("Thinking (") and 0.07 < think["metadata"]["duration"] < 0.3
    assert reply == {"role": "assistant", "content": " tok" * 5}
    assert "(thinking)" in stats["metadata"]["title"] and "first answer token" in stats["metadata"]["title"]
    assert "10 tokens" in stats["metadata"]["title"]  # reasoning and answer counted once, from usage
    assert chat.to_openai(final) == [{"role": "user", "content": "why?"}, {"role": "assistant", "content": " tok" * 5}]
