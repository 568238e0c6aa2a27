"""Token redaction: the bot token (and the webhook secret) never reach a log line."""

from __future__ import annotations

import logging

REDACTED = "[REDACTED-TOKEN]"


class _TokenRedactor(logging.Filter):
    """Replaces a bot token in a record's message, arguments and traceback; filters compare equal per token,
    so installing one twice on a handler is a no-op."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TokenRedactor) and other.token == self.token

    def __hash__(self) -> int:
        return hash((_TokenRedactor, self.token))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, REDACTED), None
        # A Formatter renders the traceback into exc_text only if it is unset, so a redacted one here is kept.
        traceback = record.exc_text
        if traceback is None and record.exc_info:
            traceback = logging.Formatter().formatException(record.exc_info)
        if traceback and self.token in traceback:
            record.exc_text = traceback.replace(self.token, REDACTED)
        return True


def protect_token(token: str) -> None:
    """Keep ``token`` (or the webhook secret) out of the logs: quiet httpx/httpcore (they log request URLs, which
    contain the token) and redact it on every handler of the root logger, and on the httpx logger for handlers
    added later."""
    for name in ("httpx", "httpcore"):
        quiet = logging.getLogger(name)
        quiet.setLevel(max(logging.WARNING, quiet.level))
    redactor = _TokenRedactor(token)
    logging.getLogger("httpx").addFilter(redactor)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
