"""Checkpoint: a saved model directory reloads to identical outputs; broken directories give clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from chatbot.errors import ModelError
from chatbot.training import checkpoint


def test_round_trip_gives_identical_outputs(tiny_model_dir: Path, tmp_path: Path) -> None:
    bundle = checkpoint.load(tiny_model_dir)
    copy = tmp_path / "copy"
    checkpoint.save(copy, bundle, checkpoint_train_config(tiny_model_dir), {"note": "copy"})
    again = checkpoint.load(copy)
    source = torch.tensor([bundle.tokenizer.encode("<usr> hi there")])
    target = torch.tensor([[bundle.tokenizer.bos_id, 5, 6]])
    torch.testing.assert_close(bundle.model(source, target), again.model(source, target), rtol=0, atol=0)
    assert again.tokenizer.model_proto == bundle.tokenizer.model_proto
    assert again.context == bundle.context
    assert json.loads((copy / "metrics.json").read_text()) == {"note": "copy"}


def test_fp16_weights_take_half_the_file_and_load_as_the_rounded_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    bundle = checkpoint.load(tiny_model_dir)
    half = tmp_path / "half"
    checkpoint.save(half, bundle, replace(checkpoint_train_config(tiny_model_dir), weights="fp16"), {})
    stored = torch.load(half / "model.pt", weights_only=True)
    assert {tensor.dtype for tensor in stored.values()} == {torch.float16}
    assert (half / "model.pt").stat().st_size < 0.6 * (tiny_model_dir / "model.pt").stat().st_size
    loaded = checkpoint.load(half).model
    checkpoint.round_weights(bundle.model, "fp16")  # what the trainer does before measuring the model it saves
    for name, tensor in bundle.model.state_dict().items():
        assert loaded.state_dict()[name].dtype == torch.float32
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_a_weight_fp16_cannot_hold_is_a_clear_error(tiny_model_dir: Path) -> None:
    from chatbot.errors import ChatbotError

    model = checkpoint.load(tiny_model_dir).model
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = 1e6
    with pytest.raises(ChatbotError, match="beyond what fp16 stores; save it as fp32"):
        checkpoint.round_weights(model, "fp16")


def test_save_replaces_atomically_and_leaves_no_temporary_directories(tiny_model_dir: Path, tmp_path: Path) -> None:
    bundle = checkpoint.load(tiny_model_dir)
    target = tmp_path / "model"
    for _ in range(2):
        checkpoint.save(target, bundle, checkpoint_train_config(tiny_model_dir), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "metrics.json",
        "model.pt",
        "tokenizer.model",
    ]


def test_missing_directory_says_how_to_get_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="chatbot train"):
        checkpoint.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model.pt").unlink(), "missing model.pt"),
        (lambda d: (d / "config.json").write_text("{not json"), "unreadable"),
        (lambda d: (d / "config.json").write_text('{"format_version": 99}'), "format 99"),
        (lambda d: (d / "model.pt").write_bytes(b"garbage"), "damaged"),
        (lambda d: torch.save({"encoder.rnn.weight": torch.zeros(1)}, d / "model.pt"), "do not fit"),
        (lambda d: _resize_hidden(d, 64), "damaged"),
    ],
)
def test_broken_directories_are_model_errors(tiny_model_dir: Path, tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    damage(broken)
    with pytest.raises(ModelError, match=message) as caught:
        checkpoint.load(broken)
    assert "\n" not in str(caught.value)


def _resize_hidden(directory: Path, hidden_size: int) -> None:
    config = json.loads((directory / "config.json").read_text())
    config["model"]["hidden_size"] = hidden_size
    (directory / "config.json").write_text(json.dumps(config))


def checkpoint_train_config(model_dir: Path):  # type: ignore[no-untyped-def]
    from chatbot.config import TrainConfig, from_dict

    return from_dict(TrainConfig, json.loads((model_dir / "config.json").read_text())["train"])


def test_attach_records_only_the_new_files_digest(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Attaching a reply index keeps the recorded digests of the other files, so damage done before still shows."""
    from chatbot.reply_index import FILE_NAME

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = json.loads((model / "config.json").read_text())["sha256"]
    weights = bytearray((model / "model.pt").read_bytes())
    weights[-10] ^= 0xFF
    (model / "model.pt").write_bytes(bytes(weights))
    checkpoint.attach(model, {FILE_NAME: b"index bytes"})
    after = json.loads((model / "config.json").read_text())["sha256"]
    assert {k: v for k, v in after.items() if k != FILE_NAME} == before
    assert after[FILE_NAME] == hashlib.sha256(b"index bytes").hexdigest()
    with pytest.raises(ModelError, match=r"model\.pt is not the file saved"):
        checkpoint.load(model)
