"""API keys: who is calling. Checked once per call by the gRPC interceptor and the aiohttp middleware
(``farm.gateway.interceptors``); the handlers only read the key they settled on.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection

from farm.domain.errors import UnauthenticatedError

__all__ = ["ApiKeys"]


class ApiKeys:
    """Optional API keys: with none configured every caller is anonymous (``None``).

    ``authenticate`` takes the raw ``authorization`` value (``Bearer <key>``) from gRPC metadata
    or the HTTP header and returns the key to hand to the ``TaskService`` (which isolates tasks
    per key), or raises ``UnauthenticatedError``.

        >>> keys = ApiKeys(["alice"])
        >>> keys.authenticate("Bearer alice")
        'alice'
        >>> keys.authenticate("Bearer a")
        Traceback (most recent call last):
        ...
        farm.domain.errors.UnauthenticatedError: unknown API key
    """

    def __init__(self, keys: Collection[str] | None = None):
        if isinstance(keys, str):
            # One string is not a list of keys: iterating it would accept each of its letters.
            raise TypeError("keys must be a collection of strings, not one string")
        self._keys = tuple(k for k in (keys or ()) if k)

    @property
    def enabled(self) -> bool:
        """Whether requests must carry a known key."""
        return bool(self._keys)

    def authenticate(self, authorization: str | None) -> str | None:
        """The caller's key, ``None`` when keys are off; raises ``UnauthenticatedError``."""
        if not self._keys:
            return None
        if not authorization:
            raise UnauthenticatedError("missing API key: send 'authorization: Bearer <key>'")
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise UnauthenticatedError("malformed authorization: expected 'Bearer <key>'")
        # Constant-time comparison against every key: timing does not reveal a key's prefix.
        found = None
        presented = key.encode()
        for known in self._keys:
            if hmac.compare_digest(known.encode(), presented):
                found = known
        if found is None:
            raise UnauthenticatedError("unknown API key")
        return found
