import hashlib
from pathlib import Path

import numpy as np
import pytest

from chatflow_plugin.data.mixture import load_mixture
from chatflow_plugin.data.sampler import MixtureSampler, nth_events, rank_indices, realized_group_counts
from chatflow_plugin.data.schedule import LinearGrowHold, Piecewise

TABLE1_ALPHA = [0.60, 0.05, 0.25, 0.05, 0.0, 0.05]
TABLE1_BETA = [0.15, 0.50, 0.0, 0.10, 0.20, 0.05]


def make_sampler(t_grow=50_000, seed=0):
    schedule = LinearGrowHold(TABLE1_ALPHA, TABLE1_BETA, t_grow)
    # 8 sources: two in zh_corpus (3:1 by share), two in en_inst, one elsewhere
    groups = [0, 1, 1, 2, 3, 3, 4, 5]
    rows = [97, 40, 13, 61, 7, 19, 23, 5]
    shares = [1, 3, 1, 1, 1, 1, 1, 1]
    return MixtureSampler(schedule, groups, rows, shares, seed=seed)


def test_realised_mixture_tracks_the_integral_at_every_prefix():
    schedule = LinearGrowHold(TABLE1_ALPHA, TABLE1_BETA, 40_000)
    n = 120_000   # crosses T_grow
    group, counts_before = nth_events(schedule.expected_counts, np.arange(n), 6)
    onehot = np.zeros((n, 6), dtype=np.int64)
    onehot[np.arange(n), group] = 1
    running = np.cumsum(onehot, axis=0)
    expected = schedule.expected_counts(np.arange(1, n + 1))
    deviation = np.abs(running - expected).max()
    assert deviation < 2.0, deviation                     # within two samples, at every prefix
    # counts_before is exactly the running count of earlier samples: one consistent sequence
    np.testing.assert_array_equal(counts_before, running - onehot)
    # the bound: within 0.5% relative for N >= 100,000
    final = running[-1]
    big = expected[-1] > 0
    assert (np.abs(final - expected[-1])[big] / expected[-1][big] < 0.005).all()


def test_realized_group_counts_is_exact_without_drawing():
    schedule = LinearGrowHold(TABLE1_ALPHA, TABLE1_BETA, 1000)
    group, _ = nth_events(schedule.expected_counts, np.arange(5000), 6)
    for n in (0, 1, 7, 999, 1000, 1001, 4999, 5000):
        np.testing.assert_array_equal(realized_group_counts(schedule, n), np.bincount(group[:n], minlength=6))


def test_draw_is_a_pure_function_of_t():
    a, b = make_sampler(), make_sampler()
    t = np.arange(20_000)
    da = a.draw(t)
    # any order, any subset, a fresh object: same answers
    perm = np.random.default_rng(1).permutation(t)
    db = b.draw(perm)
    inverse = np.argsort(perm)
    for field in ("group", "source", "row", "epoch"):
        np.testing.assert_array_equal(getattr(da, field), getattr(db, field)[inverse])


def test_seed_changes_rows_but_not_groups():
    a, b = make_sampler(seed=0), make_sampler(seed=1)
    t = np.arange(5000)
    da, db = a.draw(t), b.draw(t)
    np.testing.assert_array_equal(da.group, db.group)
    assert (da.row != db.row).any()


def test_each_epoch_visits_every_row_exactly_once():
    sampler = make_sampler()
    d = sampler.draw(np.arange(30_000))
    for s, rows in enumerate(sampler.source_rows):
        sel = d.source == s
        seen_rows, epochs = d.row[sel], d.epoch[sel]
        full = int(sel.sum()) // rows
        for e in range(full):
            assert sorted(seen_rows[epochs == e].tolist()) == list(range(rows))
        # epochs are consecutive and start at 0
        assert epochs.tolist() == sorted(epochs.tolist())
        assert np.array_equal(np.unique(epochs), np.arange(epochs.max() + 1))
        # a new epoch uses a new order
        if full >= 2 and rows > 3:
            assert not np.array_equal(seen_rows[epochs == 0], seen_rows[epochs == 1])


def test_source_shares_inside_a_group():
    sampler = make_sampler()
    d = sampler.draw(np.arange(40_000))
    zh = d.source[d.group == 1]
    n1, n2 = (zh == 1).sum(), (zh == 2).sum()
    assert abs(n1 - 3 * len(zh) / 4) <= 1 and abs(n2 - len(zh) / 4) <= 1


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_are_disjoint_and_cover_the_global_sequence(world_size):
    sampler = make_sampler()
    micro = 4
    iterations = 30
    seen = []
    for it in range(iterations):
        for rank in range(world_size):
            idx = rank_indices(it, micro, rank, world_size)
            seen.append(idx)
    flat = np.concatenate(seen)
    assert len(np.unique(flat)) == len(flat)                          # disjoint
    np.testing.assert_array_equal(np.sort(flat), np.arange(iterations * micro * world_size))  # cover
    # whatever the world size, sample t is the same draw
    reference = sampler.draw(np.arange(len(flat)))
    d = sampler.draw(flat)
    order = np.argsort(flat)
    np.testing.assert_array_equal(d.row[order], reference.row)
    np.testing.assert_array_equal(d.source[order], reference.source)


def test_resume_at_an_arbitrary_step_continues_the_same_sequence():
    full = make_sampler().draw(np.arange(10_000))
    resumed = make_sampler()   # a new process: no state carried over
    step, batch = 137, 32
    tail = resumed.draw(np.arange(step * batch, 10_000))
    np.testing.assert_array_equal(tail.row, full.row[step * batch:])
    np.testing.assert_array_equal(tail.source, full.source[step * batch:])


def test_rank_indices_rejects_bad_rank():
    with pytest.raises(ValueError):
        rank_indices(0, 4, 2, 2)


def test_sampler_validates_sources():
    schedule = LinearGrowHold([1.0, 1.0], [1.0, 1.0], 10)
    with pytest.raises(ValueError, match="no source"):
        MixtureSampler(schedule, [0], [3], [1.0])
    with pytest.raises(ValueError, match="at least one window"):
        MixtureSampler(schedule, [0, 1], [3, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        MixtureSampler(schedule, [0, 1], [3, 3], [1.0, -1.0])


# Values computed with the sampler of commit a0be711, before schedules became an interface with shapes:
# the paper's schedule must keep giving exactly this order.
ROOT = Path(__file__).resolve().parents[2]


def _sha(*arrays) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a, dtype="<i8").tobytes())
    return digest.hexdigest()


def table1_as_two_knots():
    """models/mixtures/chatflow_table1.json written as a piecewise schedule: knots [0, T_grow], weights [alpha, beta]."""
    import json

    from chatflow_plugin.data.mixture import parse_mixture

    data = json.loads((ROOT / "models/mixtures/chatflow_table1.json").read_text())
    data.update(schedule_shape="piecewise", knots=[0, data.pop("T_grow")], interpolation="linear")
    for group in data["groups"]:
        group["weights"] = [group.pop("alpha"), group.pop("beta")]
    return parse_mixture(data, base_dir=ROOT / "models/mixtures")


@pytest.mark.parametrize("form", ["linear_grow_hold", "piecewise"])
def test_table1_order_is_pinned(form):
    """Issue 15: the paper's Table 1 as a two-knot piecewise schedule gives exactly today's order."""
    spec = load_mixture(ROOT / "models/mixtures/chatflow_table1.json") if form == "linear_grow_hold" else \
        table1_as_two_knots()
    assert spec.schedule_shape == form
    schedule = spec.schedule()
    group, _ = nth_events(schedule.expected_counts, np.arange(4096), 6)
    assert "".join(map(str, group[:64])) == "0020020013502002002000200200135020020020002002001350200200200020"
    assert np.bincount(group, minlength=6).tolist() == [2457, 206, 1023, 205, 0, 205]
    assert _sha(group) == "13a8d495e391c2bdc004eb96deff95a72645c3f7e9a41b350f41556c800cdcdf"
    # around T_grow = 5M, by random access
    group, before = nth_events(schedule.expected_counts, np.arange(4_999_990, 5_000_010), 6)
    assert "".join(map(str, group)) == "01141301411140131410"
    assert before[0].tolist() == [1874998, 1374995, 625000, 374999, 499998, 250000]
    assert realized_group_counts(schedule, 2_500_000).tolist() == [1218750, 406250, 468750, 156250, 125000, 125000]
    assert realized_group_counts(schedule, 5_000_000).tolist() == [1875000, 1375000, 625000, 375000, 500000, 250000]
    assert realized_group_counts(schedule, 12_345_678).tolist() == [2976852, 5047839, 625000, 1109568, 1969135,
                                                                    617284]


@pytest.mark.parametrize("shape", [LinearGrowHold, Piecewise])
def test_table1_draws_across_t_grow_are_pinned(shape):
    """Table 1's weights with T_grow = 1,500: 4,096 draws through the hold, down to source, row and epoch; the same
    as a two-knot piecewise schedule."""
    spec = load_mixture(ROOT / "models/mixtures/chatflow_table1.json")
    alpha, beta = [g.schedule_params["alpha"] for g in spec.groups], [g.schedule_params["beta"] for g in spec.groups]
    schedule = LinearGrowHold(alpha, beta, 1500) if shape is LinearGrowHold else Piecewise([0, 1500], [alpha, beta])
    sampler = MixtureSampler(schedule, [0, 1, 1, 2, 3, 3, 4, 5], [97, 40, 13, 61, 7, 19, 23, 5],
                             [1, 3, 1, 1, 1, 1, 1, 1], seed=42)
    d = sampler.draw(np.arange(4096))
    assert "".join(map(str, d.group[:64])) == "0020020013502002002000200201035200020020002010200352000200120002"
    assert "".join(map(str, d.group[-64:])) == "1401114013141101413514011140131411014135140111401314110141351401"
    assert np.bincount(d.group, minlength=6).tolist() == [952, 1710, 188, 372, 669, 205]
    assert d.row[:16].tolist() == [57, 21, 6, 76, 18, 27, 33, 40, 21, 3, 2, 94, 20, 27, 51, 35]
    assert _sha(d.group) == "aba420d86933e7f5eba603512aae93e8185e94445562303c7e8d9a5023412d5e"
    assert _sha(d.group, d.source, d.row, d.epoch) == "17efdf9503525c6a8bc0879c6464674a0c7705c6520a59e0037f09ed6d68771a"


def random_piecewise(rng: np.random.Generator, horizon: int) -> Piecewise:
    """A random piecewise schedule: 2-7 groups, up to 6 knots (some repeated: steps), linear or cosine
    stretches, weights spanning several decades with zeros."""
    k = int(rng.integers(2, 8))
    n = int(rng.integers(1, 7))
    knots = np.sort(rng.uniform(0, horizon, n - 1).round()) if n > 1 else np.array([])
    if n > 2 and rng.random() < 0.5:
        i = int(rng.integers(1, n - 1))
        knots[i] = knots[i - 1]                                     # a step
    knots = np.concatenate([[0.0], knots])
    weights = rng.choice([0.0, 1e-3, 0.1, 1.0, 7.0], size=(n, k)) * rng.uniform(0.5, 2.0, size=(n, k))
    weights[:, 0] += 1e-2                                           # every knot drawable
    kinds = [str(rng.choice(["linear", "cosine"])) for _ in range(n - 1)]
    return Piecewise(knots, weights, kinds)


@pytest.mark.parametrize("seed", range(12))
def test_random_schedules_realise_their_integral_at_every_prefix(seed):
    rng = np.random.default_rng(seed)
    n = 6000
    schedule = random_piecewise(rng, n)
    k = schedule.n_groups
    group, counts_before = nth_events(schedule.expected_counts, np.arange(n), k)
    onehot = np.zeros((n, k), dtype=np.int64)
    onehot[np.arange(n), group] = 1
    running = np.cumsum(onehot, axis=0)
    deviation = np.abs(running - schedule.expected_counts(np.arange(1, n + 1))).max()
    # about two samples: under 2 up to five groups, (K - 1) / 2 beyond (ties at one whole time go in group order)
    assert deviation < max(2.0, (k - 1) / 2), (deviation, schedule.knots, schedule.interpolation)
    np.testing.assert_array_equal(counts_before, running - onehot)
