"""Conversation storage: ORM models, the records and ConversationStore contract the dialogue manager reads and
writes through, the SQL store, transactions, engines, migrations and maintenance."""
