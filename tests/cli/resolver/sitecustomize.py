"""Loaded by `az` (Python imports `sitecustomize` from PYTHONPATH at start-up): resolves
`*.localhost` to loopback as RFC 6761 says, which glibc does not, so the CLI reaches
`https://<vault>.vault.localhost:<port>` without an /etc/hosts entry."""
import socket

_real_getaddrinfo = socket.getaddrinfo


def _loopback_for_localhost(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(".localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _loopback_for_localhost
