"""A few trials of each fault-injection case of benchmarks/faults.py (the full counts,
50 / 20 / 100 trials, are in RESULTS.md): kill -9 then --resume, a full disk in a
checkpoint write, damaged and wrong-model checkpoints."""

import pytest

from benchmarks.faults import Workspace, run_trials


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("faults"))
    yield ws
    ws.close()


def test_the_reference_run_is_repeatable(workspace):
    assert workspace.matches_reference(workspace.reference) == ""
    assert workspace.operations > 20  # the checkpoint code was instrumented


def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_run(workspace):
    # seed 7: trial 0 dies inside the checkpoint code, trial 1 at a random time
    survived, outcomes, failures = run_trials(workspace, "kill", 2, seed=7)
    assert failures == [] and survived == 2
    assert outcomes["killed inside a checkpoint write"] == 1


def test_a_full_disk_in_a_checkpoint_write_keeps_the_earlier_ones(workspace):
    survived, _, failures = run_trials(workspace, "disk", 1, seed=7)
    assert failures == [] and survived == 1


def test_damaged_and_wrong_model_checkpoints_are_a_checkpoint_error(workspace):
    # indices 0-4: two truncations, two bit flips, one wrong model (a spliced file)
    survived, outcomes, failures = run_trials(workspace, "corrupt", 5, seed=7)
    assert failures == [] and survived == 5
    assert outcomes["CheckpointError"] >= 4
