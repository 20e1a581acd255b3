"""Sans-IO wire formats: SSE framing, OpenAI payload shapes and error bodies.

Pure functions and small state objects; may import `octoroute.core` only.
"""
