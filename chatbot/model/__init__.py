"""The attention seq2seq network: encoder, attention, decoder, and the Seq2Seq that joins them."""
