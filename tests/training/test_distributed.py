"""Scale-out: `chatbot train` under torchrun with 2 CPU processes (DDP over gloo), and the helpers beneath it.

torchrun's rendezvous store listens on every interface, so the torchrun test runs in a private network namespace
(``unshare``: only its own loopback exists), which keeps it offline and loopback-only by construction.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.errors import ChatbotError
from chatbot.training.checkpoint import load
from chatbot.training.distributed import World, shard

from .dialogues import write_dialogues

TRAIN_ARGS = ["--epochs", "2", "--batch-size", "8", "--vocab-size", "80", "--hidden-size", "16"]
TRAIN_ARGS += ["--embedding-size", "16", "--precision", "fp32", "--threads", "1"]


def test_world_comes_from_torchruns_environment() -> None:
    assert World.from_environment({}) == World(rank=0, local_rank=0, size=1)
    world = World.from_environment({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (world.rank, world.local_rank, world.size, world.is_main, world.distributed) == (3, 1, 4, False, True)
    with pytest.raises(ChatbotError, match="must be integers"):
        World.from_environment({"WORLD_SIZE": "two"})


def test_shards_are_disjoint_equal_and_cover_all_but_the_remainder() -> None:
    items = list(range(11))
    shards = [shard(items, World(rank, rank, 3)) for rank in range(3)]
    assert [len(part) for part in shards] == [3, 3, 3]
    taken = [item for part in shards for item in part]
    assert len(taken) == len(set(taken)) == 9  # no batch trained twice in an epoch; the remainder waits
    assert shard(items, World()) == items
    with pytest.raises(ChatbotError, match="2 batches cannot feed 3 processes"):
        shard([1, 2], World(0, 0, 3))


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("ip") is None, reason="needs unshare and ip")
def test_torchrun_trains_one_model_with_two_processes(tmp_path: Path) -> None:
    data = write_dialogues(tmp_path / "log.jsonl")
    single = tmp_path / "single"
    result = CliRunner().invoke(cli, ["train", str(data), "--out", str(single), *TRAIN_ARGS])
    assert result.exit_code == 0, result.output

    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    chatbot = ["-m", "chatbot", "train", str(data), "--out", str(out), *TRAIN_ARGS]
    private_network = ["unshare", "--net", "--map-root-user", "sh", "-c", 'ip link set lo up && exec "$0" "$@"']
    process = subprocess.run(
        [*private_network, *torchrun, "--master-port", "29500", *chatbot], capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.count('"model"') == 1  # rank 0 alone reports

    alone = json.loads((single / "metrics.json").read_text())["training"]
    metrics = json.loads((out / "metrics.json").read_text())
    together = metrics["training"]
    assert metrics["processes"] == 2
    assert together["steps"] == alone["steps"] // 2  # each rank steps through half of every epoch's batches
    assert together["target_tokens"] == alone["target_tokens"]  # the halves are disjoint and cover the data
    assert not (tmp_path / "ddp.partial").exists()
    bundle = load(out)
    assert all(torch.isfinite(p).all() for p in bundle.model.parameters())
