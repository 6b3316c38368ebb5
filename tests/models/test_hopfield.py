"""The Hopfield networks: Hebbian storage, recall, the energy property, capacity."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.cli import main
from rnnkit.models.hopfield import (Hopfield, ModernHopfield, capacity_curve, knee,
                                    recall_rate)


def random_patterns(k, n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (k, n), generator=gen).float() * 2 - 1


def test_store_is_the_hebbian_rule_with_a_zero_diagonal():
    patterns = torch.tensor([[1., -1., 1.], [1., 1., -1.]])
    net = Hopfield(3)
    net.store(patterns)
    expected = torch.tensor([[0., 0., 0.], [0., 0., -2.], [0., -2., 0.]]) / 3
    assert torch.allclose(net.weight, expected)
    x = torch.tensor([1., 1., 1.])
    assert float(net.energy(x)) == pytest.approx(-0.5 * float(x @ expected @ x))


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_few_patterns_are_recalled_from_corrupted_copies(mode):
    patterns = random_patterns(5, 100, seed=1)
    net = Hopfield(100)
    net.store(patterns)
    probes = patterns.clone()
    probes[:, :10] *= -1  # 10% of the bits wrong
    recalled = net.recall(probes, mode=mode, generator=torch.Generator().manual_seed(0))
    assert torch.equal(recalled, patterns)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 40), k=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_asynchronous_updates_never_increase_the_energy(n, k, seed):
    net = Hopfield(n)
    net.store(random_patterns(k, n, seed))
    gen = torch.Generator().manual_seed(seed + 1)
    state = torch.randint(0, 2, (3, n), generator=gen).float() * 2 - 1
    energy = net.energy(state)
    for i in torch.randint(0, n, (4 * n,), generator=gen).tolist():
        net.update_neuron(state, i)
        after = net.energy(state)
        assert bool((after <= energy + 1e-5).all()), (energy, after)
        energy = after


def test_synchronous_updates_can_end_in_a_two_cycle():
    net = Hopfield(2)
    net.store(torch.tensor([[1., 1.]]))  # W = [[0, .5], [.5, 0]]
    states = net.trajectory(torch.tensor([1., -1.]), steps=4, mode="sync")
    assert [s.tolist() for s in states] == [[1, -1], [-1, 1], [1, -1], [-1, 1], [1, -1]]


def test_modern_hopfield_retrieves_the_nearest_pattern_far_past_capacity():
    patterns = random_patterns(200, 100, seed=2)  # load 2.0
    net = ModernHopfield(beta=1.0)
    rate = recall_rate(net, patterns, 0.1, torch.Generator().manual_seed(0))
    assert rate == 1.0
    assert recall_rate(Hopfield(100), patterns, 0.1, torch.Generator().manual_seed(0)) == 0.0


def test_knee_interpolates_where_the_rate_crosses_one_half():
    assert knee([0.1, 0.2, 0.3], [1.0, 0.7, 0.3]) == pytest.approx(0.25)
    assert knee([0.1, 0.2], [1.0, 0.9]) is None


def test_the_classic_capacity_knee_is_near_0_14_n():
    loads = [0.06, 0.10, 0.14, 0.18, 0.22, 0.26]
    rates = capacity_curve(60, loads, trials=4, flip=0.05, seed=0)
    assert rates["classic"][0] == 1.0 and rates["classic"][-1] < 0.2
    assert 0.10 <= knee(loads, rates["classic"]) <= 0.22
    assert min(rates["modern"]) == 1.0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="Hopfield: patterns must hold only -1 and \\+1"):
        Hopfield(3).store(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"Hopfield: patterns must have shape \(K, 3\)"):
        Hopfield(3).store(torch.ones(2, 4))
    with pytest.raises(ValueError, match="mode must be 'async' or 'sync'"):
        Hopfield(3).recall(torch.ones(3), mode="parallel")
    with pytest.raises(ValueError, match="ModernHopfield: beta must be > 0"):
        ModernHopfield(beta=0)


def test_cli_capacity_and_demo_write_pngs_and_json(tmp_path, capsys):
    import json
    out = tmp_path / "cap.png"
    assert main(["hopfield", "capacity", "--neurons", "40", "--trials", "2",
                 "--max-load", "0.3", "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["loads"]) == 15 and result["loads"][-1] == 0.3
    assert 0.04 <= result["knee"] <= 0.3 and result["modern_knee"] is None
    assert out.read_bytes()[:4] == b"\x89PNG"
    demo = tmp_path / "demo.png"
    assert main(["hopfield", "demo", "--out", str(demo)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["recalled"] and result["energies"] == sorted(result["energies"],
                                                               reverse=True)
    assert demo.read_bytes()[:4] == b"\x89PNG"
    assert main(["hopfield", "capacity", "--flip", "0.7", "--out", str(out)]) == 2
    assert "--flip must be in [0, 0.5), got 0.7" in capsys.readouterr().err
