"""Transport security: optional bearer token, TLS and mutual TLS.

The token guards the FraudScorer service, and with ``--auth-reflection`` server
reflection too. Health checks stay open: load balancers and Kubernetes probes
carry no secret, and a health status tells nothing about the data. Prometheus
``/metrics`` is a separate plain-HTTP port the token does not cover (bind it to
a private address or turn it off with ``--metrics-port -1``).

The token is checked before the request is parsed: a caller without it gets
UNAUTHENTICATED whatever bytes it sends, and never reaches the protobuf parser.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from scorer.config import TlsConfig

PROTECTED_PREFIX = "/fraudscore.v1.FraudScorer/"
REFLECTION_PREFIX = "/grpc.reflection.v1alpha.ServerReflection/"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without ``authorization: Bearer <token>`` with UNAUTHENTICATED.

    Guards FraudScorer, and server reflection when ``reflection`` is true; health stays open.
    """

    def __init__(self, token: str, *, reflection: bool = False) -> None:
        self._expected = f"Bearer {token}".encode()
        self._prefixes = (PROTECTED_PREFIX, REFLECTION_PREFIX) if reflection else (PROTECTED_PREFIX,)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if not method.startswith(self._prefixes):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization")
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: UNIMPLEMENTED, as without a token check
            return handler
        if given is None:
            return _deny(handler, "authorization: missing bearer token")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            return _deny(handler, "authorization: invalid bearer token")
        return handler


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED.

    It has no request deserializer: the request stays raw bytes, unparsed, so
    garbage from an unauthenticated caller is refused as such, not as a parse error.
    """

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    des, ser = None, handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, des, ser)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, des, ser)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, des, ser)
    return grpc.unary_unary_rpc_method_handler(abort, des, ser)


def server_credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    """TLS from the cert/key flags; with a client CA, clients must present a certificate it signed."""
    return grpc.ssl_server_credentials(
        [(tls.key, tls.cert)],
        root_certificates=tls.client_ca,
        require_client_auth=tls.client_ca is not None,
    )


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """Call metadata a client sends to pass the token check."""
    return (("authorization", f"Bearer {token}"),) if token else ()
