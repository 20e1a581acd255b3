"""Sans-IO wire formats: SSE framing, OpenAI and Anthropic payload shapes, error
bodies, translation between the two APIs, tool-call repair and output filters.

Pure functions and small state objects; may import `octoroute.core` and
`octoroute.config` (and orjson), never the network or the clock.
"""
