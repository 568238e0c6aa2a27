"""Text processing: the sentencepiece tokenizer, context/response pairs, and padded batches."""
