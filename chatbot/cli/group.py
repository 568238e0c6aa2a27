"""The click group class every ``chatbot`` group uses: a ChatbotError is a one-line message, not a traceback."""

from __future__ import annotations

from typing import Any

import click

from chatbot.errors import ChatbotError


class UserError(click.ClickException):
    """A ChatbotError as click shows it: ``Error: <one line>`` on stderr and exit code 2."""

    exit_code = 2


class ChatbotGroup(click.Group):
    """A click group that turns a ChatbotError anywhere below it into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChatbotError as error:
            raise UserError(str(error)) from error
