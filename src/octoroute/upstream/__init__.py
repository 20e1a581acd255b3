"""The only outbound I/O: a keep-alive HTTP/1.1 pool per upstream origin
(`http.py`), sending, streaming up to the commit point, health probes, and
mapping socket and protocol errors into the tree in `octoroute.core.errors`;
also the looking that the CLI's `doctor` (`checkup.py`) and `init` (`scan.py`) do.

May import `octoroute.core`, `octoroute.config`, `octoroute.protocols`.
"""

from octoroute.upstream.client import UpstreamPool, UpstreamReply, UpstreamStream

__all__ = ["UpstreamPool", "UpstreamReply", "UpstreamStream"]
