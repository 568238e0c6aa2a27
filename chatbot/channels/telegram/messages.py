"""What a Telegram message means to the bot: whose conversation it belongs to, and whether a group message
is addressed to it; and the PTB types the channel's modules share.
"""

from __future__ import annotations

import re
from typing import Any

from telegram import Message, MessageEntity
from telegram.constants import ChatType
from telegram.ext import (
    Application,
    ContextTypes,
    ExtBot,
    JobQueue,
)

Context = ContextTypes.DEFAULT_TYPE
TelegramApplication = Application[
    ExtBot[int], Context, dict[Any, Any], dict[Any, Any], dict[Any, Any], JobQueue[Context]
]


def conversation_key(message: Message) -> str:
    """Whose history a message belongs to: the chat's in a private chat, the sender's within the chat in a group
    (so that members of a group do not talk over each other's context)."""
    if in_group(message) and message.from_user is not None:
        return f"{message.chat_id}:{message.from_user.id}"
    return str(message.chat_id)


def in_group(message: Message) -> bool:
    return message.chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def display_name(message: Message) -> str | None:
    """The display name stored with the user: the sender's in a group, the chat's otherwise."""
    if in_group(message) and message.from_user is not None:
        return message.from_user.full_name
    return message.chat.effective_name


def addressed_to_us(message: Message, bot_id: int, bot_username: str) -> bool:
    """True when a group message replies to one of the bot's messages or mentions @bot_username."""
    if replies_to(message, bot_id):
        return True
    mentions = message.parse_entities([MessageEntity.MENTION]).values()
    return any(mention.lower() == f"@{bot_username.lower()}" for mention in mentions)


def replies_to(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot_id


def without_mention(text: str, bot_username: str) -> str:
    """``text`` with every @bot_username taken out and the spaces tidied."""
    return " ".join(re.sub(rf"@{re.escape(bot_username)}\b", " ", text, flags=re.IGNORECASE).split())


def addressed_to_other_bot(command_text: str, bot_username: str) -> bool:
    """True for ``/cmd@other_bot``: in a group, another bot's command is not ours to answer."""
    head = command_text.split(maxsplit=1)[0] if command_text.strip() else ""
    _, at, target = head.partition("@")
    return bool(at) and target.lower() != bot_username.lower()
