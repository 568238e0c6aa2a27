"""Channels translate between a medium (terminal, Telegram) and the DialogueManager; nothing deeper."""
