"""The one door to the server's HTTP API off the measured path (showcase/api.py)."""

from __future__ import annotations

import asyncio

import pytest

from showcase import api


def test_a_models_answer_is_read_or_refused_naming_the_route():
    url = "http://h/v1/models"
    got = api.parse_models(url, {"data": [{"id": "a", "max_model_len": 4096}, {"id": ""}, {"id": "b"}]})
    assert got == [api.Model("a", 4096), api.Model("b", None)]  # a nameless entry is left out
    for wrong in ([1, 2], {"data": ["a"]}, {"data": None}, "text"):
        with pytest.raises(api.ServerAPIError, match=r"http://h/v1/models answered no list of models"):
            api.parse_models(url, wrong)
    bad = {"data": [{"id": "a", "max_model_len": "lots"}, {"id": "b", "max_model_len": True}]}
    assert api.parse_models(url, bad, model="c") == [api.Model("a", None), api.Model("b", None)]  # others': unknown
    with pytest.raises(api.ServerAPIError, match="a max_model_len of 'lots', not a length"):
        api.parse_models(url, bad, model="a")


def test_the_door_reads_a_servers_answers(stub):
    url = stub(ttft_ms=1, itl_ms=1)
    assert api.health_ok(url) and not api.health_ok("http://127.0.0.1:9")
    assert api.only_model(url, "k") == "stub"
    with pytest.raises(api.ServerAPIError, match="Cannot reach the server at http://127.0.0.1:9"):
        api.only_model("http://127.0.0.1:9", "k")

    async def ask() -> tuple:
        async with api.ServerAPI(url, "k") as door:
            return (await door.health(), await door.max_model_len("stub"), await door.tokenize("stub", prompt="a b c"),
                    (await door.metrics())[0], await door.version())

    health, length, count, status, version = asyncio.run(ask())
    assert health is True and length and length > 0 and count > 0 and status == 200
    assert version is None  # the stub does not say which vLLM it is: unknown, not a guess


def test_a_route_that_never_answers_fails_within_its_named_timeout(hostile, monkeypatch):
    monkeypatch.setattr(api, "TOKENIZE_TIMEOUT_S", 0.5)
    url = hostile("tokenize-hang")

    async def ask() -> int:
        async with api.ServerAPI(url) as door:
            return await door.tokenize("stub", prompt="x")

    with pytest.raises(api.ServerAPIError, match="/tokenize did not answer within 0.5 s"):
        asyncio.run(ask())
