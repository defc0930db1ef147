"""Per-release metrics as text (routing/metrics.py): nginx's counters parsed, windows summed, percentiles read
from the histogram. No nginx."""

from __future__ import annotations

import math
import random

import pytest

from minipaas.errors import ProxyError
from minipaas.routing import metrics

NOW = 29_000_000 * 60 + 30.0  # half-way through a minute


def raw_text(lines: list[str], now: float = NOW) -> str:
    return f"now {now:.3f} steps 8 last 136\n" + "".join(f"{line}\n" for line in lines)


def bucket_of(ms: float) -> int:
    """As metrics.lua files a latency."""
    return 0 if ms <= 1 else min(136, math.ceil(math.log(ms) / (math.log(2) / 8)))


def test_counters_parse_by_scope_release_and_name() -> None:
    minute = int(NOW // 60)
    raw = metrics.parse(raw_text(["t api 12 s 1500.000", "t api 12 c2b0 90", "t api 12 c5b0 6", "t api 12 c5b3 4",
                                  f"{minute} api 13 c2b9 7"]))
    assert raw.now == NOW and raw.steps == 8 and raw.last == 136
    assert raw.totals[12].classes == {2: 90, 5: 10} and raw.totals[12].buckets == {0: 96, 3: 4}
    assert raw.totals[12].sum_ms == 1500 and raw.totals[12].requests == 100
    assert raw.minutes[13][minute].classes == {2: 7} and raw.minutes[13][minute].buckets == {9: 7}


def test_a_websockets_life_is_no_answers_latency() -> None:
    raw = metrics.parse(raw_text(["t api 12 c1b120 3", "t api 12 c2b4 10"]))
    assert raw.totals[12].classes == {1: 3, 2: 10} and raw.totals[12].buckets == {4: 10}


@pytest.mark.parametrize("text", ["", "now x", "now 1 steps 8 last 136\nt api 12 c2 1\n",
                                  "now 1 steps 8 last 136\nt api 12 c6b1 1\n",
                                  "now 1 steps 8 last 136\nt api x c2b1 1\n", "now 1 steps 8 last 136\nt api 12\n"])
def test_text_that_is_no_metrics_is_refused(text: str) -> None:
    with pytest.raises(ProxyError, match="nginx's metrics"):
        metrics.parse(text)


def test_windows_take_the_last_minutes_and_part_of_the_oldest() -> None:
    minute = int(NOW // 60)
    # 60 requests in each of the last 20 minutes, the current one (half gone) with 30.
    lines = [f"{minute - back} api 12 c2b4 {30 if back == 0 else 60}" for back in range(20)]
    lines += [f"{minute - back} api 12 c5b4 {3 if back == 0 else 6}" for back in range(20)]
    raw = metrics.parse(raw_text(lines))
    one, five, fifteen = metrics.summary(raw, 12)
    assert (one.minutes, five.minutes, fifteen.minutes) == (1, 5, 15)
    # 1 minute: the current half (33 requests) and half of the minute before (33).
    assert one.requests == pytest.approx(66) and one.rate == pytest.approx(1.1)
    assert fifteen.requests == pytest.approx(66 * 15) and fifteen.errors == pytest.approx(6 / 66)
    assert metrics.summary(raw, 13)[0] == metrics.Window(1, 0, 0.0, 0.0, {50: None, 95: None, 99: None})


@pytest.mark.parametrize("shape", ["uniform", "lognormal", "bimodal"])
def test_percentiles_from_the_histogram_are_within_a_few_percent(shape: str) -> None:
    rng = random.Random(22)
    if shape == "uniform":
        samples = [rng.uniform(2, 400) for _ in range(50_000)]
    elif shape == "lognormal":
        samples = [rng.lognormvariate(math.log(30), 0.8) + 1 for _ in range(50_000)]
    else:
        samples = [rng.gauss(5, 0.5) if rng.random() < 0.9 else rng.gauss(900, 50) for _ in range(50_000)]
    counts = metrics.Counts()
    for ms in samples:
        b = bucket_of(ms)
        counts.buckets[b] = counts.buckets.get(b, 0) + 1
    raw = metrics.Raw(NOW, 8, 136, {12: counts}, {})
    ordered = sorted(samples)
    for q in (50, 95, 99):
        exact = ordered[int(q / 100 * len(ordered)) - 1]
        estimate = metrics.percentile(raw, counts, q)
        assert estimate is not None and abs(estimate - exact) / exact < 0.05, (q, exact, estimate)
    assert metrics.percentile(raw, metrics.Counts(), 50) is None


def test_sub_millisecond_answers_fall_in_the_first_bucket() -> None:
    counts = metrics.Counts(buckets={0: 99, 8: 1})
    raw = metrics.Raw(NOW, 8, 136, {}, {})
    assert metrics.percentile(raw, counts, 50) == pytest.approx(50 / 99)
    assert 1 < (metrics.percentile(raw, counts, 100) or 0) <= 2


def test_who_may_see_an_apps_processes_may_see_its_metrics() -> None:
    from minipaas.access.access import PermissionDenied, Principal, check

    deployer = Principal("dev", "deployer", "SHA256:x", frozenset({"api"}))
    check(deployer, "metrics", "api")
    check(deployer, "metrics", "api--feature")  # a review app of a granted app
    with pytest.raises(PermissionDenied):
        check(deployer, "metrics", "other")


def test_rows_give_each_routed_release_its_weight_and_windows() -> None:
    from minipaas.routing.routes import Version

    minute = int(NOW // 60)
    raw = metrics.parse(raw_text(["t api 12 c2b8 9", "t api 12 c5b8 1", f"{minute} api 12 c2b8 9",
                                  f"{minute} api 12 c5b8 1"]))
    [row] = metrics.rows([Version(12, 100, {"10.0.0.2:5000": "a"})], raw)
    assert row["release"] == 12 and row["weight"] == 100
    assert row["total"] == {"requests": 10, "1xx": 0, "2xx": 9, "3xx": 0, "4xx": 0, "5xx": 1}
    assert row["windows"]["1m"]["requests"] == 10 and row["windows"]["1m"]["errors"] == 0.1  # type: ignore[index]
    assert 1 < row["windows"]["15m"]["p50_ms"] <= 2  # type: ignore[index]
