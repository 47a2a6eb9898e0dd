"""A session's state in Redis, as a handler sees it: `ctx.state.get/set/delete` on keys under
`cookie:<16 hex>:<μsrv>:<key>` — beside the μsrv's own records, and snapshotted by the collector
into the session like them."""

from __future__ import annotations

from edgetrail.sdk.session import cookie_hex

# As the μsrvs keep their own records: an hour after the last write.
RETENTION_SECONDS = 3600

# SET would silently replace one of the μsrv's own records (hashes); refuse that instead, in the
# same round trip.
_SET_UNLESS_HASH = """
if redis.call('TYPE', KEYS[1]).ok == 'hash' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""
_scripts = {}


def _set_script(client):
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(_SET_UNLESS_HASH)
    return script


class State:
    def __init__(self, client_factory, cookie: int, microservice: str):
        self._client_factory = client_factory
        self._prefix = f"cookie:{cookie_hex(cookie)}:{microservice}:"

    def key(self, name: str) -> str:
        if not isinstance(name, str) or not name or any(c in name for c in " \t\r\n"):
            raise ValueError(f"a state key is a non-empty string without spaces, not {name!r}")
        return self._prefix + name

    def get(self, name: str, default=None):
        """The value set under `name`, or `default`. The μsrv's own records (e.g. http-proxy's
        `request`) are hashes and come back as a dict."""
        client = self._client_factory()
        key = self.key(name)
        import redis

        try:
            value = client.get(key)
        except redis.ResponseError:  # WRONGTYPE: one of the μsrv's own hashes
            value = client.hgetall(key) or None
        return default if value is None else value

    def set(self, name: str, value) -> None:
        """Keeps `value` (text; numbers and booleans are written as text) for the session."""
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, bytes, int, float)):
            raise TypeError(f"ctx.state.set({name!r}, …) takes text or a number, not {type(value).__name__}")
        client = self._client_factory()
        key = self.key(name)
        if not _set_script(client)(keys=[key], args=[value, RETENTION_SECONDS]):
            raise ValueError(f"{key} is the μsrv's own record; read it with ctx.state.get({name!r}) "
                             "and keep yours under another key")

    def delete(self, name: str) -> bool:
        """Removes `name`; True when it was there."""
        return bool(self._client_factory().delete(self.key(name)))
