"""The Telegram channel: python-telegram-bot in front of the DialogueManager.

Control flow: ``run_telegram`` (wiring.py) builds the Application (``build_application``) and either long-polls
the Bot API for new messages only, or, in webhook mode, serves a webhook that refuses (403) any POST without the
secret token. Updates of different chats run concurrently, one chat's in order (chat_order.py). Each message goes to
the first handler that matches it (handlers.py):
  - ``/start``, ``/help``, ``/reset`` and any other command: passed to the manager as text;
  - plain text: passed to the manager in a worker thread (one per update at most) while the chat shows typing;
    in a group, only text that mentions the bot or replies to it, and each member has their own history
    (messages.py);
  - anything else (a sticker, a photo): a short note that only text is understood.
Each message goes to the manager with its Telegram message id, and each reply sent is reported back to it, so a
message Telegram delivers again after a restart is answered once (dialogue/manager.py). When polling, an update is
confirmed to Telegram only once handled (transport.py), so one the bot was killed while answering does come again;
an update python-telegram-bot cannot read is logged and skipped, not left to stall every poll.
A webhook is answered before its update is handled, so Telegram never sends again a message the bot was killed
while answering: at every start, in both modes, before any update is taken (``post_init``, ``Handlers.on_start``),
the messages stored in the last 24 hours but never answered, or whose reply was never delivered, are answered
first (``answer_left_unanswered``), each as a reply to its message; when polling, the same message fetched again
then finds its reply delivered and is not answered twice.
Edited messages match no handler, so they are never answered. A reply longer than one Telegram message is
cut by ``split_message`` and each part tried again when the Bot API fails on its side (sending.py). A failing
handler ends in ``on_error``, which logs (and, when the fault is ours, tells the user) and lets the bot go on. The
token never reaches a log line: httpx, which logs request URLs containing it, is quieted, and a filter redacts it
from every record (redaction.py).
"""

from chatbot.channels.telegram.handlers import ERROR_REPLY, NON_TEXT_REPLY, PRIVATE_REPLY, Access
from chatbot.channels.telegram.messages import TelegramApplication, conversation_key
from chatbot.channels.telegram.redaction import REDACTED
from chatbot.channels.telegram.sending import TYPING_DELAY_SECONDS, split_message
from chatbot.channels.telegram.wiring import (
    RATE_LIMIT_RETRIES,
    Webhook,
    build_application,
    new_webhook_secret,
    run_telegram,
)

__all__ = [
    "ERROR_REPLY",
    "NON_TEXT_REPLY",
    "PRIVATE_REPLY",
    "RATE_LIMIT_RETRIES",
    "REDACTED",
    "TYPING_DELAY_SECONDS",
    "Access",
    "TelegramApplication",
    "Webhook",
    "build_application",
    "conversation_key",
    "new_webhook_secret",
    "run_telegram",
    "split_message",
]
