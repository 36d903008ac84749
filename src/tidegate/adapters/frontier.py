"""The DeliveryFrontier port on Redis: per queue, the latest send time of a claimed message.

One hash (``tg:frontier``) holds, per queue, ``<queue>:sent`` (the frontier, epoch seconds on
the sender's clock, carried in each message's ``tg_sent`` header) and ``<queue>:moved`` (when
it last moved, on the Redis server's clock, so the age needs no agreement between hosts). One
Lua call per claim moves it forward only.
"""

from __future__ import annotations

import redis

from .redis_keys import FRONTIER

# KEYS: [hash]  ARGV: [queue, sent_at]
_ADVANCE = """
local field = ARGV[1] .. ':sent'
local sent = tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], field) or '-1')
if sent > current then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], field, ARGV[2], ARGV[1] .. ':moved', t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
end
return 0
"""


class RedisFrontier:
    def __init__(self, client: redis.Redis, key: str = FRONTIER) -> None:
        self.client = client
        self.key = key
        self._advance = client.register_script(_ADVANCE)

    def advance(self, queue: str, sent_at: float) -> None:
        self._advance(keys=[self.key], args=[queue, repr(float(sent_at))])

    def read(self) -> dict[str, tuple[float, float]]:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.key)
        pipe.time()
        fields, (secs, micros) = pipe.execute()
        now = secs + micros / 1e6
        values = {(k.decode() if isinstance(k, bytes) else k): float(v)
                  for k, v in fields.items()}
        return {name[:-5]: (sent, now - values.get(f"{name[:-5]}:moved", 0.0))
                for name, sent in values.items() if name.endswith(":sent")}
