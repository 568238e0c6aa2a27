"""A fake Telegram Bot API on 127.0.0.1 that a real python-telegram-bot Application talks to over HTTP.

Tests queue updates (``add_text``, ``add_command``, ``add_sticker``, ``add_photo``, ``add_edited_text``, or
any JSON with ``add_raw``), the bot fetches them with long-polling ``getUpdates`` and answers with ``sendMessage``,
which the fake records in ``sent`` (``inject`` makes calls fail instead); ``wait_for_messages`` waits, for a
bounded time, until enough answers have arrived. Like the real API, requests are form-encoded with JSON-encoded
values, errors are HTTP status codes, an unknown method answers ``true``, and getUpdates confirms (drops) every
update below its ``offset``.

For long runs (bench/telegram_long_runs.py) the fake also keeps time, on ``time.monotonic()``: ``queued_at`` says
when each update was queued (or made by ``text_update``), each SentMessage when it arrived (``at``), the message id
the fake gave it and the message it quotes (``reply_to``); ``deliveries`` counts how often getUpdates handed each
update to the bot (more than once: it was not confirmed in time, so it came again).
"""

from __future__ import annotations

import asyncio
import collections
import html
import json
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

BOT_USER = {"id": 4242, "is_bot": True, "first_name": "Test Bot", "username": "test_bot"}
# Parameters that are free text: PTB sends them as they are, so decoding them as JSON would turn "42" into 42.
TEXT_PARAMS = frozenset({"text", "caption", "action"})
COMMAND = re.compile(r"^/\w+(@\w+)?")
MENTION = re.compile(r"(?<![\w/])@\w+")
MAX_TEXT_UNITS = 4096
HOLD_SECONDS = 3600.0  # a held request waits this long at most, in case the fake is never stopped
HTML_TAGS = re.compile(r"</?(?:b|strong|i|em|u|ins|s|strike|del|code|pre|tg-spoiler|blockquote)>")


@dataclass(frozen=True)
class ApiCall:
    """One Bot API request: its method name and its decoded parameters."""

    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class SentMessage:
    """A message the bot sent with sendMessage: its text as the user sees it (markup parsed), and the parse mode
    it was sent with. Not compared (tests compare what the user sees): the ``message_id`` the fake gave it, the
    id of the message it quotes (``reply_parameters``; None: it quotes none), and when it arrived
    (``time.monotonic()``)."""

    chat_id: int
    text: str
    parse_mode: str | None = None
    message_id: int = field(default=0, compare=False)
    reply_to: int | None = field(default=None, compare=False)
    at: float = field(default=0.0, compare=False)


@dataclass
class Fault:
    """An error the fake answers instead of ``method`` (for ``chat_id`` only, when set), ``times`` more times,
    after ``delay`` seconds (a slow gateway: the bot may time out first). ``body``: answer that raw text instead
    of a JSON error (a proxy's HTML page). ``hold``: never answer until the fake stops, as when the bot dies with
    the request in flight; a held request is not carried out (a held sendMessage sends nothing)."""

    method: str
    status: int
    description: str
    retry_after: int | None = None
    chat_id: int | None = None
    times: int = 1
    delay: float = 0.0
    body: str | None = None
    hold: bool = False


def utf16_units(text: str) -> int:
    """The length Telegram measures: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


class FakeBotApi:
    """The Bot API for one bot token, served by aiohttp on a free port of 127.0.0.1 (``url``)."""

    def __init__(self, token: str, max_poll_seconds: float = 1.0) -> None:
        self.token = token
        self.max_poll_seconds = max_poll_seconds
        self.calls: list[ApiCall] = []
        self.sent: list[SentMessage] = []
        self.deliveries: collections.Counter[int] = collections.Counter()  # update id: times getUpdates returned it
        self.queued_at: dict[int, float] = {}  # update id: when it was queued or made (time.monotonic())
        self.url = ""
        self._updates: list[dict[str, Any]] = []
        self._every_update: dict[int, dict[str, Any]] = {}
        self._faults: list[Fault] = []
        self._allowed_updates: set[str] | None = None
        self._update_id = 0
        self._message_id = 0
        self._closing = False
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1; ``url`` is then the API root to give the bot."""
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        # No access log: it would write the token-bearing request paths into the logs the tests inspect.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        """Release any waiting long poll and shut the server down."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()

    # Queueing updates, as a user's Telegram client would cause them.

    def add_text(self, chat_id: int, text: str) -> int:
        """Queue a text message; like Telegram, mark a leading ``/command`` with a bot_command entity."""
        return self._add_update("message", self._message(chat_id, **_text_fields(text)))

    def text_update(self, chat_id: int, text: str) -> dict[str, Any]:
        """A new text-message update, not queued: for POSTing to a bot in webhook mode."""
        self._update_id += 1
        self.queued_at[self._update_id] = time.monotonic()
        return {"update_id": self._update_id, "message": self._message(chat_id, **_text_fields(text))}

    def add_command(self, chat_id: int, command: str, argument: str = "") -> int:
        """Queue ``/command argument`` with its bot_command entity."""
        return self.add_text(chat_id, f"/{command} {argument}".strip())

    def add_group_text(self, chat_id: int, user_id: int, text: str, reply_to_bot: bool = False) -> int:
        """Queue a text message from user ``user_id`` in group ``chat_id``, optionally as a reply to the bot."""
        message = self._message(chat_id, **_text_fields(text))
        message["chat"] = {"id": chat_id, "type": "group", "title": "Test group"}
        message["from"] = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}
        if reply_to_bot:
            earlier = {"message_id": 1, "date": int(time.time()), "chat": message["chat"], "text": "earlier"}
            message["reply_to_message"] = {**earlier, "from": BOT_USER}
        return self._add_update("message", message)

    def add_sticker(self, chat_id: int) -> int:
        """Queue a sticker message (no text)."""
        sticker = {
            "file_id": "sticker-file",
            "file_unique_id": "sticker-unique",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "👍",
        }
        return self._add_update("message", self._message(chat_id, sticker=sticker))

    def add_photo(self, chat_id: int, caption: str = "") -> int:
        """Queue a photo message, with its text (if any) in the caption."""
        photo = [{"file_id": "photo-file", "file_unique_id": "photo-unique", "width": 90, "height": 60}]
        content: dict[str, Any] = {"photo": photo}
        if caption:
            content["caption"] = caption
        return self._add_update("message", self._message(chat_id, **content))

    def add_edited_text(self, chat_id: int, text: str) -> int:
        """Queue an edit of an earlier text message (an ``edited_message`` update)."""
        message = self._message(chat_id, edit_date=int(time.time()), **_text_fields(text))
        return self._add_update("edited_message", message)

    def add_raw(self, fields: dict[str, Any], update_id: int | None = None) -> int:
        """Queue an update made of ``fields`` as they are (malformed ones too), numbered ``update_id`` (default: the
        next number); later updates are numbered after it, as Telegram's ids only grow."""
        self._update_id = self._update_id + 1 if update_id is None else max(update_id, self._update_id)
        self._queue({"update_id": self._update_id, **fields})
        return self._update_id

    def inject(self, fault: Fault) -> None:
        """Answer the next calls the fault matches with its error (a 429 with retry_after, a 502, a 403...)."""
        self._faults.append(fault)

    def redeliver(self, update_id: int) -> None:
        """Queue an update again, unchanged, as Telegram does when a bot stopped before confirming it."""
        self._updates.append(self._every_update[update_id])
        self._notify()

    # Observing what the bot did.

    def update(self, update_id: int) -> dict[str, Any]:
        """The update numbered ``update_id`` as it was queued (KeyError for one never queued)."""
        return self._every_update[update_id]

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        return [call.method for call in self.calls]

    async def wait_for_messages(self, count: int, timeout: float = 5.0) -> list[SentMessage]:
        """The first ``count`` sent messages, once they exist; AssertionError after ``timeout`` seconds."""
        if not await self._wait_until(lambda: len(self.sent) >= count, timeout):
            raise AssertionError(f"expected {count} sent messages within {timeout}s, got {self.sent}")
        return self.sent[:count]

    async def wait_for_call(self, method: str, timeout: float = 5.0) -> ApiCall:
        """The first call of ``method``, once made; AssertionError after ``timeout`` seconds."""
        if not await self._wait_until(lambda: method in self.methods(), timeout):
            raise AssertionError(f"{method} was not called within {timeout}s; calls: {self.methods()}")
        return next(call for call in self.calls if call.method == method)

    # The HTTP side.

    async def _handle(self, request: web.Request) -> web.Response:
        token, _, method = request.match_info["path"].partition("/")
        if token != f"bot{self.token}":
            return _error(401, "Unauthorized")
        params = _decode(dict(await request.post()))
        self.calls.append(ApiCall(method, params))
        self._notify()
        fault = self._fault_for(method, params)
        if fault is not None:
            return await self._fail(fault)
        if method == "getMe":
            return _ok(BOT_USER)
        if method == "getUpdates":
            return _ok(await self._get_updates(params))
        if method == "sendMessage":
            return await self._send_message(params)
        return _ok(True)  # deleteWebhook, setMyCommands, sendChatAction, ...

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0))
        if "allowed_updates" in params:
            self._allowed_updates = set(params["allowed_updates"]) or None
        # Updates below the offset are acknowledged, and kinds the bot did not ask for are never delivered.
        self._updates = [update for update in self._updates if update["update_id"] >= offset]
        self._updates = [update for update in self._updates if self._deliverable(update)]
        timeout = min(float(params.get("timeout", 0)), self.max_poll_seconds)
        await self._wait_until(lambda: bool(self._updates) or self._closing, timeout)
        handed = self._updates[: int(params.get("limit", 100))]
        self.deliveries.update(update["update_id"] for update in handed)
        return list(handed)

    async def _send_message(self, params: dict[str, Any]) -> web.Response:
        text, parse_mode = str(params.get("text", "")), params.get("parse_mode")
        if parse_mode == "HTML":
            parsed = _parse_html(text)
            if parsed is None:
                return _error(400, "Bad Request: can't parse entities: unsupported start tag")
            text = parsed
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if utf16_units(text) > MAX_TEXT_UNITS:
            return _error(400, "Bad Request: message is too long")
        chat_id = int(params["chat_id"])
        message = self._message(chat_id, text=text)
        message["from"] = BOT_USER
        at = time.monotonic()
        self.sent.append(SentMessage(chat_id, text, parse_mode, message["message_id"], _quoted(params), at))
        self._notify()
        return _ok(message)

    async def _fail(self, fault: Fault) -> web.Response:
        if fault.hold:
            await self._wait_until(lambda: self._closing, HOLD_SECONDS)
        await asyncio.sleep(fault.delay)
        if fault.body is not None:
            return web.Response(status=fault.status, text=fault.body, content_type="text/html")
        return _error(fault.status, fault.description, fault.retry_after)

    def _fault_for(self, method: str, params: dict[str, Any]) -> Fault | None:
        for fault in self._faults:
            if fault.times > 0 and fault.method == method and fault.chat_id in (None, params.get("chat_id")):
                fault.times -= 1
                return fault
        return None

    def _deliverable(self, update: dict[str, Any]) -> bool:
        kind = next((key for key in update if key != "update_id"), None)  # None: a malformed, empty update
        return self._allowed_updates is None or kind is None or kind in self._allowed_updates

    def _add_update(self, kind: str, payload: dict[str, Any]) -> int:
        self._update_id += 1
        self._queue({"update_id": self._update_id, kind: payload})
        return self._update_id

    def _queue(self, update: dict[str, Any]) -> None:
        self._every_update[update["update_id"]] = update
        self.queued_at[update["update_id"]] = time.monotonic()
        self._updates.append(update)
        self._notify()

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        self._message_id += 1
        # A private chat: its id is the user's id.
        user = {"id": chat_id, "is_bot": False, "first_name": "Tester"}
        chat = {"id": chat_id, "type": "private", "first_name": "Tester"}
        message = {"message_id": self._message_id, "date": int(time.time()), "chat": chat, "from": user}
        return {**message, **content}

    def _notify(self) -> None:
        # Wake every waiter, then give later waiters a fresh event to wait on.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return condition()
        return True


class FakeBotApiThread:
    """A FakeBotApi served by its own event loop in a background thread, for code that runs its own loop
    (``run_telegram``); ``call`` and ``do`` run work on that loop and return its result."""

    def __init__(self, api: FakeBotApi) -> None:
        self.api = api
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-bot-api", daemon=True)

    def call(self, function: Callable[[], Coroutine[Any, Any, T]], timeout: float = 10.0) -> T:
        """Await ``function()`` on the server's loop, waiting at most ``timeout`` seconds."""
        return asyncio.run_coroutine_threadsafe(function(), self._loop).result(timeout)

    def do(self, function: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``function()`` (say, ``api.add_text(...)``) on the server's loop, which owns the state."""

        async def run() -> T:
            return function()

        return self.call(run, timeout)

    @contextmanager
    def running(self) -> Iterator[FakeBotApi]:
        """Serve while the block runs."""
        self._thread.start()
        self.call(self.api.start)
        try:
            yield self.api
        finally:
            self.call(self.api.stop)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
            self._loop.close()


def _text_fields(text: str) -> dict[str, Any]:
    """The text with its entities, as Telegram marks them: a leading /command and every @mention."""
    entities = []
    command = COMMAND.match(text)
    if command is not None:
        entities.append({"type": "bot_command", "offset": 0, "length": utf16_units(command.group())})
    for mention in MENTION.finditer(text):
        offset = utf16_units(text[: mention.start()])
        entities.append({"type": "mention", "offset": offset, "length": utf16_units(mention.group())})
    return {"text": text, "entities": entities} if entities else {"text": text}


def _quoted(params: dict[str, Any]) -> int | None:
    """The id of the message a sendMessage quotes: ``reply_parameters`` (Bot API 7), or the older
    ``reply_to_message_id``; None when it quotes none."""
    quoted = params.get("reply_parameters")
    if isinstance(quoted, dict) and quoted.get("message_id") is not None:
        return int(quoted["message_id"])
    older = params.get("reply_to_message_id")
    return int(older) if older is not None else None


def _parse_html(text: str) -> str | None:
    """The text a user sees of an HTML-formatted message (Telegram's formatting tags dropped, entities decoded),
    or None where Telegram would refuse it: a ``<`` that opens no tag it knows, such as an unescaped ``</s>``."""
    bare = HTML_TAGS.sub("", text)
    return None if "<" in bare else html.unescape(bare)


def _decode(form: dict[str, Any]) -> dict[str, Any]:
    """Undo PTB's encoding: every non-text value is a JSON string (``chat_id="7"``, ``timeout="1"``)."""
    params: dict[str, Any] = {}
    for name, value in form.items():
        if name in TEXT_PARAMS or not isinstance(value, str):
            params[name] = value
            continue
        try:
            params[name] = json.loads(value)
        except ValueError:
            params[name] = value
    return params


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
