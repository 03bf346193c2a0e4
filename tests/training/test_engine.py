"""The engine itself (issue 16, items 1, 2, 6): data in any form, the step budget and its floor,
the LR schedule, clipping, evaluation hooks, metrics.csv and loss.png, and bad arguments."""

from __future__ import annotations

import csv
import sys

import pytest
import torch
from torch.utils.data import DataLoader, StackDataset, TensorDataset

from genfast.training import Batch, Task, Trainer, constant, warmup_constant, warmup_cosine

pytestmark = pytest.mark.usefixtures("flush_denormal")


class _Linear(Task):
    """Least squares on rows [x, y]: the smallest family there is."""

    def __init__(self, lr=0.1):
        super().__init__(torch.nn.Linear(3, 1))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.seen: list[torch.Tensor] = []

    def optimizers(self):
        return {"sgd": self.opt}

    def training_step(self, batch: Batch, ctx):
        self.seen.append(batch.indices.clone() if batch.indices is not None else batch.images.shape[0])
        x = batch.images
        loss = (self.model(x[:, :3]).squeeze(1) - x[:, 3]).pow(2).mean()
        ctx.update(loss, self.opt)
        return {"loss": loss.detach(), "lr": self.opt.param_groups[0]["lr"]}


def _rows(n=40):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    return torch.cat([x, (x @ torch.tensor([1.0, -2.0, 0.5]))[:, None]], 1)


def test_tensor_dataset_and_loader_give_the_same_run():
    data = _rows()
    runs = []
    for form in (data, StackDataset(data, [0] * len(data)), TensorDataset(data)):  # int labels in the middle one
        task = _Linear()
        torch.manual_seed(1)
        task.model.reset_parameters()
        out = Trainer(task, steps=12, batch_size=8, seed=3).fit(form)
        runs.append([h["loss"] for h in out["history"]])
        assert out["steps"] == 12 and len(task.seen) == 12
    assert runs[0] == runs[1] == runs[2]
    # a DataLoader is used as it is (its own batch size and order)
    task = _Linear()
    out = Trainer(task, steps=7, batch_size=999).fit(DataLoader(TensorDataset(data), batch_size=5, shuffle=False))
    assert out["steps"] == 7 and task.seen == [5] * 7  # 8 batches of 5 per epoch, no indices


def test_epochs_are_seeded_permutations_without_repeats():
    task = _Linear()
    Trainer(task, steps=10, batch_size=8, seed=0).fit(_rows(40))
    first = torch.cat(task.seen[:5])
    assert sorted(first.tolist()) == list(range(40))  # epoch 1 visits every row once
    task2 = _Linear()
    Trainer(task2, steps=10, batch_size=8, seed=0).fit(_rows(40))
    assert all(torch.equal(a, b) for a, b in zip(task.seen, task2.seen))
    task3 = _Linear()
    Trainer(task3, steps=10, batch_size=8, seed=1).fit(_rows(40))
    assert not all(torch.equal(a, b) for a, b in zip(task.seen, task3.seen))


def test_schedules_clip_and_floor():
    assert [warmup_constant(4)(s, 0.0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert warmup_cosine(1)(0, 1.0) == pytest.approx(0.0) and constant()(7, 0.5) == 1.0
    task = _Linear(lr=0.2)
    out = Trainer(task, steps=4, batch_size=8, lr_schedule=warmup_constant(4)).fit(_rows())
    assert [h["lr"] for h in out["history"]] == pytest.approx([0.05, 0.1, 0.15, 0.2])
    # a time budget already spent still takes min_steps steps
    out = Trainer(_Linear(), time_budget_s=1e-9, min_steps=3, batch_size=8).fit(_rows())
    assert out["steps"] == 3
    # ... and the schedule anneals over the floor's steps, not over the spent budget (a busy
    # machine's demo trained its floor at a learning rate of 0)
    out = Trainer(_Linear(lr=0.2), time_budget_s=1e-9, min_steps=4, batch_size=8,
                  lr_schedule=lambda step, frac: 1.0 - frac).fit(_rows())
    assert [h["lr"] for h in out["history"]] == pytest.approx([0.2, 0.15, 0.1, 0.05])
    out = Trainer(_Linear(lr=0.2), steps=2, min_steps=4, batch_size=8,  # the floor outlasts steps too
                  lr_schedule=lambda step, frac: 1.0 - frac).fit(_rows())
    assert [h["lr"] for h in out["history"]] == pytest.approx([0.2, 0.15, 0.1, 0.05])
    out = Trainer(_Linear(lr=0.2), steps=4, min_steps=2, batch_size=8,  # a floor below the budget changes nothing
                  lr_schedule=lambda step, frac: 1.0 - frac).fit(_rows())
    assert [h["lr"] for h in out["history"]] == pytest.approx([0.2, 0.15, 0.1, 0.05])

    norms = []

    class Spy(_Linear):
        def training_step(self, batch, ctx):
            x = batch.images
            loss = 1e3 * (self.model(x[:, :3]).squeeze(1) - x[:, 3]).pow(2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()  # the engine's pre-hook clips before the step
            norms.append(float(torch.cat([p.grad.flatten() for p in self.model.parameters()]).norm()))
            return {"loss": loss}

    Trainer(Spy(), steps=2, batch_size=8, grad_clip=0.5).fit(_rows())
    assert max(norms) <= 0.5 + 1e-5


def test_metrics_csv_loss_png_and_eval_hook(tmp_path, monkeypatch):
    calls = []
    Trainer(_Linear(), steps=6, batch_size=8, out_dir=tmp_path / "run", eval_every=3,
            eval_fn=lambda step: calls.append(step) or {"val_loss": 1.0 / step}).fit(_rows())
    assert calls == [3, 6]
    with (tmp_path / "run" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(float(r["step"])) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss", "lr", "samples_per_s", "val_loss"} <= set(rows[0])
    assert rows[2]["val_loss"] != "" and rows[1]["val_loss"] == ""
    png = (tmp_path / "run" / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # without matplotlib the plot is drawn with Pillow
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from genfast.training.logs import plot_losses

    out = plot_losses([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], tmp_path / "p.png")
    from PIL import Image

    assert Image.open(out).size == (600, 400)


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match="tensorboard"):
        Trainer(_Linear(), steps=1, batch_size=8, out_dir=tmp_path / "r", tensorboard=True).fit(_rows())


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"steps": -1}, ValueError, "steps"),
    ({"steps": 1.5}, TypeError, "steps"),
    ({"steps": None}, ValueError, "time_budget_s"),
    ({"steps": 1, "batch_size": 0}, ValueError, "batch_size"),
    ({"steps": 1, "time_budget_s": -2.0}, ValueError, "time_budget_s"),
    ({"steps": 1, "grad_clip": float("nan")}, ValueError, "grad_clip"),
    ({"steps": 1, "lr_schedule": 3}, TypeError, "lr_schedule"),
    ({"steps": 1, "resume": True}, ValueError, "out_dir"),
])
def test_bad_arguments_name_themselves(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        Trainer(_Linear(), **kwargs)


def test_bad_data_names_the_argument():
    with pytest.raises(TypeError, match="data must be"):
        Trainer(_Linear(), steps=1).fit([1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        Trainer(_Linear(), steps=1).fit(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="labels"):
        Trainer(_Linear(), steps=1).fit(_rows(), labels=torch.zeros(3))
    with pytest.raises(TypeError, match="task"):
        Trainer(object(), steps=1)


def test_models_accept_a_dataset_and_a_dataloader(digits_small):
    from genfast.models import DDPM, NICE, VAE, BernoulliRBM, fit_flow

    x, y = digits_small
    ds = TensorDataset(x, y)
    info = VAE(latent_dim=2, hidden=(8,)).fit(ds, steps=3, batch_size=16)
    assert info["steps"] == 3
    info = VAE(latent_dim=2, hidden=(8,)).fit(DataLoader(ds, batch_size=16, shuffle=True), steps=3)
    assert info["steps"] == 3
    m = DDPM(image_size=8, base_channels=8, channel_mult=(1,), num_heads=1, num_train_timesteps=20, num_classes=10)
    info = m.fit(ds, steps=2, batch_size=16, progress=False)
    assert info["steps"] == 2 and len(info["losses"]) == 2
    assert fit_flow(NICE(num_layers=2, hidden=8), ds, num_bins=17, steps=2, batch_size=16)["steps"] == 2
    v = (x.reshape(len(x), -1) > 0).float()
    assert len(BernoulliRBM(64, 8).fit(TensorDataset(v), epochs=2, batch_size=16)) == 2


@pytest.fixture(scope="module")
def digits_small():
    from genfast.data import load_digits

    x, y = load_digits("train")
    return x[:48], y[:48]
