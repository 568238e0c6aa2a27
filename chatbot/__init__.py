"""chatbot: a generative dialogue system built on an attention seq2seq model.

Data flows one way:
  dialogue logs -> corpora (Conversation) -> text (sentencepiece pieces, context/response pairs) -> model (Seq2Seq)
  -> search (greedy decoding) -> generation (ResponseGenerator) -> dialogue (DialogueManager) -> storage (SQL)
  and channels (the terminal REPL, Telegram) only translate I/O to and from the DialogueManager.
"""

__version__ = "0.1.0"
