"""The gRPC scorer: ``fraudscore serve`` and ``fraudscore score``.

Modules, by concept:

- ``config``    ServeConfig, built once from flags/env by ``server.main``
- ``registry``  which model versions are loaded; polling, smoke test, atomic swap
- ``batcher``   coalesces concurrent Score calls into one model call
- ``servicer``  the FraudScorer RPCs; the only place errors become status codes
- ``decode``    request deserializers that turn a malformed message into a value, not an exception
- ``auth``      bearer-token interceptor and TLS credentials
- ``metrics``   Prometheus metrics of the scorer
- ``server``    ``serve()``: wiring, health, reflection, graceful shutdown
- ``client``    the ``fraudscore score`` command
"""

from __future__ import annotations

__all__ = ["auth", "batcher", "client", "config", "decode", "metrics", "registry", "server", "servicer"]
