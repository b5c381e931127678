"""Server-side fusion: one `hybrid` query under a search pipeline of neural-search.

With the neural-search plugin on every node, `hybrid_similar` can send the
k-NN and `more_like_this` queries as the two sub-queries of one `hybrid`
query. A search pipeline then fuses them on the coordinating node:

- `rrf`: a `score-ranker-processor` with the same `rank_constant`.
- `min_max`, `l2`: a `normalization-processor` with that technique and the
  `arithmetic_mean` combination, weighted like the client-side fusion.
- `z_score`: the `normalization-processor` of neural-search 3.0+, only when
  asked for explicitly, because its formula differs from the client's.

On a single-shard index both paths rank the same candidates by the same
formulas (see `fusion.py`), so they return the same hits. Only documents
with equal fused scores may come in another order.

The builders here are pure and return the Query DSL that is sent and shown
in Dev Tools; the other functions do the I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import weakref
from collections.abc import Mapping
from typing import Any, Literal

from opensearchpy import ConnectionError as OpenSearchConnectionError
from opensearchpy import OpenSearch, TransportError

from ..errors import ConfigurationError, OsMltError, SearchPipelineError
from .requests import SearchRequest

logger = logging.getLogger(__name__)

Execution = Literal["auto", "server", "client"]
EXECUTIONS: tuple[Execution, ...] = ("auto", "server", "client")

NEURAL_SEARCH_PLUGIN = "opensearch-neural-search"

# The first neural-search release that runs each fusion as os_mlt sends it.
# The hybrid query's `pagination_depth`, which fixes the candidate pool for
# paging, and the score-ranker-processor (RRF) came in 2.19; z_score
# normalization came in 3.0.
# NOTE: only neural-search 2.19.1 has been run against. The z_score pipeline
# follows the 3.x documentation and has not run on a 3.x node.
_FIRST_RELEASE: dict[str, tuple[int, ...]] = {
    "min_max": (2, 19),
    "l2": (2, 19),
    "rrf": (2, 19),
    "z_score": (3, 0),
}

# The score-ranker-processor rejects rank constants outside 1 to 10,000.
MAX_RANK_CONSTANT = 10_000

# Sub-query names in the order of the hybrid query's `queries` and weights.
SUB_QUERIES = ("knn", "bm25")

# The normalization-processor raises this when `from` is beyond the fused
# hits, where the client-side path returns an empty page.
_END_OF_RESULTS = "Reached end of search result"

# neural-search version per client, and pipelines created through it, so a
# process sends GET _nodes/plugins and each pipeline PUT once per client.
_plugin_versions: weakref.WeakKeyDictionary[OpenSearch, tuple[int, ...] | None] = (
    weakref.WeakKeyDictionary()
)
_created_pipelines: weakref.WeakKeyDictionary[OpenSearch, set[str]] = (
    weakref.WeakKeyDictionary()
)
# Clients whose user may not create search pipelines, which `auto` then
# leaves on the client-side path without trying again.
_pipelines_forbidden: weakref.WeakSet[OpenSearch] = weakref.WeakSet()


def build_search_pipeline(
    fusion: str,
    *,
    weights: Mapping[str, float] | None = None,
    rank_constant: int = 60,
) -> dict[str, Any]:
    """Return the search pipeline body that fuses the hybrid query's sub-queries.

    Weights are scaled to sum to 1.0, as the normalization-processor requires,
    which leaves the weighted mean unchanged. RRF takes no weights.

    Raises:
        ConfigurationError: `fusion` is unknown, a weight is negative or not
            finite, all weights are 0, or `rank_constant` is outside 1 to 10,000.
    """
    if fusion == "rrf":
        if not 1 <= rank_constant <= MAX_RANK_CONSTANT:
            raise ConfigurationError(
                f"rank_constant must be from 1 to {MAX_RANK_CONSTANT} for the "
                f"score-ranker-processor, got {rank_constant}"
            )
        return {
            "description": f"os-mlt: RRF of k-NN and BM25, rank_constant {rank_constant}",
            "phase_results_processors": [
                {
                    "score-ranker-processor": {
                        "combination": {
                            "technique": "rrf",
                            "parameters": {"rank_constant": rank_constant},
                        }
                    }
                }
            ],
        }
    if fusion not in _FIRST_RELEASE:
        raise ConfigurationError(
            f"fusion {fusion!r} is not one of {', '.join(_FIRST_RELEASE)}"
        )
    combination: dict[str, Any] = {"technique": "arithmetic_mean"}
    description = f"os-mlt: {fusion} normalization, mean of k-NN and BM25"
    if weights:
        scaled = _scaled_weights(weights)
        combination["parameters"] = {"weights": scaled}
        description += f" weighted {scaled}"
    return {
        "description": description,
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": fusion},
                    "combination": combination,
                }
            }
        ],
    }


def _scaled_weights(weights: Mapping[str, float]) -> list[float]:
    values = [float(weights.get(name, 1.0)) for name in SUB_QUERIES]
    for name, value in zip(SUB_QUERIES, values, strict=True):
        if value < 0 or not math.isfinite(value):
            raise ConfigurationError(
                f"weight of {name!r} must be a finite number >= 0, got {value}"
            )
    total = sum(values)
    if total <= 0:
        raise ConfigurationError(
            f"the weights {dict(zip(SUB_QUERIES, values, strict=True))} add up to 0; "
            "give at least one a positive weight"
        )
    return [value / total for value in values]


def pipeline_name(pipeline: Mapping[str, Any]) -> str:
    """Return a name derived from the pipeline body, so equal settings share one pipeline."""
    processor = pipeline["phase_results_processors"][0]
    kind = "rrf" if "score-ranker-processor" in processor else "norm"
    canonical = json.dumps(pipeline, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]
    return f"os-mlt-{kind}-{digest}"


def build_hybrid_search(
    knn_query: Mapping[str, Any],
    mlt_query: Mapping[str, Any],
    *,
    size: int,
    from_: int,
    pagination_depth: int,
    source: Any = True,
) -> dict[str, Any]:
    """Return a search with one `hybrid` query of a k-NN and a BM25 sub-query.

    Each sub-query carries its own filters, as in the client-side searches,
    because the `hybrid` query of neural-search 2.19 has no `filter` of its
    own. `pagination_depth` is the number of hits each sub-query contributes
    per shard; kept equal across pages, it fixes the pool that `from_` and
    `size` page through.
    """
    return {
        "size": size,
        "from": from_,
        "_source": source,
        "query": {
            "hybrid": {
                "pagination_depth": pagination_depth,
                "queries": [dict(knn_query), dict(mlt_query)],
            }
        },
    }


def neural_search_version(client: OpenSearch) -> tuple[int, ...] | None:
    """Return the neural-search version every node runs, or None if a node lacks it.

    The response of `GET _nodes/plugins` is kept per client. A cluster that
    rejects the request counts as one without the plugin.

    Raises:
        opensearchpy.ConnectionError: The cluster could not be reached.
    """
    if client in _plugin_versions:
        return _plugin_versions[client]
    try:
        response = client.nodes.info(
            metric="plugins",
            filter_path="nodes.*.plugins.name,nodes.*.plugins.version",
        )
    except OpenSearchConnectionError:
        # Not cached, because the cluster may be reachable on the next call.
        raise
    except TransportError as error:
        logger.info(
            "Listing plugins with GET _nodes/plugins failed (%s %s), so "
            "os_mlt fuses client-side",
            error.status_code,
            error.error,
        )
        version = None
    else:
        version = _lowest_plugin_version(response)
    _plugin_versions[client] = version
    return version


def _lowest_plugin_version(response: Mapping[str, Any]) -> tuple[int, ...] | None:
    versions = []
    nodes = response.get("nodes") or {}
    for node in nodes.values():
        found = [
            plugin.get("version", "")
            for plugin in node.get("plugins", [])
            if plugin.get("name") == NEURAL_SEARCH_PLUGIN
        ]
        if not found:
            return None
        versions.append(_parse_version(found[0]))
    return min(versions) if versions else None


def _parse_version(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.split("-", 1)[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def server_fusion_problem(
    version: tuple[int, ...] | None,
    *,
    execution: Execution,
    fusion: str,
    rank_constant: int,
    max_similarity: float | None,
) -> str | None:
    """Return why the search cannot be fused on the server, or None when it can.

    `auto` also keeps z_score on the client, because the plugin's z_score
    formula differs from the client's and would rank differently.
    """
    if version is None:
        return (
            f"the {NEURAL_SEARCH_PLUGIN} plugin is not installed on every node "
            "(GET _cat/plugins lists it); install it, or use execution='client'. "
            "A local node gets it with `os-mlt node start --plugin neural-search`"
        )
    if max_similarity is not None:
        return (
            "max_similarity needs each hit's k-NN score, which the hybrid query "
            "does not return; leave it unset or use execution='client'"
        )
    first = _FIRST_RELEASE.get(fusion)
    plugin = ".".join(str(number) for number in version)
    if first is not None and version < first:
        needed = ".".join(str(number) for number in first)
        return (
            f"fusion {fusion!r} needs {NEURAL_SEARCH_PLUGIN} {needed} or later, but "
            f"the cluster runs {plugin}; use execution='client'"
        )
    if fusion == "z_score" and execution == "auto":
        return "z_score is fused on the client unless execution='server' is given"
    if fusion == "rrf" and not 1 <= rank_constant <= MAX_RANK_CONSTANT:
        return (
            f"the score-ranker-processor takes rank_constant from 1 to "
            f"{MAX_RANK_CONSTANT}, got {rank_constant}; use execution='client'"
        )
    return None


def use_server_fusion(
    client: OpenSearch,
    execution: Execution,
    *,
    fusion: str,
    rank_constant: int,
    max_similarity: float | None,
) -> bool:
    """Decide between one `hybrid` query (True) and client-side fusion (False).

    Raises:
        ConfigurationError: `execution` is "server" and the search cannot run
            there, or `execution` is unknown.
    """
    if execution not in EXECUTIONS:
        raise ConfigurationError(
            f"execution {execution!r} is not one of {', '.join(EXECUTIONS)}"
        )
    if execution == "client":
        return False
    if execution == "auto" and client in _pipelines_forbidden:
        return False
    problem = server_fusion_problem(
        neural_search_version(client),
        execution=execution,
        fusion=fusion,
        rank_constant=rank_constant,
        max_similarity=max_similarity,
    )
    if problem is None:
        return True
    if execution == "server":
        raise ConfigurationError(f"cannot fuse on the server: {problem}")
    logger.debug("Fusing client-side: %s", problem)
    return False


def search_with_pipeline(
    client: OpenSearch,
    index: str,
    body: dict[str, Any],
    pipeline: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[SearchRequest]]:
    """Create the pipeline if needed, run the hybrid search under it, return its hits.

    The pipeline is created with `PUT _search/pipeline/<name>` the first time
    this client uses it, and again if the cluster no longer has it. A page
    that starts after the last fused hit is empty.

    Returns:
        The hits, and the two requests (pipeline and search) for Dev Tools.

    Raises:
        SearchPipelineError: The cluster rejected the pipeline. When it was
            for lack of permission, `use_server_fusion` no longer picks the
            server for this client under `auto`.
        OsMltError: The cluster rejected the search.
    """
    name = pipeline_name(pipeline)
    requests = [
        SearchRequest(
            "Search pipeline that fuses the two sub-queries (created once)",
            index,
            pipeline,
            method="PUT",
            path=f"_search/pipeline/{name}",
        ),
        SearchRequest(
            "hybrid: k-NN and BM25 more_like_this, fused by the pipeline",
            index,
            body,
            path=f"{index}/_search?search_pipeline={name}",
        ),
    ]
    created = _created_pipelines.setdefault(client, set())
    if name not in created:
        _put_pipeline(client, name, pipeline)
        created.add(name)
    try:
        response = _search(client, index, body, name)
    except TransportError as error:
        if f"Pipeline {name} is not defined" not in _reason(error):
            raise
        # Someone deleted the pipeline since this client created it.
        _put_pipeline(client, name, pipeline)
        response = _search(client, index, body, name)
    return response["hits"]["hits"], requests


def _search(client: OpenSearch, index: str, body: dict[str, Any], pipeline: str) -> Any:
    try:
        return client.search(
            index=index, body=body, params={"search_pipeline": pipeline}
        )
    except TransportError as error:
        reason = _reason(error)
        if _END_OF_RESULTS in reason:
            return {"hits": {"hits": []}}
        if f"Pipeline {pipeline} is not defined" in reason:
            raise
        if not isinstance(error.status_code, int) or error.status_code >= 500:
            raise
        raise OsMltError(f"hybrid search on {index!r} failed: {reason}") from error


def _put_pipeline(client: OpenSearch, name: str, pipeline: dict[str, Any]) -> None:
    logger.info("Creating search pipeline %s: %s", name, pipeline["description"])
    try:
        client.transport.perform_request(
            "PUT", f"/_search/pipeline/{name}", body=pipeline
        )
    except TransportError as error:
        status = error.status_code if isinstance(error.status_code, int) else None
        rejection = SearchPipelineError(
            f"creating search pipeline {name!r} failed: {_reason(error)}",
            status_code=status,
        )
        if rejection.forbidden:
            _pipelines_forbidden.add(client)
        raise rejection from error


def _reason(error: TransportError) -> str:
    """Return the innermost reason of an OpenSearch error response."""
    info = error.info if isinstance(error.info, dict) else {}
    cause: Any = info.get("error", error.error)
    reasons = []
    while isinstance(cause, dict):
        reasons.append(str(cause.get("reason", "")))
        roots = cause.get("root_cause") or []
        cause = cause.get("caused_by") or (roots[0] if roots else None)
    return " / ".join(reason for reason in reasons if reason) or str(error.error)
