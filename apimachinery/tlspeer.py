"""The TLS peer of a uvicorn connection, in every request's ASGI scope.

uvicorn verifies client certificates (``ssl.CERT_OPTIONAL`` against the client CA) but does not
hand the peer's certificate to the application.  The protocols here work out, once per
connection, what the server wants to know of its peer (:meth:`connection_scope`, given the
transport; :func:`peer_certificate` reads the verified certificate) and add that to the ASGI scope
of every request made on the connection (HTTP requests and WebSocket upgrades).  An
``"extensions"`` entry is merged with the extensions uvicorn puts in the scope.

The API server and the kubelet subclass them; who a certificate names (CN = user, O = groups)
is :func:`apimachinery.pki.subject_of`.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from uvicorn.config import UvicornDeprecationWarning
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

with warnings.catch_warnings():
    # the legacy websockets protocol: the one the API server's exec/attach/port-forward relays are built on
    warnings.simplefilter("ignore", UvicornDeprecationWarning)
    warnings.simplefilter("ignore", DeprecationWarning)  # websockets.legacy
    from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

_NOTHING: Mapping[str, Any] = MappingProxyType({})


def peer_certificate(transport: Any) -> bytes | None:
    """The DER bytes of the client certificate TLS verified on ``transport`` (against the client
    CA); None on plain HTTP, when the client sent none or when it cannot be read."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    try:
        der = sslobj.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):
        return None
    return der or None


def add_to_scope(scope: MutableMapping[str, Any], items: Mapping[str, Any]) -> None:
    """Put ``items`` into a request's ``scope``; ``"extensions"`` joins the scope's own."""
    for key, value in items.items():
        if key == "extensions" and scope.get("extensions"):
            value = {**scope["extensions"], **value}
        scope[key] = value


class PeerScope(asyncio.Protocol):
    """A uvicorn protocol adding :meth:`connection_scope` of its connection to each request's scope."""

    peer_scope: Mapping[str, Any] = _NOTHING

    def connection_scope(self, transport: Any) -> Mapping[str, Any]:
        """What every request on the connection of ``transport`` has in its scope (subclasses say)."""
        return _NOTHING

    def connection_made(self, transport: Any) -> None:
        self.peer_scope = self.connection_scope(transport)
        super().connection_made(transport)


class PeerHttpProtocol(PeerScope, HttpToolsProtocol):
    """httptools HTTP/1.1 with :meth:`connection_scope` in each request's scope."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        add_to_scope(self.scope, self.peer_scope)  # type: ignore[arg-type]


class _PeerWebSocket(PeerScope):
    async def run_asgi(self) -> None:
        add_to_scope(self.scope, self.peer_scope)  # type: ignore[attr-defined]
        await super().run_asgi()  # type: ignore[misc]


class PeerWebSocketProtocol(_PeerWebSocket, WebSocketProtocol):
    """uvicorn's (legacy) websockets protocol with :meth:`connection_scope` in the upgrade's scope."""


class PeerSansIOWebSocketProtocol(_PeerWebSocket, WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O websockets protocol with :meth:`connection_scope` in the upgrade's scope."""
