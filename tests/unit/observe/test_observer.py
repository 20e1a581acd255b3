"""The request record and the decision windows it feeds."""

from __future__ import annotations

from pathlib import Path

import orjson

from octoroute.core.errors import ErrorType
from octoroute.observe.decisions import DECISION_SLOT, SlotRing
from octoroute.observe.metrics import PrometheusRecorder
from octoroute.observe.observer import MAX_NAME, MemoryWindow, Observer, RequestTrace, SharedWindow, encode_row


def trace(**fields: object) -> RequestTrace:
    t = RequestTrace("req-1", "/v1/chat/completions", "POST", 1_700_000_000.123456, 0.0)
    t.model, t.tier, t.group, t.endpoint = "auto", "fast", "balanced", "balanced/m"
    t.strategy, t.reason, t.status, t.latency_ms, t.attempts = "rule", "rule_casual_short", 200, 12.3456, 2
    t.fallback_from = "fast"
    for k, v in fields.items():
        setattr(t, k, v)
    return t


def test_a_row_encodes_to_the_decision_record():
    record = orjson.loads(encode_row(trace().row()))
    assert record == {
        "time": 1_700_000_000.123,
        "request_id": "req-1",
        "route": "/v1/chat/completions",
        "model": "auto",
        "tier": "fast",
        "group": "balanced",
        "endpoint": "balanced/m",
        "strategy": "rule",
        "reason": "rule_casual_short",
        "status": 200,
        "latency_ms": 12.35,
        "ttft_ms": None,
        "attempts": 2,
        "fallback_from": "fast",
        "input_tokens": None,
        "output_tokens": None,
        "shadow_tier": None,
    }


def test_the_record_carries_the_shadow_decision_and_says_when_it_comes_later():
    decided = trace(shadow_strategy="llm", shadow_tier="deep", shadow_score=0.123456, shadow_reason="llm_classified")
    fields = decided.fields()
    assert {k: v for k, v in fields.items() if k.startswith("shadow")} == {
        "shadow_strategy": "llm",
        "shadow_tier": "deep",
        "shadow_score": 0.1235,
        "shadow_reason": "llm_classified",
    }
    assert orjson.loads(encode_row(decided.row()))["shadow_tier"] == "deep"
    waiting = trace(shadow_strategy="llm").fields()
    assert {k: v for k, v in waiting.items() if k.startswith("shadow")} == {
        "shadow_strategy": "llm",
        "shadow_pending": True,
    }
    assert not any(k.startswith("shadow") for k in trace().fields())


def test_the_record_never_holds_text_and_cuts_the_model_asked():
    t = trace(model="x" * 500, log_content=True)
    t.keep_text(prompt="secret prompt", completion="secret answer")
    raw = encode_row(t.row())
    assert b"secret" not in raw
    assert orjson.loads(raw)["model"] == "x" * MAX_NAME
    assert t.fields()["prompt"] == "secret prompt"  # the log line has it, when asked


def test_text_is_kept_only_when_log_content_is_on():
    t = trace()
    t.keep_text(prompt="p", completion="c")
    assert "prompt" not in t.fields()
    assert "completion" not in t.fields()


def test_the_memory_window_keeps_the_newest_rows():
    window = MemoryWindow(2)
    for n in range(3):
        window.add(trace(request_id=f"r{n}").row())
    assert [orjson.loads(r)["request_id"] for r in window.records()] == ["r1", "r2"]


def test_the_shared_window_cuts_names_only_when_a_record_would_not_fit(tmp_path: Path):
    window = SharedWindow(SlotRing.in_file(tmp_path / "d.ring", 4, DECISION_SLOT))
    window.add(trace().row())
    long = "g" * 128
    window.add(
        trace(tier=long, group=long, endpoint=f"{long}/{'m' * 256}", fallback_from=long, request_id="r" * 128).row()
    )
    first, second = (orjson.loads(r) for r in window.records())
    assert first["endpoint"] == "balanced/m"
    assert (second["tier"], second["endpoint"], second["request_id"]) == (
        "g" * MAX_NAME,
        "g" * MAX_NAME,
        "r" * MAX_NAME,
    )
    assert second["status"] == 200
    window.close()


def test_log_fields_leave_out_what_is_unset():
    fields = trace(group=None, endpoint=None, fallback_from=None).fields()
    assert "group" not in fields
    assert "endpoint" not in fields
    assert fields["retries"] == 1


def test_an_error_record_fits_the_longest_endpoint_id():
    observer = Observer.build(
        PrometheusRecorder([], []), decisions_kept=10, events_file=None, log_content=False, tracing=None,
        multiprocess_dir=None,
    )  # fmt: skip
    longest = f"{'g' * 128}/{'m' * 256}"
    observer.upstream_error(longest, ErrorType.HTTP_5XX, '"quoted" and \\ escaped ' * 100)
    (record,) = (orjson.loads(r) for r in observer.windows()[1])
    assert record["endpoint"] == longest
    assert record["error_type"] == "http_5xx"
