"""AiohttpRequest: python-telegram-bot's networking backend (``telegram.request.BaseRequest``) on aiohttp.

PTB sends every Bot API call through a BaseRequest; its own, HTTPXRequest, is built on httpx, whose connection
pool does work for every waiting request whenever a connection frees up. With a hundred chats answered at once
that bookkeeping, not the network, limits the bot: an echo bot on this project's 2-core machine sent 211 replies a
second through httpx and 989 through this class (BENCHMARKS.md, Telegram serving). PTB documents BaseRequest as the
place to plug in another HTTP library; this module is that plug and nothing else: a URL and form fields in, a
status code and body out, errors mapped to PTB's own.

Like httpx, it takes a proxy from HTTP(S)_PROXY unless NO_PROXY excludes the host, read once per host (aiohttp's
own ``trust_env`` reads the environment and ~/.netrc in a worker thread at every request, which costs more than
the request). aiohttp has no write timeout of its own, so the whole request is bounded by the sum of the four
timeouts (when none is None).
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

CONNECTION_POOL_SIZE = 256  # PTB's default for the bot's requests: connections open at once to the Bot API
TIMEOUT_SECONDS = 5.0  # PTB's defaults for connecting, reading and writing
POOL_TIMEOUT_SECONDS = 1.0  # PTB's default wait for a free connection
# A timeout as PTB hands it to do_request: seconds, None (wait forever), or its default marker. PTB names this type
# ODVInput, but only in its private telegram._utils module.
Timeout = Any


class AiohttpRequest(BaseRequest):
    """Bot API requests over one aiohttp ClientSession of at most ``connection_pool_size`` connections.

    Timeouts (seconds, None: none) are the defaults for calls that pass none: ``connect_timeout`` to connect,
    ``pool_timeout`` more to wait for a free connection, ``read_timeout`` between bytes of the answer; the request
    as a whole may take the four together (``write_timeout`` included).
    """

    __slots__ = ("_connect", "_pool", "_pool_size", "_proxies", "_read", "_session", "_write")

    def __init__(
        self,
        connection_pool_size: int = CONNECTION_POOL_SIZE,
        read_timeout: float | None = TIMEOUT_SECONDS,
        write_timeout: float | None = TIMEOUT_SECONDS,
        connect_timeout: float | None = TIMEOUT_SECONDS,
        pool_timeout: float | None = POOL_TIMEOUT_SECONDS,
    ) -> None:
        if connection_pool_size < 1:
            raise ValueError("connection_pool_size must be at least 1")
        self._pool_size = connection_pool_size
        self._read, self._write = read_timeout, write_timeout
        self._connect, self._pool = connect_timeout, pool_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}  # (scheme, host): the environment's proxy

    @property
    def read_timeout(self) -> float | None:
        return self._read

    async def initialize(self) -> None:
        """Open the session (on the running event loop, which aiohttp requires)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size)
            headers = {"User-Agent": self.USER_AGENT}
            self._session = aiohttp.ClientSession(connector=connector, headers=headers)

    async def shutdown(self) -> None:
        """Close the session and its connections; a second call does nothing."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        write_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        connect_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        pool_timeout: Timeout = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """The status code and body of ``method`` on ``url`` with ``request_data`` as its form; timeouts raise
        TimedOut and any other failure to get an answer NetworkError (whose message never holds the URL, as the
        URL holds the bot token)."""
        timeout = self._timeout(read_timeout, write_timeout, connect_timeout, pool_timeout)
        return await self.send(url, method, _form(request_data), timeout)

    async def send(
        self, url: str, method: str, body: aiohttp.FormData | dict[str, str] | None, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, bytes]:
        """``do_request`` with the form and the timeouts already made (for a subclass that changes the form)."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        try:
            async with self._session.request(
                method, url, data=body, timeout=timeout, proxy=self._proxy(url), allow_redirects=False
            ) as response:
                return response.status, await response.read()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {_without_url(str(error), url)}") from error

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for ``url``'s scheme and host, looked up once per host."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "")
        if key not in self._proxies:
            bypass = bool(parts.hostname) and urllib.request.proxy_bypass(parts.hostname or "")
            self._proxies[key] = None if bypass else urllib.request.getproxies().get(parts.scheme)
        return self._proxies[key]

    def _timeout(
        self,
        read: Timeout,
        write: Timeout,
        connect: Timeout,
        pool: Timeout,
    ) -> aiohttp.ClientTimeout:
        """The call's timeouts, each defaulting to this object's, in aiohttp's terms."""
        read_s, write_s = _given(read, self._read), _given(write, self._write)
        connect_s, pool_s = _given(connect, self._connect), _given(pool, self._pool)
        # aiohttp's ``connect`` covers waiting for a pooled connection as well as opening one.
        waiting = None if connect_s is None or pool_s is None else connect_s + pool_s
        parts = (read_s, write_s, connect_s, pool_s)
        total = None if any(part is None for part in parts) else sum(part for part in parts if part is not None)
        return aiohttp.ClientTimeout(total=total, connect=waiting, sock_connect=connect_s, sock_read=read_s)


def _given(value: Timeout, default: float | None) -> float | None:
    """A timeout the call gave (seconds, or None for none), else ``default``: PTB passes a default marker (its
    DefaultValue) where the caller gave nothing."""
    return value if value is None or isinstance(value, (int, float)) else default


def _form(request_data: RequestData | None) -> aiohttp.FormData | dict[str, str] | None:
    """The request body: the parameters URL-encoded, or multipart form data when files are uploaded."""
    if request_data is None:
        return None
    if not request_data.multipart_data:
        return request_data.json_parameters
    form = aiohttp.FormData()
    for name, value in request_data.json_parameters.items():
        form.add_field(name, value)
    for name, upload in request_data.multipart_data.items():
        filename, content, mimetype = upload
        form.add_field(name, content, filename=filename, content_type=mimetype)
    return form


def _without_url(message: str, url: str) -> str:
    """``message`` with the request URL (bot token and all) cut down to its scheme and host."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return message.replace(url, f"{scheme}://{host}/...")
