"""Conversation storage: ORM models, the ConversationStore protocol with SQL and memory twins, engines."""
