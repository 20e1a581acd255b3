"""The pipeline every ingress shares: decode → decide → select → attempt loop.

No web framework here: the server hands in decoded requests and gets back either
a complete upstream reply or a stream past its commit point, plus everything the
response headers and the access log need. The attempt loop is driven by
`fleet.policy.AttemptPlan`, which decides where the next attempt goes.

One module per job: `call` (the internal request and its hints), `bodies` (what an
attempt sends and a whole answer back, pure), `decision` (model names, operations,
the router), `attempts` (the attempt loop and its commit point), `escalation`
(context windows), `router_model` (the judge's and tool strategy's I/O), `shadow`
(shadow mode), `health` (outcomes into health and rotation, shared verdicts),
`probes` (active checks, readiness, discovery), and `gateway`, which assembles
`Gateway` from them (`fields` declares the state they share).

May import `octoroute.admission` and the layers below it; never `octoroute.server`
or `octoroute.cli`.
"""

from octoroute.service.attempts import Outcome
from octoroute.service.bodies import INFILL_PATH, body_for, headers_for, openai_payload, upstream_body, upstream_path
from octoroute.service.call import AUTO, ChatCall, asks_usage_for, decode_chat, features_of
from octoroute.service.decision import settle_decision
from octoroute.service.gateway import Gateway, build_capabilities, capability_warnings
from octoroute.service.probes import Readiness

__all__ = [
    "AUTO",
    "INFILL_PATH",
    "ChatCall",
    "Gateway",
    "Outcome",
    "Readiness",
    "asks_usage_for",
    "body_for",
    "build_capabilities",
    "capability_warnings",
    "decode_chat",
    "features_of",
    "headers_for",
    "openai_payload",
    "settle_decision",
    "upstream_body",
    "upstream_path",
]
