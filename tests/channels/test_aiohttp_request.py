"""AiohttpRequest, PTB's networking backend on aiohttp, against a small aiohttp server on 127.0.0.1 that reports
what it received (the Telegram paths are covered end to end in test_telegram.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from telegram import InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from chatbot.channels.aiohttp_request import AiohttpRequest

TOKEN = "123:SECRET-token-part"


async def report(request: web.Request) -> web.Response:
    """Answer with the form received: plain fields as text, files as their name, type and bytes."""
    if request.path.endswith("/slow"):
        await asyncio.sleep(1.0)
    fields = {}
    for name, value in (await request.post()).items():
        if isinstance(value, web.FileField):
            fields[name] = [value.filename, value.content_type, value.file.read().decode()]
        else:
            fields[name] = value
    return web.json_response({"agent": request.headers.get("User-Agent", ""), "fields": fields})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/{path:.*}", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/bot{TOKEN}"
    await runner.cleanup()


async def test_form_fields_and_files_arrive(server: str) -> None:
    data = RequestData(
        [
            RequestParameter.from_input("chat_id", 7),
            RequestParameter.from_input("document", InputFile(b"file body", filename="notes.txt")),
        ]
    )
    async with AiohttpRequest() as request:
        status, body = await request.do_request(f"{server}/sendDocument", "POST", data)
    received = json.loads(body)
    assert status == 200 and received["agent"].startswith("python-telegram-bot")
    assert received["fields"]["chat_id"] == "7"
    attached = next(value for value in received["fields"].values() if isinstance(value, list))
    assert attached == ["notes.txt", "text/plain", "file body"]


async def test_a_slow_answer_is_a_timeout(server: str) -> None:
    async with AiohttpRequest(read_timeout=0.2) as request:
        with pytest.raises(TimedOut):
            await request.do_request(f"{server}/slow", "POST", RequestData([]))


@pytest.mark.reliability
async def test_a_failed_connection_is_a_network_error_without_the_token() -> None:
    async with AiohttpRequest(connect_timeout=1.0) as request:
        with pytest.raises(NetworkError) as raised:
            await request.do_request(f"http://127.0.0.1:9/bot{TOKEN}/getMe", "POST")
    assert "SECRET" not in str(raised.value) and "aiohttp.ClientConnectorError" in str(raised.value)


async def test_requests_before_initialize_are_refused() -> None:
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:9/x", "POST")


async def test_the_environment_proxy_is_used_unless_no_proxy_names_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    request = AiohttpRequest()
    assert request._proxy(f"https://api.telegram.org/bot{TOKEN}/getMe") == "http://proxy.example:3128"
    assert request._proxy(f"http://127.0.0.1:8081/bot{TOKEN}/getMe") is None


def test_no_module_imports_a_private_python_telegram_bot_module() -> None:
    """telegram._utils and the like may change in any release; the channel uses PTB's public names only."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "chatbot"
    private = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            private += [f"{path.name}: {name}" for name in names if name.startswith("telegram._")]
    assert private == []
