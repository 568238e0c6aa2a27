"""The Telegram channel: python-telegram-bot in front of the DialogueManager, with a durable inbox and outbox.

Control flow: ``run_telegram`` (wiring.py) builds the Application (``build_application``) and either long-polls
the Bot API for new messages only, or, in webhook mode, serves a webhook that refuses (403) any POST without the
secret token. Either way PTB puts each update into its update queue, which here is the inbox (inbox.py): the update
is committed to the database before Telegram is told it arrived (before the next getUpdates moves the offset past
it; before the webhook answers 200), so a bot killed at any point still has it. An update PTB cannot read is
logged and skipped, not left to stall every poll (transport.py).
The worker (worker.py) claims rows from the inbox, many chats at once and each chat's in order, and sees each
through: received -> answered -> delivered.
  - The handlers (handlers.py) say what to answer: a command or a text goes to the manager (in a handler thread,
    while the chat shows typing), with its Telegram message id, so a message seen twice is answered once; other
    messages get a note that only text is understood; in a group, only what mentions or replies to the bot is
    answered, each member with their own history (messages.py). The reply is stored with the row.
  - The outbox (outbox.py) sends it, cut to Telegram's size and each part retried at once on a 5xx or timeout
    (sending.py); a reply still not sent waits and is tried again for 10 minutes, then fails; a chat that refuses
    the bot marks the user inactive. The row is marked delivered with the bot's turn, in one commit.
A restart finishes what was left: the rows not yet delivered are claimed first. Several webhook processes may
share one Postgres database: a row is leased to one worker (``FOR UPDATE SKIP LOCKED``), and one whose worker died
is taken over when its lease runs out. The token never reaches a log line (redaction.py).
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
