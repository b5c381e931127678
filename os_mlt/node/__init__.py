"""A local single-node OpenSearch cluster with the k-NN plugin, run without Docker.

`start` downloads the OpenSearch distribution and the opensearch-knn plugin
from Maven, plus the optional plugins of `NodeSettings.plugins` such as
neural-search, unpacks them into a node home, finds a suitable JDK and runs
the node on 127.0.0.1 until the cluster is healthy. `stop` and `status` act on the
node of the same settings::

    from os_mlt import node

    result = node.start(node.NodeSettings(http_port=9201), log=print)
    print(result.url, result.health)
    node.stop(node.NodeSettings(http_port=9201))
"""

from __future__ import annotations

from os_mlt.node.lifecycle import NodeStatus, start, status, stop
from os_mlt.node.settings import NodeSettings

__all__ = ["NodeSettings", "NodeStatus", "start", "status", "stop"]
