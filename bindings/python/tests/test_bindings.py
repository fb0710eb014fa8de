"""The Python bindings against the built library (run by tests/python.rs,
or by hand: `pip install ./bindings/python pytest && pytest bindings/python`)."""

import math

import numpy as np
import pytest

from entropix_sampler import SAMPLER_NAMES, Chain, EntropixError, Sampler, version

RNG = np.random.default_rng(7)
LOGITS = RNG.normal(0.0, 3.0, size=49152).astype(np.float32)


def test_version_and_every_name_builds():
    assert version()
    for name in SAMPLER_NAMES:
        with Sampler(name) as s:
            assert s.name


def test_top_k_keeps_k_and_parameters_are_not_ignored():
    for k in (1, 3, 40):
        r = Sampler("top_k", k=k).apply(LOGITS)
        kept = np.flatnonzero(np.isfinite(r.logits))
        assert len(kept) == k
        assert set(kept) == set(np.argsort(LOGITS)[-k:])
        assert r.token is None


def test_greedy_selects_the_argmax_and_a_chain_runs_in_order():
    assert Sampler("greedy").sample(LOGITS) == int(np.argmax(LOGITS))
    # Top-k 5 then min-p 0.5: what is left is the part of the top 5 within
    # half the best probability.
    r = Chain([Sampler("top_k", k=5), Sampler("min_p", p=0.5)]).apply(LOGITS)
    top5 = np.sort(LOGITS)[-5:]
    want = top5[top5 >= top5.max() + math.log(0.5)]
    assert sorted(r.logits[np.isfinite(r.logits)]) == pytest.approx(sorted(want))


def test_dist_is_reproducible_by_seed_and_follows_temperature():
    def draws(seed, temp, n=200):
        chain = Chain([Sampler("temperature", temp=temp), Sampler("dist", seed=seed)])
        return [chain.sample(LOGITS) for _ in range(n)]

    assert draws(1, 1.0) == draws(1, 1.0)
    assert draws(1, 1.0) != draws(2, 1.0)
    # Cold sampling concentrates on the top tokens, hot sampling spreads.
    assert len(set(draws(3, 0.05))) < len(set(draws(3, 5.0)))


def test_entropix_reports_its_strategy_and_reads_its_parameters():
    s = Sampler("entropix", seed=7)
    token = s.sample(LOGITS)
    assert 0 <= token < len(LOGITS)
    step = s.state()["last_step"]
    assert step["strategy"] in {"flowing", "treading", "exploring", "resampling", "adaptive"}
    assert step["entropy_bits"] > 0
    assert step["selected_token"] == token
    # min_p 1 keeps only the most likely token, whatever the strategy.
    assert Sampler("entropix", seed=7, min_p=1.0).sample(LOGITS) == int(np.argmax(LOGITS))
    ref = Sampler("entropix", preset="reference", seed=7)
    assert ref.state()["variant"]


def test_bad_input_raises_with_the_library_message():
    with pytest.raises(EntropixError, match="unknown sampler `nucleus`"):
        Sampler("nucleus")
    with pytest.raises(EntropixError, match="unknown parameter `pp`"):
        Sampler("top_p", pp=0.9)
    with pytest.raises(EntropixError, match="p"):
        Sampler("top_p", p=2.0)
    with pytest.raises(EntropixError, match="no finite value"):
        Sampler("greedy").sample(np.full(10, np.nan, dtype=np.float32))
    # NaN entries among finite ones are skipped, never selected.
    half = LOGITS[:10].copy()
    half[::2] = np.nan
    assert Sampler("greedy").sample(half) % 2 == 1
    with pytest.raises(EntropixError, match="no token selected"):
        Sampler("top_k", k=2).sample(LOGITS)
    with pytest.raises(ValueError):
        Sampler("greedy").apply(np.zeros((2, 3), dtype=np.float32))


def test_penalties_see_accepted_tokens_and_reset_forgets_them():
    s = Sampler("penalties", penalty_last_n=64, penalty_repeat=2.0)
    best = int(np.argmax(LOGITS))
    s.accept(best)
    after = s.apply(LOGITS).logits
    assert after[best] < LOGITS[best]
    s.reset()
    assert s.apply(LOGITS).logits[best] == LOGITS[best]
    c = s.clone()
    assert c.apply(LOGITS).logits[best] == LOGITS[best]
