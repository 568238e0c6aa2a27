"""Quantization: int8 weights for fast CPU inference.

PyTorch's dynamic quantization stores the weights of the RNN and linear layers as int8 and quantizes activations on
the fly, per batch. Small-batch decoding is bound by how fast the weights stream from memory, so a quarter of the
bytes makes replies 1.5–1.8× faster (BENCHMARKS.md, "Reply latency"), at a perplexity within a fraction of a
percent of fp32 (a test holds it there). The embeddings stay in fp32; training always uses the fp32 model.

Before quantizing, the encoder's two directions are paired into one RNN (model/encoder.py): an int8 step at a batch
of one is mostly the kernels' fixed cost, so one RNN of twice the width reads a context in about two thirds of the
time of two (BENCHMARKS.md, "Reply latency").
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from chatbot.model.seq2seq import Seq2Seq


def quantize(model: Seq2Seq) -> Seq2Seq:
    """An int8 copy of ``model`` for CPU inference, its encoder's directions paired (the original is left as it
    is)."""
    inference = copy.deepcopy(model).cpu()
    inference.encoder.pair_directions()
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it will move to torchao; torchao quantizes only nn.Linear, not the RNNs
        # that dominate decoding, so the pinned torch's own implementation is the one that helps here.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        quantized: Seq2Seq = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            inference, {nn.GRU, nn.LSTM, nn.Linear}, dtype=torch.qint8, inplace=True
        )
    return quantized.eval()
