"""The only outbound I/O: pooled HTTP clients per upstream, sending, streaming up
to the commit point, health probes, and mapping aiohttp errors into the tree in
`octoroute.core.errors`.

May import `octoroute.core`, `octoroute.config`, `octoroute.protocols`.
"""

from octoroute.upstream.client import UpstreamPool, UpstreamReply, UpstreamStream

__all__ = ["UpstreamPool", "UpstreamReply", "UpstreamStream"]
