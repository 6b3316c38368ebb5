"""ImageTrainer: the logged loss of a captioner is the caption cross-entropy, whatever
else the training objective holds (hard attention's REINFORCE surrogate and entropy
bonus, the doubly stochastic regulariser)."""
import math

import pytest
import torch

from rnnkit.cli_images import build_image_model
from rnnkit.data.images import collate_images, load_image_corpus
from rnnkit.training.config import Config, apply_overrides
from rnnkit.training.distributed import World
from rnnkit.training.image_trainer import ImageTrainer, evaluate_captions, loss_terms


@pytest.fixture(scope="module")
def corpus():
    return load_image_corpus("caption", "", image_size=16, scenes=20)


def trainer_for(corpus, **task):
    overrides = {"task.task": "caption", "task.attention": "additive", "task.image_size": "16",
                 "task.cnn_width": "4", "model.embed_size": "8", "model.hidden_size": "16",
                 "model.num_layers": "1", "train.batch_size": "8", "train.progress": "off",
                 "train.tensorboard": "false",
                 **{f"task.{k}": str(v).lower() for k, v in task.items()}}
    config = apply_overrides(Config(), overrides).validate()
    torch.manual_seed(0)
    model = build_image_model(config.model, config.task, len(corpus.vocab))
    return ImageTrainer(model, corpus, config, None, World(), {"kind": "caption"})


def test_hard_attention_logs_the_cross_entropy_and_trains_on_the_whole_objective(corpus):
    trainer = trainer_for(corpus, hard_attention=True)
    (batch,), _ = trainer.next_batch()
    torch.manual_seed(7)
    logged = trainer.compute_gradients(batch)
    got = {n: p.grad.clone() for n, p in trainer.model.named_parameters()
           if p.grad is not None}
    torch.manual_seed(7)  # the same sampled locations
    trainer.model.baseline.initialised.fill_(False)  # and the same baseline
    terms = loss_terms(trainer.model, batch)
    assert set(terms) == {"cross_entropy", "reinforce", "entropy_bonus"}
    assert logged == pytest.approx(terms["cross_entropy"].item(), rel=1e-6)
    assert logged > 0 and terms["reinforce"].item() != 0
    trainer.model.zero_grad()
    sum(terms.values()).backward()
    for name, grad in got.items():  # the surrogate's gradient is in
        torch.testing.assert_close(grad, trainer.model.get_parameter(name).grad)
    assert got["attention.W_q.weight"].abs().sum() > 0
    assert trainer.train_metrics(logged) == {"loss": logged, "ppl": math.exp(logged)}


def test_the_regulariser_is_reported_apart_from_the_loss(corpus):
    trainer = trainer_for(corpus, attention_reg=0.5)
    model = trainer.model
    metrics = evaluate_captions(model, corpus.valid, corpus, batch_size=100)
    items = corpus.valid.items
    batch = collate_images(corpus.valid, items, corpus)
    terms = loss_terms(model.eval(), batch)
    assert metrics["loss"] == pytest.approx(terms["cross_entropy"].item(), rel=1e-5)
    assert metrics["ppl"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-9)
    assert metrics["attention_reg"] == pytest.approx(terms["attention_reg"].item(), rel=1e-5)
    assert metrics["attention_reg"] > 0
    (batch,), _ = trainer.next_batch()
    logged = trainer.compute_gradients(batch)
    assert logged == pytest.approx(loss_terms(model.train(), batch)["cross_entropy"].item(),
                                   rel=1e-6)
    plain = trainer_for(corpus)
    assert "attention_reg" not in evaluate_captions(plain.model, corpus.valid, corpus, 100)


def test_references_first_trains_on_one_reading_per_image(corpus):
    groups = corpus.train.references()
    assert any(len(refs) == 2 for refs in groups.values())  # scenes of 2-3 shapes
    for choice in ("random", "first"):
        trainer = trainer_for(corpus, references=choice)
        captions = [[corpus.train.items[i].tokens for i in unit] for unit in trainer.units]
        want = [refs[:1] if choice == "first" else refs for refs in groups.values()]
        assert captions == want
