"""`RedisState`: `core.state.StateStore` on Redis, shared by every worker of every replica.

Each operation is one round trip and atomic on the server: the buckets and the
counters are Lua scripts (`register_script`: EVALSHA, loaded again by redis-py
when the server lost its script cache), the rest single commands or a MULTI
pipeline. Buckets read Redis's own clock (`TIME`) inside the script, so
replicas on machines whose clocks differ still agree on every bucket.

Every call is bounded by `timeout_seconds` (the socket timeouts, and redis-py
retries nothing): a slow or dead Redis raises quickly instead of holding a
request, and `state.guard.GuardedState` decides what to do about it.

Keys: `<prefix>b:<key>` for a bucket (a string, expiring when the bucket is full
again), `<prefix>h:<key>` for a hash, `<prefix>l:<key>` for a lease.

Documents (`core.state.DocumentStore`, the Responses API's stored responses):
`<prefix>d:<id>` holds one (`SET ... PX`, the TTL from when it was written);
the sorted set `<prefix>d` scores each id by when it was last written or read
(Redis's `TIME`). A put is one script: set, score, drop the ids unused for a
whole TTL (their documents expired already), then pop the least recently used
past `max_entries` and delete their documents. A get is one script too (read,
then score the id again, or drop it from the set when its document is gone).
The scripts name documents from the prefix they are given rather than in
`KEYS`: fine on one Redis server, not on a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from octoroute.core.state import ADMITTED, GCRA_SLACK_SECONDS, Admission, Gcra, Take

# KEYS: the buckets. ARGV: slack, then interval, capacity, cost per bucket.
# Answers {0, wait as a string, index of the short bucket} when a bucket is
# short; otherwise falls through to what follows it (`_ADMIT` takes, `_WAIT` not).
_SHORTFALL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slack = tonumber(ARGV[1])
local worst, short = 0, -1
local full = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local capacity = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local f = tonumber(redis.call('GET', KEYS[i])) or now
  full[i] = f
  local wait = math.max(f - now, 0) + cost * interval - interval * capacity
  if wait > slack and wait > worst then
    worst = wait
    short = i - 1
  end
end
if short >= 0 then
  return {0, string.format('%.17g', worst), short}
end
"""

# Returns {1} when admitted (every bucket taken), else `_SHORTFALL`'s answer.
_ADMIT = (
    _SHORTFALL
    + """
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i + 1])
  local f = math.max(math.max(full[i], now) + cost * interval, now)
  local ms = math.ceil((f - now) * 1000)
  if ms > 0 then
    redis.call('SET', KEYS[i], string.format('%.17g', f), 'PX', ms)
  else
    redis.call('DEL', KEYS[i])
  end
end
return {1}
"""
)

# `_ADMIT`'s answer, taking nothing.
_WAIT = _SHORTFALL + "return {1}\n"

# KEYS[1]: the hash. ARGV: ttl in ms (0: none), then field, amount pairs. Returns the new values as strings.
_INCR = """
local out = {}
for i = 2, #ARGV, 2 do
  out[#out + 1] = redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
end
local ms = tonumber(ARGV[1])
if ms > 0 then
  redis.call('PEXPIRE', KEYS[1], ms)
end
return out
"""


# KEYS: the document, the set. ARGV: document, ttl in ms, max entries, id, ttl in seconds, document key prefix.
_PUT_DOCUMENT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[5]))
local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if extra > 0 then
  local old = redis.call('ZPOPMIN', KEYS[2], extra)
  for i = 1, #old, 2 do
    redis.call('DEL', ARGV[6] .. old[i])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# KEYS: the document, the set. ARGV: id. Returns the document or nil.
_GET_DOCUMENT = """
local document = redis.call('GET', KEYS[1])
if document then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return document
"""

UNBOUNDED = "1e300"  # a capacity no debt reaches (Lua 5.1 may not parse "inf")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisState:
    """`StateStore` on Redis (see the module docstring).

    `RedisState("redis://127.0.0.1:6379/0", prefix="octoroute:", timeout_seconds=0.05)`;
    connections open on first use."""

    name = "redis"
    errors: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(self, url: str, *, prefix: str, timeout_seconds: float, max_connections: int = 128) -> None:
        self._prefix = prefix
        # A blocking pool: past `max_connections` concurrent calls a call waits (within its
        # timeout) for a free connection instead of failing at once as "too many connections",
        # which would read as Redis being down.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_seconds,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            client_name="octoroute",
        )
        self._redis: Redis = Redis.from_pool(pool)  # owns the pool: closed with it
        self._admit = self._redis.register_script(_ADMIT)
        self._wait = self._redis.register_script(_WAIT)
        self._incr = self._redis.register_script(_INCR)
        self._put_document = self._redis.register_script(_PUT_DOCUMENT)
        self._get_document = self._redis.register_script(_GET_DOCUMENT)

    async def ping(self) -> None:
        """Raise unless Redis answers."""
        await self._redis.ping()

    async def prepare(self) -> None:
        """Connect and load the scripts now, so the first request does not pay for it."""
        for script in (self._admit, self._wait, self._incr, self._put_document, self._get_document):
            await self._redis.script_load(script.script)

    async def admit(self, takes: Sequence[Take]) -> Admission:
        keys = [f"{self._prefix}b:{t.key}" for t in takes]
        args: list[float] = [GCRA_SLACK_SECONDS]
        for t in takes:
            args += (t.bucket.interval, t.bucket.capacity, t.cost)
        reply = await self._admit(keys=keys, args=[repr(float(a)) for a in args])
        if int(reply[0]) == 1:
            return ADMITTED
        return Admission(False, float(reply[1]), int(reply[2]))

    async def wait(self, takes: Sequence[Take]) -> Admission:
        keys = [f"{self._prefix}b:{t.key}" for t in takes]
        args: list[float] = [GCRA_SLACK_SECONDS]
        for t in takes:
            args += (t.bucket.interval, t.bucket.capacity, t.cost)
        reply = await self._wait(keys=keys, args=[repr(float(a)) for a in args])
        if int(reply[0]) == 1:
            return ADMITTED
        return Admission(False, float(reply[1]), int(reply[2]))

    async def charge(self, key: str, bucket: Gcra, cost: float) -> None:
        # A charge is an admission that cannot be refused: a bucket whose capacity covers any debt.
        await self._admit(
            keys=[f"{self._prefix}b:{key}"],
            args=[repr(GCRA_SLACK_SECONDS), repr(float(bucket.interval)), UNBOUNDED, repr(float(cost))],
        )

    async def incr_many(
        self, key: str, amounts: Mapping[str, float], ttl_seconds: float | None = None
    ) -> dict[str, float]:
        args: list[str] = [str(0 if ttl_seconds is None else _ms(ttl_seconds))]
        for field, amount in amounts.items():
            args += (field, repr(float(amount)))
        reply = await self._incr(keys=[f"{self._prefix}h:{key}"], args=args)
        return {field: float(value) for field, value in zip(amounts, reply, strict=True)}

    async def read_many(self, key: str, fields: Sequence[str]) -> list[float | None]:
        if not fields:
            return []
        values = await self._redis.hmget(f"{self._prefix}h:{key}", list(fields))
        return [None if v is None else float(v) for v in values]

    async def put_many(self, key: str, values: Mapping[str, float], ttl_seconds: float | None = None) -> None:
        name = f"{self._prefix}h:{key}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(name, mapping={f: repr(float(v)) for f, v in values.items()})
            if ttl_seconds is not None:
                pipe.pexpire(name, _ms(ttl_seconds))
            await pipe.execute()

    async def lease(self, key: str, ttl_seconds: float) -> bool:
        return bool(await self._redis.set(f"{self._prefix}l:{key}", b"1", nx=True, px=_ms(ttl_seconds)))

    async def put_document(self, doc_id: str, document: bytes, ttl_seconds: float, max_entries: int) -> None:
        prefix = f"{self._prefix}d:"
        args: list[bytes | str | int] = [
            document,
            _ms(ttl_seconds),
            max_entries,
            doc_id,
            repr(float(ttl_seconds)),
            prefix,
        ]
        await self._put_document(keys=[prefix + doc_id, f"{self._prefix}d"], args=args)

    async def get_document(self, doc_id: str, ttl_seconds: float) -> bytes | None:
        """`ttl_seconds` is not needed: the document's key expires on its own."""
        found = await self._get_document(keys=[f"{self._prefix}d:{doc_id}", f"{self._prefix}d"], args=[doc_id])
        return None if found is None else bytes(found)

    async def delete_document(self, doc_id: str, ttl_seconds: float) -> bool:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{self._prefix}d:{doc_id}")
            pipe.zrem(f"{self._prefix}d", doc_id)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def close(self) -> None:
        await self._redis.aclose()
