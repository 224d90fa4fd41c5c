"""Backoff: the same rule as the Rust client's."""

from __future__ import annotations

import math

import pytest

from eventbus import Backoff
from eventbus.backoff import BackoffState


def test_ceilings_double_up_to_max() -> None:
    backoff = Backoff()
    assert [backoff.ceiling(n) for n in range(10)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    )
    assert backoff.ceiling(10_000) == 5.0
    assert backoff.ceiling(-1) == 0.05


@pytest.mark.parametrize("attempt", [0, 1, 5, 7, 31, 32, 1000, 2**40])
def test_delays_stay_between_half_and_full_ceiling(attempt: int) -> None:
    backoff = Backoff()
    ceiling = backoff.ceiling(attempt)
    assert backoff.delay(attempt, 0.0) == ceiling / 2
    assert backoff.delay(attempt, 1.0) == ceiling
    assert backoff.delay(attempt, -3.0) == ceiling / 2
    assert backoff.delay(attempt, 7.0) == ceiling
    assert backoff.delay(attempt, math.nan) == ceiling / 2
    for _ in range(100):
        assert ceiling / 2 <= backoff.delay(attempt) <= ceiling


def test_state_grows_resets_and_never_exceeds_max() -> None:
    policy = Backoff(initial=0.01, max=0.1)
    state = BackoffState(policy)
    delays = [state.next_delay() for _ in range(50)]
    for attempt, delay in enumerate(delays):
        ceiling = policy.ceiling(attempt)
        assert ceiling / 2 <= delay <= ceiling
        assert delay <= policy.max
    assert delays[49] >= 0.05
    state.reset()
    assert state.next_delay() <= 0.01


def test_max_below_initial_caps_everything() -> None:
    assert Backoff(initial=10.0, max=1.0).ceiling(0) == 1.0


def test_zero_initial_means_no_delay_and_negative_is_rejected() -> None:
    assert Backoff(initial=0.0, max=1.0).delay(5) == 0.0
    with pytest.raises(ValueError):
        Backoff(initial=-1.0)
