"""Document text rules and the packaged model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from os_mlt import ConfigurationError, Encoder, document_text
from os_mlt.encoder import text_hash


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param({"title": "A", "body": "B"}, "A\n\nB", id="two-fields"),
        pytest.param({"body": "B", "title": "A"}, "A\n\nB", id="field-order-wins"),
        pytest.param({"title": "  A  ", "body": ""}, "A", id="strip-and-drop-empty"),
        pytest.param({"title": None, "body": "B"}, "B", id="null"),
        pytest.param({"body": "B"}, "B", id="missing"),
        pytest.param(
            {"title": ["x", 1, "", "y"], "body": "B"}, "x\n\ny\n\nB", id="list"
        ),
        pytest.param({"title": 3.5, "body": True}, "", id="non-strings"),
        pytest.param({"title": {"nested": "x"}}, "", id="object"),
    ],
)
def test_document_text(source: dict[str, object], expected: str) -> None:
    assert document_text(source, ["title", "body"]) == expected


def test_document_text_dotted_paths() -> None:
    source = {"meta": {"summary": "nested"}, "a.b": "literal"}
    assert document_text(source, ["meta.summary", "a.b"]) == "nested\n\nliteral"


def test_text_hash_is_stable() -> None:
    assert (
        text_hash("abc")
        == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_packaged_model_encodes_unit_vectors(encoder: Encoder) -> None:
    vectors = encoder.encode(
        ["a library for numerical computing", "a photo editor", "numeric arrays"]
    )
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Related texts are closer than unrelated ones.
    assert float(vectors[0] @ vectors[2]) > float(vectors[0] @ vectors[1])


def test_identity_names_model_and_weights(encoder: Encoder) -> None:
    name, digest = encoder.identity.split("@")
    assert name == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(digest) == 12
    assert Encoder("all-MiniLM-L6-v2").identity == encoder.identity


def test_dimension_read_without_loading(encoder: Encoder) -> None:
    fresh = Encoder()

    assert fresh.dimension == 384
    assert not fresh.loaded
    assert fresh.dimension == encoder.encode(["a text"]).shape[1]


def test_dimension_of_a_dense_model_needs_loading(tmp_path: Path) -> None:
    model = tmp_path / "with-dense"
    (model / "1_Pooling").mkdir(parents=True)
    (model / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense",
                },
            ]
        ),
        encoding="utf-8",
    )
    (model / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}),
        encoding="utf-8",
    )

    # A Dense layer changes the length, so the model is loaded, and this
    # folder has no weights to load.
    with pytest.raises(ConfigurationError, match="with-dense"):
        _ = Encoder(str(model)).dimension


def test_unknown_model_raises_without_download(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="not-a-real/model-name"):
        Encoder("not-a-real/model-name").encode(["x"])


def test_long_text_is_averaged_over_windows(encoder: Encoder) -> None:
    start = "Genome assembly and sequence alignment for bioinformatics. " * 40
    end = "A fast paced racing game with cars and tracks. " * 40
    text = start + end
    tokens = len(encoder.model.tokenizer(text, add_special_tokens=False)["input_ids"])
    assert tokens > encoder.max_seq_length

    vectors, long_texts = encoder.encode_counting_long([text, "short text"])

    assert long_texts == 1
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0, atol=1e-5)
    truncated = encoder.model.encode([text], normalize_embeddings=True)[0]
    game = encoder.encode(["a racing game with cars"])[0]
    # The end of the text, which truncation drops, moves the vector towards it.
    assert float(vectors[0] @ game) > float(truncated @ game) + 0.05
    assert np.allclose(vectors[1], encoder.encode(["short text"])[0], atol=1e-5)


def test_unreachable_device_is_a_configuration_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ConfigurationError, match="device 'cuda' cannot run the model"):
        Encoder(device="cuda").encode(["text"])
