"""Transport security: optional bearer token, TLS and mutual TLS.

The token guards the FraudScorer service only; health checks and reflection
stay open so load balancers and grpcurl-style tools work without a secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from scorer.config import TlsConfig

PROTECTED_PREFIX = "/fraudscore.v1.FraudScorer/"


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """Rejects FraudScorer calls without ``authorization: Bearer <token>`` with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if not method.startswith(PROTECTED_PREFIX):
            return await continuation(handler_call_details)
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization")
        if given is None:
            return _deny(await continuation(handler_call_details), "authorization: missing bearer token")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            return _deny(await continuation(handler_call_details), "authorization: invalid bearer token")
        return await continuation(handler_call_details)


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that aborts with UNAUTHENTICATED."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    des, ser = handler.request_deserializer, handler.response_serializer
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
