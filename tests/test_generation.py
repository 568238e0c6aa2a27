"""ResponseGenerator: cheap construction, lazy cached weights, non-empty replies that follow the training data."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ChatbotError, ModelError
from chatbot.generation import ResponseGenerator


def test_weights_load_lazily_once(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)
    assert generator._bundle is None
    assert generator.history_turns == 3
    first = generator.load()
    assert generator.load() is first


def test_replies_follow_the_training_conversations(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)
    reply = generator.reply([Turn(Role.USER, "do you have any pets?")]).text
    assert reply == "yes, a cat named pepper"
    batch = generator.generate(["<usr> do you have any pets?", "<usr> whatever, something unseen"])
    assert batch[0] == reply
    assert all(text.strip() for text in batch)


def test_a_missing_model_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model directory"):
        ResponseGenerator(tmp_path / "missing")


def test_an_unsure_reply_is_withheld_below_min_confidence(tiny_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig

    history = [Turn(Role.USER, "whatever, something unseen")]
    ((text, confidence),) = ResponseGenerator(tiny_model_dir).generate_scored(["<usr> whatever, something unseen"])
    assert 0 < confidence < 1
    sure = ResponseGenerator(tiny_model_dir, DecodeConfig(min_confidence=confidence * 0.99)).reply(history)
    unsure = ResponseGenerator(tiny_model_dir, DecodeConfig(min_confidence=confidence * 1.01)).reply(history)
    assert (sure.text, unsure.text) == (text, None)
    assert sure.score == unsure.score == pytest.approx(confidence)  # the score is kept either way


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_every_strategy_replies_from_the_generator(tiny_model_dir: Path, strategy: str) -> None:
    from chatbot.config import DecodeConfig

    config = DecodeConfig(strategy=strategy, block_ngram=3, block_context_ngram=3, n_best=3, mmi_weight=0.3)
    reply = ResponseGenerator(tiny_model_dir, config).reply([Turn(Role.USER, "do you have any pets?")]).text
    assert reply and reply.strip()


def test_a_users_settings_override_the_model_decoding_and_are_reported(tiny_model_dir: Path) -> None:
    import hashlib

    from chatbot.dialogue.settings import DecodeSettings

    generator = ResponseGenerator(tiny_model_dir)
    history = [Turn(Role.USER, "do you have any pets?")]
    plain = generator.reply(history)
    beam = generator.reply(history, DecodeSettings(mode="beam", beam_size=3))
    assert (plain.decoding["strategy"], beam.decoding["strategy"], beam.decoding["beam_size"]) == ("greedy", "beam", 3)
    assert beam.decoding["block_ngram"] == plain.decoding["block_ngram"]  # what the user did not choose stays
    sampled = generator.reply(history, DecodeSettings(mode="sample", temperature=0.5, top_p=0.8))
    assert (sampled.decoding["temperature"], sampled.decoding["top_p"]) == (0.5, 0.8)
    weights = hashlib.sha256((tiny_model_dir / "model.pt").read_bytes()).hexdigest()
    assert plain.model == f"tiny@{weights[:12]}"
    assert ResponseGenerator(tiny_model_dir, quantized=True).reply(history).model == f"tiny@{weights[:12]}+int8"


def test_retrieved_candidates_carry_their_training_conversation(tiny_indexed_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig

    history = [Turn(Role.USER, "so do you have any pets?")]
    retrieved = ResponseGenerator(tiny_indexed_model_dir, DecodeConfig(candidates="retrieved")).reply(history)
    assert (retrieved.text, retrieved.source) == ("yes, a cat named pepper", "sample-4")
    assert retrieved.decoding["candidates"] == "retrieved"
    both = ResponseGenerator(tiny_indexed_model_dir, DecodeConfig(candidates="both", mmi_weight=0.5)).reply(history)
    assert both.text == "yes, a cat named pepper"  # generated and retrieved agree; the first found keeps it
    assert both.source == "generated"


def test_the_question_after_an_answer_finds_its_reply_by_the_last_sentence(tiny_indexed_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig

    # The whole message's best match is the neighbours' key; the question it ends with goes unanswered.
    history = [Turn(Role.USER, "not really, the neighbours were loud. do you have any pets?")]
    plain = DecodeConfig(candidates="retrieved", retrieved=1)
    assert ResponseGenerator(tiny_indexed_model_dir, plain).reply(history).text == "oh no, that sounds rough"
    both = DecodeConfig(candidates="retrieved", retrieved=1, last_sentence_retrieved=1)
    reply = ResponseGenerator(tiny_indexed_model_dir, both).reply(history)
    assert (reply.text, reply.source) == ("yes, a cat named pepper", "sample-4")
    assert reply.decoding["last_sentence_retrieved"] == 1  # stored in the reply's provenance
    with pytest.raises(ChatbotError, match="last_sentence_retrieved at least 0"):
        DecodeConfig(last_sentence_retrieved=-1)


def test_retrieved_alone_falls_back_to_the_search_when_nothing_is_found(tiny_indexed_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig

    history = [Turn(Role.USER, "zebra xylophone quux")]  # no word of it is in the index
    reply = ResponseGenerator(tiny_indexed_model_dir, DecodeConfig(candidates="retrieved")).reply(history)
    assert reply.text and reply.source == "generated"


def test_candidates_without_a_reply_index_fail_at_construction(tiny_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig

    with pytest.raises(ModelError, match="no reply index"):
        ResponseGenerator(tiny_model_dir, DecodeConfig(candidates="both"))
    assert ResponseGenerator(tiny_model_dir, DecodeConfig(candidates="generated")).reply([Turn(Role.USER, "hi")]).text


def test_a_damaged_reply_index_fails_the_digest_check(tiny_indexed_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from chatbot.reply_index import FILE_NAME
    from chatbot.training import checkpoint, config_json

    copy = tmp_path / "model"
    shutil.copytree(tiny_indexed_model_dir, copy)
    assert FILE_NAME in config_json.read_config(copy)["sha256"]
    data = bytearray((copy / FILE_NAME).read_bytes())
    data[-100] ^= 0xFF
    (copy / FILE_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"{FILE_NAME} is not the file saved with this model"):
        checkpoint.load(copy)


def test_a_heavy_semantic_weight_sends_the_candidate_closest_to_the_context(tiny_indexed_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig
    from chatbot.reply_index import FILE_NAME, ReplyIndex
    from chatbot.training import checkpoint

    message = "what do you do for work"
    index = ReplyIndex(tiny_indexed_model_dir / FILE_NAME)
    found, vectors = index.search(message, 10), index.vectors
    assert len(found) >= 2 and vectors is not None
    # The message is read by the index's student of the encoder; the replies' vectors are the encoder's own.
    context = vectors.pieces.encode([checkpoint.load(tiny_indexed_model_dir).tokenizer.encode(message)])[0]
    closest = max(found, key=lambda r: float(vectors.replies[r.row] @ context))
    history = [Turn(Role.USER, message)]
    heavy = DecodeConfig(candidates="retrieved", retrieved=10, semantic_weight=1000.0)
    reply = ResponseGenerator(tiny_indexed_model_dir, heavy).reply(history)
    assert (reply.text, reply.source) == (closest.text.lower(), closest.conversation)
    assert reply.decoding["semantic_weight"] == 1000.0
    unweighted = DecodeConfig(candidates="retrieved", retrieved=10)
    assert ResponseGenerator(tiny_indexed_model_dir, unweighted).reply(history).text != reply.text  # it decided
    # The model's own n-best compete too: the student reads them at reply time; the retrieved are in the index.
    both = DecodeConfig(candidates="both", retrieved=10, semantic_weight=1000.0, strategy="beam", n_best=3)
    assert ResponseGenerator(tiny_indexed_model_dir, both).reply(history).text


@pytest.mark.reliability
def test_semantic_scoring_with_an_index_that_has_no_vectors_says_to_rebuild_it(
    tiny_indexed_model_dir: Path, tmp_path: Path
) -> None:
    import shutil
    import sqlite3

    from chatbot.config import DecodeConfig
    from chatbot.reply_index import FILE_NAME

    copy = tmp_path / "model"
    shutil.copytree(tiny_indexed_model_dir, copy)
    with sqlite3.connect(copy / FILE_NAME) as database:  # an index written by an earlier version (format 3)
        database.execute("DELETE FROM blobs WHERE name = 'pieces'")
        database.execute("UPDATE meta SET value = '3' WHERE name = 'format_version'")
    (copy / "config.json").write_text(  # its digest is no longer the saved one: drop the check for this test
        (copy / "config.json").read_text().replace(f'"{FILE_NAME}"', '"dropped"')
    )
    history = [Turn(Role.USER, "do you have any pets?")]
    assert ResponseGenerator(copy, DecodeConfig(candidates="retrieved")).reply(history).text  # still serves
    with pytest.raises(ModelError, match="rebuild it with `chatbot index"):
        ResponseGenerator(copy, DecodeConfig(candidates="retrieved", semantic_weight=1.0)).reply(history)
