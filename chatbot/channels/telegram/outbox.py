"""The outbox: a reply stored with its inbox row is sent, and the row marked delivered in the same commit as the
bot's turn. A reply Telegram did not take (a timeout, a 5xx or 429 past the immediate retries) waits and is tried
again, from OUTBOX_RETRY_DELAYS on, by whichever worker claims it when due, for OUTBOX_SECONDS; then it is marked
failed and logged. A chat that refuses the bot (403) marks the user inactive; a reply Telegram refuses (400) fails
at once. A long reply is sent part by part, each part recorded, so a restart sends only the parts still unsent.

What exactly-once cannot cover: a sendMessage that reached Telegram but whose answer the bot never read (killed,
or timed out, between the two) is sent again, as nothing tells a message that arrived from one that did not.
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from telegram import Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import ExtBot

from chatbot.channels.telegram.handlers import CHANNEL
from chatbot.channels.telegram.inbox import ChannelInbox
from chatbot.channels.telegram.messages import conversation_key, in_group
from chatbot.channels.telegram.sending import message_parts, send_retried
from chatbot.dialogue.manager import DialogueManager
from chatbot.storage.contract import Clock, utc_now
from chatbot.storage.inbox import InboxRow, InboxStore, Outgoing

logger = logging.getLogger(__name__)

OUTBOX_SECONDS = 600.0  # how long after it was answered an undelivered reply is still tried
OUTBOX_RETRY_DELAYS = (5.0, 10.0, 20.0, 40.0, 60.0)  # seconds before each new try; then every 60 s


class Outbox:
    """Sends the replies of claimed inbox rows through ``bot`` and records the outcome in ``inbox``."""

    def __init__(self, inbox: ChannelInbox, manager: DialogueManager, bot: ExtBot[int], clock: Clock = utc_now) -> None:
        self.inbox = inbox
        self.manager = manager
        self.bot = bot
        self.clock = clock

    async def deliver(self, row: InboxRow, message: Message, reply: Outgoing) -> None:
        """Send ``reply`` to ``message`` (the parts not sent yet), then mark the row delivered; or schedule it to
        be tried again, or fail it, as the Bot API's answer says."""
        worker = self.inbox.worker
        parts = message_parts(reply.text, reply.fixed_width)
        try:
            sent = None
            for index in range(row.parts_sent, len(parts)):
                sent = await send_retried(functools.partial(self._send, row, message, parts[index], reply.fixed_width))
                if index + 1 < len(parts):
                    await self.inbox.run(InboxStore.parts_sent, row.id, worker, index + 1)
        except Forbidden as error:  # the user blocked the bot (or left the group): not our fault, not fatal
            logger.warning("chat %s refuses the bot's messages (%s); the user is marked inactive", row.chat, error)
            await self.inbox.run(InboxStore.fail, row.id, worker)
            await self.inbox.in_thread(self.manager.unreachable, CHANNEL, conversation_key(message))
            return
        except BadRequest as error:  # Telegram will never take this message: trying again would not help
            logger.error("update %s: Telegram refused the reply: %s", row.update_id, error)
            await self.inbox.run(InboxStore.fail, row.id, worker)
            return
        except TelegramError as error:  # timeouts, 5xx, 429 past the rate limiter's retries
            await self._later(row, error)
            return
        sent_as = str(sent.message_id) if sent is not None else ""
        await self.inbox.run(InboxStore.deliver, row.id, worker, reply.turn_id, sent_as)

    async def _send(self, row: InboxRow, message: Message, part: str, fixed_width: bool) -> Message:
        """One part, to the message's chat; quoting the message in a group (as Telegram clients do), and when the
        answer comes late (the row was claimed or tried before), so that the user sees what it answers."""
        late = row.claims > 1 or row.attempts > 0
        quoted = ReplyParameters(message.message_id, allow_sending_without_reply=True)
        return await self.bot.send_message(
            message.chat_id,
            part,
            parse_mode=ParseMode.HTML if fixed_width else None,
            reply_parameters=quoted if late or in_group(message) else None,
        )

    async def _later(self, row: InboxRow, error: TelegramError) -> None:
        """Try the row again after the next of OUTBOX_RETRY_DELAYS, or, past OUTBOX_SECONDS, give up on it."""
        worker = self.inbox.worker
        answered = row.answered_at or self.clock()
        if (self.clock() - answered).total_seconds() >= OUTBOX_SECONDS:
            logger.error("update %s: reply not delivered in %g s (%s); given up", row.update_id, OUTBOX_SECONDS, error)
            await self.inbox.run(InboxStore.fail, row.id, worker)
            return
        delay = OUTBOX_RETRY_DELAYS[min(row.attempts, len(OUTBOX_RETRY_DELAYS) - 1)]
        logger.warning("update %s: reply not delivered (%s); trying again in %g s", row.update_id, error, delay)
        due = self.clock() + timedelta(seconds=delay)
        await self.inbox.run(InboxStore.retry_later, row.id, worker, due)
