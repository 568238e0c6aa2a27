"""The dialogue manager: per-conversation history in, a reply out, every turn stored."""
