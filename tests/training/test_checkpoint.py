import json
import os

import pytest
import torch

from rnnkit.training.checkpoint import (CheckpointError, CheckpointManager,
                                        flatten_optimizer_state, join_shared,
                                        load_checkpoint, resolve_checkpoint,
                                        save_checkpoint, split_shared,
                                        unflatten_optimizer_state)


def test_roundtrip_keeps_tensors_and_meta(tmp_path):
    tensors = {"a": torch.arange(6.0).view(2, 3), "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path / "ck", tensors, {"step": 3, "vocab": ["x", "y"]})
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["rng"], tensors["rng"])
    assert meta["step"] == 3 and meta["vocab"] == ["x", "y"]
    assert sorted(os.listdir(tmp_path / "ck")) == ["meta.json", "tensors.safetensors"]


def test_a_crash_during_the_write_leaves_no_checkpoint_behind(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path, keep_last=2)
    manager.save(1, {"w": torch.ones(2)}, {})

    def crash(*args):
        raise OSError("simulated power cut before the rename")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(CheckpointError, match="simulated.*earlier checkpoints are intact"):
        manager.save(2, {"w": torch.zeros(2)}, {})
    monkeypatch.undo()
    # only the complete checkpoint counts; the half-written one is a hidden temp dir
    assert manager.steps() == [1]
    assert manager.latest().name == "step-00000001"
    tensors, _ = load_checkpoint(manager.latest())
    assert torch.equal(tensors["w"], torch.ones(2))


def test_last_n_kept_plus_best(tmp_path):
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in range(1, 6):
        manager.save(step, {"w": torch.full((1,), float(step))}, {}, is_best=step == 2)
    assert manager.steps() == [2, 4, 5]
    assert manager.best().name == "step-00000002"
    assert resolve_checkpoint(tmp_path, "best").name == "step-00000002"
    assert resolve_checkpoint(tmp_path, "latest").name == "step-00000005"
    assert os.readlink(tmp_path / "latest") == "step-00000005"


@pytest.mark.parametrize("damage,match", [
    ("truncate_tensors", "tensors.safetensors' is truncated or corrupted"),
    ("flip_byte", "tensors.safetensors' is truncated or corrupted"),
    ("truncate_meta", "meta.json' is not valid JSON"),
    ("delete_tensors", "tensors.safetensors' is missing"),
    ("foreign_meta", "is not an rnnkit checkpoint"),
])
def test_damaged_checkpoint_errors_name_the_file_and_the_problem(tmp_path, damage, match):
    path = save_checkpoint(tmp_path / "ck", {"w": torch.randn(100)}, {"step": 1})
    tensors_file, meta_file = path / "tensors.safetensors", path / "meta.json"
    if damage == "truncate_tensors":
        tensors_file.write_bytes(tensors_file.read_bytes()[:-37])
    elif damage == "flip_byte":
        blob = bytearray(tensors_file.read_bytes())
        blob[-5] ^= 0xFF
        tensors_file.write_bytes(bytes(blob))
    elif damage == "truncate_meta":
        meta_file.write_text(meta_file.read_text()[:20])
    elif damage == "delete_tensors":
        tensors_file.unlink()
    else:
        meta_file.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_tied_weights_are_stored_once_and_restored():
    embedding = torch.nn.Embedding(5, 3)
    decoder = torch.nn.Linear(3, 5)
    decoder.weight = embedding.weight
    model = torch.nn.ModuleDict({"embedding": embedding, "decoder": decoder})
    tensors, aliases = split_shared(model.state_dict())
    assert aliases == {"decoder.weight": "embedding.weight"}
    model.load_state_dict(join_shared(tensors, aliases))


def test_optimizer_state_roundtrips_without_pickle():
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(2))]
    opt = torch.optim.Adam(params, lr=0.01, betas=(0.8, 0.9))
    for _ in range(2):
        opt.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        opt.step()
    tensors, plain = flatten_optimizer_state(opt.state_dict())
    plain = json.loads(json.dumps(plain))  # what really goes to disk
    other = torch.optim.Adam([torch.nn.Parameter(p.detach().clone()) for p in params], lr=1)
    other.load_state_dict(unflatten_optimizer_state(tensors, plain))
    assert other.param_groups[0]["betas"] == (0.8, 0.9)
    for i in range(2):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(other.state[other.param_groups[0]["params"][i]][key],
                               opt.state[params[i]][key])
