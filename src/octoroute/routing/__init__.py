"""Pure routing decisions: prompt features, octoroute 1.0's rules, the LLM judge's
prompt and reply parsing, the `tool` strategy's function-call body and call
parsing, the learned scorer, the scorer interface every strategy fits
(`scoring.py`), and the `Router` that runs the configured one; and the
routing-quality metrics `octoroute eval` reports (`evaluation.py`).

Nothing here does I/O, reads the clock or sleeps: the judge call is an injected
async function; the learned model's weights are package data read once. May
import `octoroute.core`, `octoroute.config` and `octoroute.protocols` only;
never aiohttp.
"""

from octoroute.routing.features import extract_features, last_user_text
from octoroute.routing.judge import build_judge_body, extract_reply_text, parse_judge_reply
from octoroute.routing.router import JudgeFn, JudgeUnavailable, Router
from octoroute.routing.rules import RuleMatch, evaluate_rules
from octoroute.routing.tool import build_tool_body, parse_tool_reply

__all__ = [
    "JudgeFn",
    "JudgeUnavailable",
    "Router",
    "RuleMatch",
    "build_judge_body",
    "build_tool_body",
    "evaluate_rules",
    "extract_features",
    "extract_reply_text",
    "last_user_text",
    "parse_judge_reply",
    "parse_tool_reply",
]
