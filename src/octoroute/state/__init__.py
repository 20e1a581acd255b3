"""Shared-state backends that do I/O: Redis and the workers' shared memory.

Owns `RedisState` (`redis_store.py`, redis.asyncio with Lua scripts),
`SharedMemoryState` (`shm.py`, a memory-mapped file locked with `fcntl`, for
`octoroute serve --workers N` without Redis) and `GuardedState` (`guard.py`,
Redis in front of a local fallback with bounded timeouts and a circuit
breaker). Each implements `core.state.StateStore`; the in-process default is
`fleet.state.LocalState`. Documents (`core.state.DocumentStore`, the Responses
API's stored responses): `DirectoryDocuments` (`documents.py`, one file each
in the workers' directory, for `--workers N` without Redis) and `RedisState`
through `GuardedState`.

A sibling of `fleet`, `upstream`, `routing` and `observe`: may import
`octoroute.core` and `octoroute.config` only (and redis).
"""
