"""Run by test_distributed.py, alone or under torchrun: one gradient on the first chunk
of the global batch, then a short fit. Rank 0 saves the averaged gradients."""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_helpers import tiny_trainer  # noqa: E402


def main(tmp, tag):
    tmp = Path(tmp)
    overrides = {"model.dropout": "0", "train.epochs": "1", "train.checkpoint_every": "4",
                 "train.eval_batch_size": "4", "train.threads": "1"}
    torch.set_num_threads(1)
    trainer = tiny_trainer(tmp, out=f"run-{tag}", **overrides)
    # the first chunk of this rank's shard
    inputs, targets = trainer.train_data[:8], trainer.train_data[1:9]
    loss = trainer.compute_gradients(inputs, targets)
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters()}
    if trainer.world.is_main:
        grads["__loss__"] = torch.tensor([loss], dtype=torch.float64)
        grads["__columns__"] = torch.tensor([trainer.train_data.size(1)])
        save_file(grads, str(tmp / f"grads-{tag}.safetensors"))
    trainer.fit()
    trainer.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
