"""The `chatbot` command through click's CliRunner: the scripted contract, every command, precedence, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.storage.transactions import engine_of

# Small and quick; later flags of the same name win, so a test can override one.
TINY_TRAIN_ARGS = [
    "--epochs",
    "1",
    "--batch-size",
    "8",
    "--vocab-size",
    "150",
    "--hidden-size",
    "16",
    "--embedding-size",
    "16",
    "--precision",
    "fp32",
]
COMMANDS = [["chat"], ["train"], ["eval"], ["telegram"], ["db"], ["db", "upgrade"], ["export"], ["index"]]


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'chat.sqlite3'}"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_piped_chat_prints_one_line_per_message_and_stores_turns(
    runner: CliRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    stdin = "do you have any pets?\n\nhow old is she?\n/help\n/reset\nwhat's your favourite food?\n"
    result = runner.invoke(
        cli, ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path), "--user", "ann"], input=stdin
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 5  # the blank line is not a message
    assert lines[0] == "yes, a cat named pepper"  # the tiny model learned the sample logs
    assert lines[2].startswith("Commands:") and "/quit" in lines[2]
    assert lines[3] == "Started a new conversation."
    assert all(line.strip() for line in lines)
    exported = export(runner, tmp_path)
    assert [c["id"].split(":")[:2] for c in exported] == [["terminal", "ann"], ["terminal", "ann"]]
    assert [len(c["turns"]) for c in exported] == [4, 2]


def test_quit_ends_the_session_early(runner: CliRunner, tiny_model_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path)], input="hi\n/quit\nignored\n"
    )
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1


def export(runner: CliRunner, tmp_path: Path) -> list[dict]:  # type: ignore[type-arg]
    out = tmp_path / "export.jsonl"
    result = runner.invoke(cli, ["export", "--db", db_url(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_exported_conversations_train_a_new_model(runner: CliRunner, tiny_model_dir: Path, tmp_path: Path) -> None:
    runner.invoke(
        cli, ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path)], input="hello\nhow are you?\n"
    )
    export(runner, tmp_path)
    out = tmp_path / "retrained"
    args = ["train", str(tmp_path / "export.jsonl"), "--out", str(out), *TINY_TRAIN_ARGS, "--vocab-size", "60"]
    result = runner.invoke(cli, [*args, "--strategy", "sample", "--top-p", "0.8", "--n-best", "3"])
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").is_file()
    decode = json.loads((out / "config.json").read_text())["decode"]  # the decoding flags: the model's defaults
    assert (decode["strategy"], decode["top_p"], decode["n_best"], decode["temperature"]) == ("sample", 0.8, 3, 1.0)


def test_train_then_eval_prints_perplexities(runner: CliRunner, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    args = ["train", str(sample_path), "--out", str(out), *TINY_TRAIN_ARGS, "--epochs", "2"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "corpus: train" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.json",
        "metrics.jsonl",
        "model.pt",
        "tokenizer.model",
        "training_curve.png",
    ]
    assert (out / "training_curve.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    history = json.loads((out / "metrics.json").read_text())["training"]["history"]
    assert [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()] == history
    again = runner.invoke(cli, args)
    assert again.exit_code == 2 and "--force" in again.stderr
    result = runner.invoke(cli, ["eval", "--model", str(out), str(sample_path), "--limit", "10"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["pairs"] == 10
    assert metrics["word_perplexity"] > 1 and metrics["token_perplexity"] > 1


@pytest.mark.reliability
def test_malformed_log_is_one_line_exit_2_and_nothing_written(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": ["a", "b"]}\n{"turns": "nope"}\n')
    result = runner.invoke(cli, ["train", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f'Error: {bad}:2: expected an object with a "turns" list'
    assert not (tmp_path / "out").exists()


def test_missing_model_says_how_to_get_one(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["chat", "--model", str(tmp_path / "none"), "--db", db_url(tmp_path)], input="hi\n")
    assert result.exit_code == 2
    assert "chatbot train" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_database_is_a_clear_error(runner: CliRunner, tiny_model_dir: Path) -> None:
    url = "postgresql://bob:hunter2@127.0.0.1:1/chat?connect_timeout=2"
    result = runner.invoke(cli, ["chat", "--model", str(tiny_model_dir), "--db", url], input="hi\n")
    assert result.exit_code == 2
    assert "cannot open database" in result.stderr and "hunter2" not in result.stderr


def test_db_upgrade(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["db", "upgrade", "--db", db_url(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.stdout
    assert (tmp_path / "chat.sqlite3").is_file()


def test_default_database_lives_in_the_user_data_directory(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert (tmp_path / "data" / "chatbot" / "chatbot.sqlite3").is_file()


def test_flag_beats_env_beats_config_beats_default(
    runner: CliRunner, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "chatbot.toml"
    config.write_text(f'db = "{db_url(tmp_path)}"\nmodel = "{tiny_model_dir}"\n[chat]\nuser = "from-config"\n')

    def chat_user(*extra: str) -> str:
        assert runner.invoke(cli, ["--config", str(config), "chat", *extra], input="hi\n").exit_code == 0
        return str(export(runner, tmp_path)[-1]["id"].split(":")[1])

    assert chat_user() == "from-config"
    monkeypatch.setenv("CHATBOT_USER", "from-env")
    assert chat_user() == "from-env"
    assert chat_user("--user", "from-flag") == "from-flag"


def test_broken_config_file_is_a_clear_error(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("db = [unclosed\n")
    result = runner.invoke(cli, ["--config", str(config), "db", "upgrade"])
    assert result.exit_code == 2
    assert "invalid TOML" in result.stderr


def test_any_option_from_its_env_variable_or_a_dashed_config_key(
    runner: CliRunner, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "chatbot.toml"
    config.write_text("[train]\nhidden-size = 12\nembedding_size = 8\n")
    monkeypatch.setenv("CHATBOT_TRAIN_EPOCHS", "1")
    monkeypatch.setenv("CHATBOT_TRAIN_VOCAB_SIZE", "120")
    out = tmp_path / "model"
    result = runner.invoke(cli, ["--config", str(config), "train", str(sample_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["epochs"] == 1
    assert saved["tokenizer"]["vocab_size"] == 120
    assert (saved["model"]["hidden_size"], saved["model"]["embedding_size"]) == (12, 8)


def test_chat_and_export_on_postgres(
    runner: CliRunner, tiny_model_dir: Path, postgres_url: str, tmp_path: Path
) -> None:
    chat = runner.invoke(cli, ["chat", "--model", str(tiny_model_dir), "--db", postgres_url], input="hello\nhi\n")
    assert chat.exit_code == 0, chat.output
    out = tmp_path / "pg.jsonl"
    result = runner.invoke(cli, ["export", "--db", postgres_url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    (conversation,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert [turn["speaker"] for turn in conversation["turns"]] == ["user", "bot", "user", "bot"]


def test_eval_on_an_empty_split_is_a_clear_error(runner: CliRunner, tiny_model_dir: Path, sample_path: Path) -> None:
    result = runner.invoke(cli, ["eval", "--model", str(tiny_model_dir), str(sample_path), "--split", "valid"])
    assert result.exit_code == 2
    assert "no (valid) context/response pairs" in result.stderr


def test_train_from_the_bots_own_database(runner: CliRunner, tiny_model_dir: Path, tmp_path: Path) -> None:
    for user in ("ann", "bob", "cy"):  # distinct lines: identical conversations would be deduplicated
        lines = f"hello, i am {user}\nhow are you, {user}?\n{user} likes fun\n"
        runner.invoke(
            cli, ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path), "--user", user], input=lines
        )
    out = tmp_path / "retrained"
    args = ["train", "--from-db", db_url(tmp_path), "--out", str(out), *TINY_TRAIN_ARGS, "--vocab-size", "60"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    # Three conversations of six turns (user, bot, ...) give five pairs each, spread over the splits.
    assert sum(int(count) for count in re.findall(r"(\d+) pairs", result.stderr)) == 15
    assert (out / "model.pt").is_file()


def test_train_with_fp16_weights_records_the_metrics_of_what_it_saved(
    runner: CliRunner, sample_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    args = ["train", str(sample_path), "--out", str(out), "--weights", "fp16", *TINY_TRAIN_ARGS]
    assert runner.invoke(cli, args).exit_code == 0
    assert {tensor.dtype for tensor in torch.load(out / "model.pt", weights_only=True).values()} == {torch.float16}
    recorded = json.loads((out / "metrics.json").read_text())
    assert json.loads((out / "config.json").read_text())["train"]["weights"] == "fp16"
    result = runner.invoke(cli, ["eval", "--model", str(out), str(sample_path), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["word_perplexity"] == recorded["test"]["word_perplexity"]


def test_train_needs_a_source(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["train", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "--from-db" in result.stderr


def test_eval_of_the_test_split_reproduces_the_training_metrics(
    runner: CliRunner, sample_path: Path, tmp_path: Path
) -> None:
    # The duplicated conversation lands in train and test alike: cleaning must drop it from test both times.
    data = tmp_path / "logs.jsonl"
    data.write_text(sample_path.read_text() + sample_path.read_text().replace('"id": "sample-', '"id": "copy-'))
    out = tmp_path / "model"
    assert runner.invoke(cli, ["train", str(data), "--out", str(out), *TINY_TRAIN_ARGS]).exit_code == 0
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["cleaning"]["duplicates"] + recorded["cleaning"]["also_in_train"] > 0
    result = runner.invoke(cli, ["eval", "--model", str(out), str(data), "--split", "test"])
    assert result.exit_code == 0, result.output
    fresh = json.loads(result.stdout)
    assert fresh["pairs"] == recorded["test"]["pairs"]
    assert fresh["word_perplexity"] == recorded["test"]["word_perplexity"]


def test_training_options_are_stored_with_the_model(runner: CliRunner, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    extra = [
        "--label-smoothing",
        "0.1",
        "--weight-decay",
        "0.01",
        "--warmup-steps",
        "3",
        "--lr-schedule",
        "plateau",
        "--patience",
        "2",
        "--max-reply-words",
        "12",
        "--keep-duplicates",
        "--short-context-share",
        "0.5",
    ]
    result = runner.invoke(cli, ["train", str(sample_path), "--out", str(out), *TINY_TRAIN_ARGS, *extra])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert {
        k: saved["train"][k] for k in ("label_smoothing", "weight_decay", "warmup_steps", "lr_schedule", "patience")
    } == {"label_smoothing": 0.1, "weight_decay": 0.01, "warmup_steps": 3, "lr_schedule": "plateau", "patience": 2}
    assert saved["data"] == {"dedupe": False, "min_reply_words": 1, "max_reply_words": 12, "short_context_share": 0.5}
    assert json.loads((out / "metrics.json").read_text())["short_context_pairs"] > 0


def test_init_from_fine_tunes_a_trained_model_keeping_its_tokenizer_and_shape(
    runner: CliRunner, tiny_model_dir: Path, sample_path: Path, tmp_path: Path
) -> None:
    out, start = tmp_path / "tuned", ["--init-from", str(tiny_model_dir)]
    args = ["train", str(sample_path), "--out", str(out), "--epochs", "1", "--batch-size", "8", "--precision", "fp32"]
    result = runner.invoke(cli, [*args, *start, "--dropout", "0.2", "--hidden-size", "32"])  # its own size: allowed
    assert result.exit_code == 0, result.output
    assert (out / "tokenizer.model").read_bytes() == (tiny_model_dir / "tokenizer.model").read_bytes()
    before, after = (json.loads((d / "config.json").read_text()) for d in (tiny_model_dir, out))
    assert after["model"] == {**before["model"], "dropout": 0.2}
    assert after["context"] == before["context"]
    assert after["sha256"]["model.pt"] != before["sha256"]["model.pt"], "it trained"
    recorded = json.loads((out / "metrics.json").read_text())["init_from"]
    assert recorded == {"model": str(tiny_model_dir), "model.pt sha256": before["sha256"]["model.pt"]}
    # It starts where the model left off: on its own training data, one more epoch is no worse than it was.
    evaluate = ["eval", str(sample_path), "--split", "train", "--model"]
    losses = [json.loads(runner.invoke(cli, [*evaluate, str(d)]).output)["loss"] for d in (tiny_model_dir, out)]
    assert losses[1] < losses[0] * 1.05, losses


def test_init_from_refuses_a_flag_that_would_change_the_model(
    runner: CliRunner, tiny_model_dir: Path, sample_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned"
    for flag, value in (("--hidden-size", "64"), ("--vocab-size", "300"), ("--history-turns", "5")):
        result = runner.invoke(
            cli, ["train", str(sample_path), "--out", str(out), "--init-from", str(tiny_model_dir), flag, value]
        )
        assert result.exit_code == 2 and f"{flag} {value} differs from --init-from" in result.output, result.output
    missing = runner.invoke(cli, ["train", str(sample_path), "--out", str(out), "--init-from", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "Traceback" not in missing.output
    assert not out.exists(), "nothing written"


def test_token_budget_batches_train(runner: CliRunner, sample_path: Path, tmp_path: Path) -> None:
    steps = {}
    for budget in ("0", "200"):
        out = tmp_path / f"model-{budget}"
        args = ["train", str(sample_path), "--out", str(out), *TINY_TRAIN_ARGS, "--batch-tokens", budget]
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        steps[budget] = json.loads((out / "metrics.json").read_text())["training"]["steps"]
    assert steps["200"] > steps["0"]  # the budget splits the long pairs' batches


def test_every_model_option_trains_and_chats(runner: CliRunner, sample_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    options = ["--cell", "lstm", "--attention", "additive", "--unidirectional", "--tie-embeddings"]
    options += ["--share-embeddings", "--encoder-layers", "2", "--scheduled-sampling", "inverse_sigmoid"]
    result = runner.invoke(cli, ["train", str(sample_path), "--out", str(out), *TINY_TRAIN_ARGS, *options])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    shape = {k: saved["model"][k] for k in ("cell", "attention", "bidirectional", "tie_embeddings", "share_embeddings")}
    assert shape == {
        "cell": "lstm",
        "attention": "additive",
        "bidirectional": False,
        "tie_embeddings": True,
        "share_embeddings": True,
    }
    assert saved["train"]["scheduled_sampling"] == "inverse_sigmoid"
    result = runner.invoke(cli, ["chat", "--model", str(out), "--db", db_url(tmp_path)], input="hello\nhow are you?\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2


def test_eval_reports_generated_reply_quality_and_compares_two_models(
    runner: CliRunner, tiny_model_dir: Path, sample_path: Path
) -> None:
    args = ["eval", "--model", str(tiny_model_dir), str(sample_path), "--limit", "12", "--replies", "6"]
    result = runner.invoke(cli, [*args, "--strategy", "beam", "--beam-size", "3", "--compare", str(tiny_model_dir)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    replies = metrics["replies"]
    assert replies["replies"] == 6 and replies["decode"]["strategy"] == "beam" and replies["decode"]["beam_size"] == 3
    assert set(replies) >= {"bleu", "unigram_f1", "distinct_1", "distinct_2", "average_length", "generic_rate"}
    assert set(replies) >= {"empty_rate", "looping_rate"}
    assert 0 < replies["latency_p50_ms"] <= replies["latency_p95_ms"]
    assert replies["unigram_f1"] > 0.3  # the tiny model learned the sample logs it is scored on
    assert metrics["compare"]["word_perplexity"] == metrics["word_perplexity"]
    assert "metric" in result.stderr and "unigram_f1" in result.stderr


def test_eval_of_sampled_replies_is_reproduced_by_its_seed(
    runner: CliRunner, tiny_model_dir: Path, sample_path: Path
) -> None:
    args = ["eval", "--model", str(tiny_model_dir), str(sample_path), "--limit", "12", "--replies", "12"]
    sampled = [*args, "--strategy", "sample", "--temperature", "3.0"]  # flat: draws differ from seed to seed

    def qualities(*extra: str) -> dict[str, float]:
        result = runner.invoke(cli, [*sampled, *extra])
        assert result.exit_code == 0, result.output
        replies = json.loads(result.stdout)["replies"]
        return {name: value for name, value in replies.items() if not name.startswith("latency")}

    first = qualities()
    assert qualities("--seed", "0") == first
    assert qualities("--seed", "1") != first


def test_decoding_flags_override_what_the_model_stores(
    runner: CliRunner, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from chatbot.cli.wiring import decode_config

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config["decode"] = {"strategy": "beam", "beam_size": 4, "max_length": 20}
    (model / "config.json").write_text(json.dumps(config))
    empty = {"strategy": None, "beam_size": None, "max_length": None, "block_ngram": None}
    stored = decode_config(model, dict(empty))
    assert (stored.strategy, stored.beam_size, stored.max_length, stored.block_ngram) == ("beam", 4, 20, 3)
    given = decode_config(model, {**empty, "beam_size": 2, "block_ngram": 0})
    assert (given.strategy, given.beam_size, given.block_ngram) == ("beam", 2, 0)

    chat = ["chat", "--model", str(model), "--db", db_url(tmp_path)]
    monkeypatch.setenv("CHATBOT_CHAT_STRATEGY", "sample")
    result = runner.invoke(cli, [*chat, "--top-k", "1"], input="do you have any pets?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "yes, a cat named pepper\n"  # top-k 1 sampling is greedy
    result = runner.invoke(cli, [*chat, "--temperature", "0"], input="hi\n")
    assert result.exit_code == 2 and "temperature must be positive" in result.stderr

    monkeypatch.delenv("CHATBOT_CHAT_STRATEGY")
    settings = tmp_path / "config.toml"
    settings.write_text('[chat]\nstrategy = "sample"\ntop-k = 1\nmax-length = 2\n')
    result = runner.invoke(cli, ["--config", str(settings), *chat], input="do you have any pets?\n")
    assert result.exit_code == 0, result.output
    assert "yes, a cat named pepper".startswith(result.stdout.strip()) and len(result.stdout.split()) <= 2


def test_piped_export_and_forget_and_a_bad_session_timeout(
    runner: CliRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    chat = ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path), "--user", "ann"]
    result = runner.invoke(cli, [*chat, "--session-timeout", "2h"], input="do you have any pets?\n/export\n/forget\n")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == "you: do you have any pets? bot: yes, a cat named pepper"  # piped: one line per reply
    assert lines[2].startswith("Deleted your 2 stored messages")
    assert export(runner, tmp_path) == []
    result = runner.invoke(cli, [*chat, "--session-timeout", "soon"], input="hi\n")
    assert result.exit_code == 2 and "not a duration" in result.stderr


def test_export_one_user_or_a_time_range(runner: CliRunner, tiny_model_dir: Path, tmp_path: Path) -> None:
    for user in ("ann", "bob"):
        chat = ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path), "--user", user]
        assert runner.invoke(cli, chat, input="hello\n").exit_code == 0

    def exported(*options: str) -> list[str]:
        out = tmp_path / "some.jsonl"
        result = runner.invoke(cli, ["export", "--db", db_url(tmp_path), "--out", str(out), *options])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["id"].split(":")[1] for line in out.read_text().splitlines()]

    assert exported() == ["ann", "bob"]
    assert exported("--user", "terminal:bob") == ["bob"]
    assert exported("--user", "telegram") == []
    assert exported("--since", "2000-01-01", "--until", "2999-01-01T00:00") == ["ann", "bob"]
    assert exported("--since", "2999-01-01") == []
    result = runner.invoke(cli, ["export", "--db", db_url(tmp_path), "--out", str(tmp_path / "x"), "--since", "May"])
    assert result.exit_code == 2 and "--since 'May' is not an ISO date" in result.stderr


def test_a_reply_index_is_written_only_when_asked_for_own_logs(
    runner: CliRunner, sample_path: Path, tmp_path: Path
) -> None:
    from chatbot.corpora import is_public_corpus
    from chatbot.reply_index import FILE_NAME

    plain, indexed = tmp_path / "plain", tmp_path / "indexed"
    assert runner.invoke(cli, ["train", str(sample_path), "--out", str(plain), *TINY_TRAIN_ARGS]).exit_code == 0
    assert not (plain / FILE_NAME).exists()  # a user's own logs are not repeated word for word unless asked
    refused = runner.invoke(cli, ["train", str(sample_path), "--out", str(tmp_path / "x"), "--candidates", "both"])
    assert refused.exit_code == 2 and "needs the reply index: add --reply-index" in refused.output
    assert not (tmp_path / "x").exists()  # refused before any work
    args = ["train", str(sample_path), "--out", str(indexed), *TINY_TRAIN_ARGS, "--reply-index", "--candidates", "both"]
    assert runner.invoke(cli, args).exit_code == 0
    assert (indexed / FILE_NAME).is_file()
    assert json.loads((indexed / "config.json").read_text())["decode"]["candidates"] == "both"
    chat = runner.invoke(cli, ["chat", "--model", str(indexed), "--db", f"sqlite:///{tmp_path / 'c.db'}"], input="hi\n")
    assert chat.exit_code == 0 and chat.output.strip()
    assert is_public_corpus("chitchat") and is_public_corpus("chatterbot:english/greetings")
    assert not is_public_corpus(str(sample_path)) and not is_public_corpus("sqlite:///bot.db")


def test_index_adds_a_reply_index_to_a_trained_model(
    runner: CliRunner, tiny_model_dir: Path, sample_path: Path, tmp_path: Path
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    db = f"sqlite:///{tmp_path / 'c.db'}"
    refused = runner.invoke(cli, ["chat", "--model", str(model), "--db", db, "--candidates", "retrieved"], input="x\n")
    assert refused.exit_code == 2 and "no reply index" in refused.output
    result = runner.invoke(cli, ["index", "--model", str(model), str(sample_path), "--candidates", "retrieved"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["reply_index_bytes"] > 0
    stored = json.loads((model / "config.json").read_text())["decode"]
    assert stored["candidates"] == "retrieved"  # a decoding flag of `index` becomes the model's default
    before = json.loads((tiny_model_dir / "config.json").read_text())["decode"]
    assert {**stored, "candidates": before["candidates"]} == before  # the flags not given keep the model's values
    chat = runner.invoke(cli, ["chat", "--model", str(model), "--db", db], input="do you have any pets?\n/why\n")
    assert chat.exit_code == 0, chat.output
    assert "yes, a cat named pepper" in chat.output
    assert "Source: retrieved from training conversation sample-4" in chat.output
    missing = runner.invoke(cli, ["index", "--model", str(model), str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command below ``group``, with the names that reach it."""
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


def test_top_level_config_keys_reach_every_command_with_that_option(tmp_path: Path) -> None:
    """Found from the commands themselves: a command added later gets the shared keys without a list to edit."""
    from chatbot.cli.config_file import SHARED_KEYS, config_map

    config = tmp_path / "chatbot.toml"
    config.write_text(
        'db = "sqlite:///x.db"\nmodel = "models/m"\nthreads = 1\npersona = "p.yaml"\n[chat]\nuser = "me"\n'
    )
    defaults = config_map(config, cli)
    checked = 0
    for path, command in _commands(cli):
        table = defaults
        for name in path:
            table = table[name]
        for param in command.params:
            if param.name in SHARED_KEYS:
                shared = {"db": "sqlite:///x.db", "model": "models/m", "threads": 1, "persona": "p.yaml"}
                assert table[param.name] == shared[param.name]
                checked += 1
    assert checked >= 14  # chat, telegram, export, the four db commands (db), eval, export-model, index (model)...
    assert defaults["chat"]["persona"] == defaults["telegram"]["persona"] == "p.yaml"
    assert defaults["chat"]["user"] == "me"  # a command's own table is kept


def test_commands_use_the_configured_database_and_model(
    runner: CliRunner, tiny_model_dir: Path, sample_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only a config file, every --db and --model command reads what it names (db stats, prune and block
    once created the default database instead). Every such command in the tree must be run here."""
    import importlib
    import shutil

    import chatbot.channels.telegram

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = tmp_path / "chatbot.toml"
    config.write_text(f'db = "{db_url(tmp_path)}"\nmodel = "{model}"\n')
    ran: set[tuple[str, ...]] = set()

    def run(*args: str, given: str | None = None) -> str:
        result = runner.invoke(cli, ["--config", str(config), *args], input=given)
        assert result.exit_code == 0, result.output
        ran.add(args[:2] if args[0] == "db" else args[:1])
        return result.stdout + result.stderr

    run("chat", given="hello\n")
    assert str(tmp_path) in run("db", "upgrade")
    assert json.loads(run("db", "stats"))["conversations"] == 1
    assert json.loads(run("db", "prune", "--older-than", "0m", "--dry-run"))["conversations"] == 1
    run("db", "block", "terminal:someone")
    assert json.loads(run("db", "stats"))["blocked_users"] == 1
    run("export", "--out", str(tmp_path / "out.jsonl"))
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert json.loads(run("export-model", "--out", str(tmp_path / "m.pt")))["model"] == str(model)
    assert json.loads(run("eval", str(sample_path), "--limit", "4", "--replies", "0"))["model"] == str(model)
    assert json.loads(run("index", str(sample_path)))["model"] == str(model)
    built: list[tuple[object, object]] = []  # telegram: which model and database the bot is built on
    command_module = importlib.import_module("chatbot.cli.telegram")  # chatbot.cli.telegram names the command
    monkeypatch.setattr(command_module, "build_manager", lambda model, db, *rest, **options: built.append((model, db)))
    monkeypatch.setattr(chatbot.channels.telegram, "run_telegram", lambda *args: None)
    run("telegram", "--token", "1:x")
    assert [(used, str(engine_of(database).url)) for used, database in built] == [(model, db_url(tmp_path))]
    assert not (tmp_path / "data").exists()  # the default database in the user data directory was never made
    with_options = {path for path, command in _commands(cli) if {"db", "model"} & {p.name for p in command.params}}
    assert with_options <= ran, f"add these commands to this test: {sorted(with_options - ran)}"


def test_chat_answers_from_a_persona_file_and_refuses_a_bad_one(
    runner: CliRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    persona = tmp_path / "persona.yaml"
    persona.write_text('answers:\n  - about: name\n    patterns: ["your name"]\n    reply: "i am tiny."\n')
    base = ["chat", "--model", str(tiny_model_dir), "--db", db_url(tmp_path)]
    answered = runner.invoke(cli, [*base, "--persona", str(persona)], input="what's your name?\n/why\n")
    assert answered.exit_code == 0, answered.output
    assert answered.stdout.splitlines()[0] == "i am tiny."
    assert "Source: the bot's persona (its answer about name), not the model" in answered.stdout
    plain = runner.invoke(cli, [*base, "--persona", "none"], input="what's your name?\n")
    assert plain.exit_code == 0 and plain.stdout.strip() != "i am tiny."  # the model's own answer
    persona.write_text('answers:\n  - about: name\n    patterns: ["(unclosed"]\n    reply: "x"\n')
    refused = runner.invoke(cli, [*base, "--persona", str(persona)], input="hi\n")
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert refused.stderr.strip().startswith(f"Error: {persona}:3: not a regular expression")
