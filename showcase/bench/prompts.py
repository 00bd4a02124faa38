"""What a point sends: prompts of an exact length, a prompts file's rows, a trace's requests.

This module owns turning a point into its requests (`Prompt`: the messages, the lengths aimed at,
the file's row, a trace's send time) and chat users' conversations (`Conversations`): synthetic
prompts of an exact token count built from one-token words with the server's own tokenizer
(/tokenize), a dataset's rows as they are (salted only when asked), and a trace's prompts of
exactly its input lengths whose leading blocks repeat where its `hash_ids` repeat. The files are
`traffic`'s to read; sending them is `loadgen`'s.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np

from showcase.api import ServerAPI
from showcase.bench import traffic
from showcase.bench.loadgen import Conversations, Prompt, Target
from showcase.bench.workload import Point, WorkloadError

PROMPT_POOL = 256  # distinct prompts per point in duration mode; more requests reuse them (flagged)
WARMUP_CONTENT = 16  # tokens of a file point's warm-up prompts (synthetic: they must not prime the cache)
WARMUP_OUTPUT = 8

# Common English words; those the server's tokenizer keeps as one token (with a leading space)
# are the bricks of every prompt, so a prompt of k bricks is exactly k tokens of content.
WORDS = ["time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child", "world", "school", "state", "family", "student", "group", "country", "problem", "hand", "part", "place", "case", "week", "company", "system", "program", "question", "work", "government", "number", "night", "point", "home", "water", "room", "mother", "area", "money", "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business", "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour", "game", "line", "end", "member", "law", "car", "city", "community", "name", "president", "team", "minute", "idea", "kid", "body", "information", "back", "parent", "face", "others", "level", "office", "door", "health", "person", "art", "war", "history", "party", "result", "change", "morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force", "education", "foot", "boy", "age", "policy", "music", "market", "sense", "nation", "plan", "college", "interest", "death", "experience", "effect", "class", "control", "care", "field", "development", "role", "effort", "rate", "heart", "drug", "show", "leader", "light", "voice", "wife", "police", "mind", "price", "report", "decision", "son", "view", "relationship", "town", "road", "arm", "difference", "value", "building", "action", "model", "season", "society", "tax", "director", "position", "player", "record", "paper", "space", "ground", "form", "event", "official", "matter", "center", "couple", "site", "project", "activity", "star", "table", "need", "court", "oil", "situation", "cost", "industry", "figure", "street", "image", "phone", "data", "picture", "practice", "piece", "land", "product", "doctor", "wall", "patient", "worker", "news", "test", "movie", "north", "love", "support", "technology", "step", "baby", "computer", "type", "attention", "film", "tree", "source", "organization", "hair", "window", "evidence", "population", "truth", "song", "energy", "park"]


class PromptFactory:
    """Builds chat messages whose prompt, chat template included, is an exact number of tokens."""

    def __init__(self, api: ServerAPI, target: Target) -> None:
        self.api, self.target = api, target
        self.bricks: list[str] = []
        self.overhead = 0  # template tokens around an empty user message
        self._brick_array = np.asarray([], dtype=object)  # the bricks, for drawing many at once

    async def _tokenize(self, **body: object) -> int:
        return await self.api.tokenize(self.target.model, **body)

    async def count(self, content: str) -> int:
        return await self._tokenize(messages=[{"role": "user", "content": content}], add_generation_prompt=True)

    async def calibrate(self) -> None:
        if self.bricks:
            return
        self.bricks = await self._one_token([" " + w for w in WORDS])
        if len(self.bricks) < 50:
            raise WorkloadError("The server's tokenizer splits too many common words to build exact prompts.")
        self._brick_array = np.asarray(self.bricks, dtype=object)
        self.overhead = await self.count("")

    async def _one_token(self, words: list[str]) -> list[str]:
        """Those of `words` the tokenizer keeps as one token, in order. Words with a leading space
        never merge (the tokenizer splits on it first), so a group counts as many tokens as it has
        words exactly when each is one token: one request for the usual case, halves for the rest."""
        if await self._tokenize(prompt="".join(words), add_special_tokens=False) == len(words):
            return words
        if len(words) == 1:
            return []
        half = len(words) // 2
        first, second = await asyncio.gather(self._one_token(words[:half]), self._one_token(words[half:]))
        return first + second

    async def count_messages(self, messages: list[dict]) -> int:
        """What a whole conversation costs as a prompt, chat template included."""
        return await self._tokenize(messages=messages, add_generation_prompt=True)

    def text(self, n: int, seed: int) -> str:
        """Content of exactly `n` tokens (after `calibrate`): `n` one-token words."""
        return self._text(n, seed, 0)

    def _text(self, n: int, seed: int, prefix_len: int) -> str:
        shared = random.Random(0)
        own = random.Random(seed)
        k = min(prefix_len, n)
        return "".join(shared.choice(self.bricks) for _ in range(k)) + "".join(
            own.choice(self.bricks) for _ in range(n - k)
        )

    async def build(self, input_len: int, seeds: list[int], prefix_len: int = 0) -> list[list[dict]]:
        """One user message per seed, each `input_len` prompt tokens, unique unless a prefix is shared."""
        await self.calibrate()
        n = input_len - self.overhead
        if n < 1:
            raise WorkloadError(f"input_len {input_len} is shorter than the chat template itself ({self.overhead + 1} tokens).")
        # Check one prompt with the server and correct by the difference: bricks never merge, so
        # the correction holds for every prompt of this length.
        for _ in range(3):
            got = await self.count(self._text(n, seeds[0], prefix_len))
            if got == input_len:
                break
            n += input_len - got
        return [[{"role": "user", "content": self._text(n, s, prefix_len)}] for s in seeds]

    async def count_text(self, text: str) -> int:
        """Tokens of a text on its own (no template, no special tokens): a reply's length."""
        return await self._tokenize(prompt=text, add_special_tokens=False)

    def words(self, n: int, seed: int) -> np.ndarray:
        """`n` one-token words (after `calibrate`), drawn fast for long prompts."""
        rng = np.random.default_rng(seed & 0xFFFFFFFF)
        return self._brick_array[rng.integers(0, len(self.bricks), max(0, n))]

    def tokens(self, n: int, seed: int) -> str:
        """Text of exactly `n` tokens (after `calibrate`)."""
        return "".join(self.words(n, seed))


class PromptMaker:
    """A run's prompts, point by point: synthetic ones salted anew each run (a server with prefix
    caching still holds an earlier run's), a file's rows continuing through the file from point to
    point (so a file long enough is never sent twice in a run), a trace's requests at their times."""

    def __init__(self, factory: PromptFactory, salt: int, next_row: int = 0, max_model_len: int | None = None):
        self.factory, self.salt, self.next_row, self.max_model_len = factory, salt, next_row, max_model_len
        self.files: dict[str, traffic.Dataset | traffic.Trace] = {}
        self.cycled = False  # whether the file's rows came round again for the point being prepared

    def dataset(self, path: str) -> traffic.Dataset:
        if path not in self.files:
            self.files[path] = traffic.read_dataset(path)
        return self.files[path]  # type: ignore[return-value]

    def trace(self, point: Point) -> traffic.Trace:
        """The requests of the trace this point replays: its window's, the first `num_requests`."""
        assert point.trace is not None
        if point.trace not in self.files:
            self.files[point.trace] = traffic.read_trace(point.trace)
        trace = self.files[point.trace]
        assert isinstance(trace, traffic.Trace)
        trace = trace.window(*point.trace_window) if point.trace_window else trace
        return traffic.Trace(trace.path, trace.format, trace.rows[:point.num_requests or None])

    async def prompts(self, point: Point) -> tuple[list[Prompt], list[Prompt]]:
        """The point's measured prompts (none for a file's chat users: see `conversations`) and its
        warm-up prompts. `cycled` says then whether a file's rows came round again in the run."""
        self.cycled = False
        count = point.num_requests or (min(PROMPT_POOL, point.arrivals_bound()) if point.request_rate else PROMPT_POOL)
        if point.trace is not None:
            return await self._trace(point), await self._warm(point)
        if point.dataset is not None:
            return await self._dataset(point, count) if point.chat is None else [], await self._warm(point)
        seeds = [hash((self.salt, point.index, i)) & 0x7FFFFFFF for i in range(-point.warmup_requests, count)]
        assert point.input_len is not None  # synthetic prompts have a length
        built = await self.factory.build(point.input_len, seeds, point.shared_prefix_len)
        made = [Prompt(m, point.input_len, point.output_len) for m in built]
        return made[point.warmup_requests:], made[:point.warmup_requests]

    async def _warm(self, point: Point) -> list[Prompt]:
        """A file point's warm-up: short synthetic prompts, so that no row of the file is cached before it is measured."""
        if not point.warmup_requests:
            return []
        await self.factory.calibrate()
        seeds = [hash((self.salt, point.index, -1 - i)) for i in range(point.warmup_requests)]
        return [Prompt([{"role": "user", "content": self.factory.tokens(WARMUP_CONTENT, s)}],
                       self.factory.overhead + WARMUP_CONTENT, WARMUP_OUTPUT) for s in seeds]

    def _rows(self, data: traffic.Dataset, point: Point, count: int) -> list[traffic.DatasetRow]:
        """The next `count` rows of the file (shuffled once by the seed), from where the run left off."""
        order = list(range(len(data.rows)))
        if point.seed is not None:
            random.Random(point.seed).shuffle(order)
        start, self.next_row = self.next_row, self.next_row + count
        self.cycled = self.cycled or start + count > len(order)
        return [data.rows[order[(start + i) % len(order)]] for i in range(count)]

    async def _output_len(self, row_len: int | None, reply: str | None, point: Point) -> int | None:
        """The file's output length, else the length of the reply the file holds (in the server's
        tokens), else the point's `output_len`, else None (the model's own stop)."""
        if row_len is not None:
            return row_len
        if reply:
            return max(1, await self.factory.count_text(reply))
        return point.output_len

    def _salted(self, messages: list[dict], point: Point, i: int) -> list[dict]:
        if not point.salt_prompts:
            return messages
        first = dict(messages[0], content=f"[{self.salt:x}-{point.index}-{i}] {messages[0]['content']}")
        return [first, *messages[1:]]

    async def _dataset(self, point: Point, count: int) -> list[Prompt]:
        assert point.dataset is not None
        data = self.dataset(point.dataset)
        rows = self._rows(data, point, count)
        outs = await asyncio.gather(*(self._output_len(r.output_len, r.reply, point) for r in rows))
        made = [Prompt(self._salted(list(r.messages), point, i), None, n, r.row)
                for i, (r, n) in enumerate(zip(rows, outs))]
        return made

    async def _trace(self, point: Point) -> list[Prompt]:
        """Each request of the trace (the window's, the first `num_requests`) with a prompt of exactly
        its input length, chat template included: blocks of `traffic.BLOCK_TOKENS` tokens, equal where
        the ids are equal, then tokens of its own; sent at its time × `time_scale`."""
        rows = list(self.trace(point).rows)
        longest = max(rows, key=lambda r: r.input_len + r.output_len)
        if self.max_model_len is not None and longest.input_len + longest.output_len > self.max_model_len:
            raise WorkloadError(f"{point.trace}: row {longest.row + 1} asks {longest.input_len} + {longest.output_len} "
                                f"tokens, more than the server's max_model_len of {self.max_model_len}")
        f = self.factory
        await f.calibrate()
        blocks: dict[int, np.ndarray] = {}  # a block's words, the same wherever its id comes

        def content(r: traffic.TraceRow, fix: int) -> str:
            n = max(1, r.input_len - f.overhead + fix)
            parts: list[str] = []
            left = n
            for h in r.hash_ids:
                if left <= 0:
                    break
                if h not in blocks:
                    blocks[h] = f.words(traffic.BLOCK_TOKENS, hash((self.salt, "block", h)))
                take = min(left, traffic.BLOCK_TOKENS)
                parts.extend(blocks[h][:take])
                left -= take
            parts.append(f.tokens(left, hash((self.salt, "row", point.index, r.row))))
            return "".join(parts)

        fix = 0  # bricks never merge: one check with the server corrects every prompt alike
        for _ in range(3):
            got = await f.count(content(rows[0], fix))
            if got == rows[0].input_len or rows[0].input_len - f.overhead + fix < 1:
                break
            fix += rows[0].input_len - got
        return [Prompt([{"role": "user", "content": content(r, fix)}], r.input_len, r.output_len, r.row,
                       r.t_s * point.time_scale) for r in rows]

    async def conversations(self, point: Point) -> Conversations:
        """Chat users' texts (after `prompts`, which calibrates the factory): synthetic ones (one
        system prompt for all, a new message per user and turn), or a file's conversations, one a
        user, up to the point's turns (a file without conversations: its rows in turn)."""
        seed = hash((self.salt, point.index)) & 0x7FFFFFFF
        assert point.chat is not None and point.users is not None  # chat users' points have both
        turns = point.chat.turns
        if point.dataset is None:
            assert point.input_len is not None
            system = self.factory.text(point.chat.system_prompt_len, seed) if point.chat.system_prompt_len else ""
            texts = [[(self.factory.text(point.input_len, hash((seed, u, t))), point.output_len) for t in range(turns)]
                     for u in range(point.users)]
            return Conversations([system] * point.users, texts, seed)
        data = self.dataset(point.dataset)
        systems, texts = [], []
        if data.conversations:
            rows = self._rows(data, point, point.users)
            for r in rows:
                systems.append(r.messages[0]["content"] if r.messages[0]["role"] == "system" else "")
                outs = [await self._output_len(None, t.reply, point) for t in r.turns[:turns]]
                texts.append([(t.text, n) for t, n in zip(r.turns[:turns], outs)])
        else:
            rows = self._rows(data, point, point.users * turns)
            for u in range(point.users):
                mine = rows[u * turns:(u + 1) * turns]
                systems.append("")
                texts.append([(r.messages[-1]["content"], await self._output_len(r.output_len, None, point))
                              for r in mine])
        return Conversations(systems, texts, seed)
