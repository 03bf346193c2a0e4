"""Anomaly detection (genfast.anomaly, genfast detect, genfast anomaly-table) on tiny budgets."""

import pytest
import torch

from genfast.anomaly import (
    CORRUPTIONS,
    anomaly_score,
    anomaly_table,
    corrupt,
    detection_metrics,
    format_anomaly_table,
    one_class_out,
    score_ddpm,
    score_flow,
    score_gan,
    score_rbm,
    score_vae,
    train_family,
)
from genfast.cli import main
from genfast.data import load_digits


@pytest.fixture(scope="module")
def data():
    return load_digits("train"), load_digits("test")


@pytest.fixture(scope="module")
def flow(data):
    torch.manual_seed(0)
    return train_family("maf", data[0][0], steps=300)


@pytest.fixture(scope="module")
def vae(data):
    return train_family("vae", data[0][0], steps=600)


def _auroc(model, clean, kind):
    bad = corrupt(clean, kind, seed=1)
    s = torch.cat([anomaly_score(model, clean), anomaly_score(model, bad)])
    lab = torch.cat([torch.zeros(len(clean)), torch.ones(len(bad))])
    return detection_metrics(s, lab)["auroc"]


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_flow_detects_corrupted_digits(flow, data, kind):
    # a trained flow's NLL ranks corrupted digits above clean ones (an untrained one does not:
    # see test_untrained_flow_is_no_detector)
    assert _auroc(flow, data[1][0], kind) > 0.9


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_vae_detects_corrupted_digits(vae, data, kind):
    assert _auroc(vae, data[1][0], kind) > 0.9


def test_flow_trained_on_inverted_digits_flags_clean_ones(data):
    # the control: the score follows the training data, not a property of the images
    torch.manual_seed(0)
    model = train_family("maf", -data[0][0], steps=150)
    assert _auroc(model, data[1][0], "inversion") < 0.1


def test_scores_are_repeatable_and_shaped(flow, vae, data):
    x = data[1][0][:20]
    for fn, m in ((score_flow, flow), (score_vae, vae)):
        a, b = fn(m, x), fn(m, x)
        assert a.shape == (20,) and a.dtype == torch.float32
        assert torch.equal(a, b)


def test_one_class_out_cell(data):
    r = one_class_out("ae", 0, *data, steps=200)
    assert 0.0 <= r["auroc"] <= 1.0 and 0.0 <= r["auprc"] <= 1.0
    assert r["positives"] == int((data[1][1] == 0).sum())


def test_rbm_free_energy_separates_inverted(data):
    rbm = train_family("rbm", data[0][0], steps=5)
    assert _auroc(rbm, data[1][0], "inversion") > 0.9
    assert score_rbm(rbm, data[1][0][:3]).shape == (3,)


def test_ddpm_score_is_fixed_noise(data):
    model = train_family("ddpm", data[0][0], steps=3)
    x = data[1][0][:4]
    a = score_ddpm(model, x, timesteps=[10, 500])
    assert a.shape == (4,) and torch.equal(a, score_ddpm(model, x, timesteps=[10, 500]))
    with pytest.raises(ValueError, match="timesteps"):
        score_ddpm(model, x, timesteps=[5000])


def test_gan_score(data):
    model = train_family("dcgan", data[0][0], steps=3)
    assert score_gan(model, data[1][0][:5]).shape == (5,)


def test_detection_metrics_known_values():
    m = detection_metrics(torch.tensor([0.1, 0.2, 0.9, 0.8]), torch.tensor([0, 0, 1, 1]))
    assert m["auroc"] == 1.0 and m["auprc"] == 1.0
    m = detection_metrics([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])
    assert m["auroc"] == 0.0


def test_corruptions():
    x = load_digits("test")[0][:8]
    assert torch.equal(corrupt(x, "inversion"), -x)
    occ = corrupt(x, "occlusion", seed=3)
    assert ((occ == 1).flatten(1).sum(1) >= 16).all()
    noisy = corrupt(x, "noise", seed=3)
    assert noisy.min() >= -1 and noisy.max() <= 1 and not torch.equal(noisy, x)
    assert torch.equal(noisy, corrupt(x, "noise", seed=3))


def test_bad_inputs(vae):
    with pytest.raises(ValueError, match="kind"):
        corrupt(torch.zeros(2, 1, 8, 8), "blur")
    with pytest.raises(ValueError, match="patch"):
        corrupt(torch.zeros(2, 1, 8, 8), "occlusion", patch=9)
    with pytest.raises(TypeError, match="images"):
        score_vae(vae, torch.zeros(2, 1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="images"):
        score_vae(vae, torch.full((2, 1, 8, 8), float("nan")))
    with pytest.raises(TypeError, match="model"):
        score_flow(vae, torch.zeros(2, 1, 8, 8))
    with pytest.raises(TypeError, match="no anomaly score"):
        anomaly_score(torch.nn.Linear(2, 2), torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="is_anomaly"):
        detection_metrics([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="scores"):
        detection_metrics([1.0, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="family"):
        train_family("pixelcnn", torch.zeros(4, 1, 8, 8))
    with pytest.raises(ValueError, match="families"):
        anomaly_table(["pixelcnn"])
    with pytest.raises(ValueError, match="held_out"):
        one_class_out("ae", 10, *(load_digits("train"), load_digits("test")))


def test_anomaly_table_tiny():
    rows = anomaly_table(["ae"], classes=[0, 1], steps={"ae": 20}, corruptions=("inversion",))
    assert rows[0]["family"] == "ae" and set(rows[0]["auroc"]) == {0, 1}
    md = format_anomaly_table(rows)
    assert "| ae | 20 |" in md and "inversion AUROC" in md


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENFAST_CACHE", str(tmp_path / "cache"))


def test_cli_detect(vae, tmp_path, capsys, cache):
    ck = tmp_path / "vae"
    vae.save(ck)
    csv = tmp_path / "scores.csv"
    rc = main(["detect", "vae", "--checkpoint", str(ck), "--positive-class", "3", "--corrupt", "inversion",
               "--out", str(csv), "--no-progress"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "class 3 vs rest: AUROC" in out and "inversion vs clean: AUROC" in out
    assert len(csv.read_text().splitlines()) == 1 + 2 * 360
    # another family's checkpoint is an error naming it, exit status 2
    assert main(["detect", "realnvp", "--checkpoint", str(ck), "--no-progress"]) == 2


def test_cli_anomaly_table(tmp_path, capsys, cache):
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\n## Other\n\nkeep me\n")
    rc = main(["anomaly-table", "--families", "ae", "--classes", "0,1", "--steps-scale", "0.02", "--out", str(md),
               "--no-progress"])
    assert rc == 0
    text = md.read_text()
    assert "keep me" in text and "## Anomaly detection (genfast anomaly-table)" in text
    assert main(["anomaly-table", "--families", "nope", "--no-progress"]) == 2


@pytest.mark.parametrize("family, train_args", [
    ("rbm", ["--epochs", "1", "--hidden", "16"]),
    ("nice", ["--steps", "3", "--layers", "2", "--hidden", "16"]),
    ("ddpm", ["--steps", "2", "--batch-size", "16", "--base-channels", "8"]),
])
def test_cli_detect_loads_every_checkpoint_kind(family, train_args, tmp_path, capsys, cache):
    out = tmp_path / family
    assert main(["train", family, *train_args, "--out", str(out), "--no-progress"]) == 0
    assert main(["detect", family, "--checkpoint", str(out), "--positive-class", "0", "--no-progress"]) == 0
    assert "class 0 vs rest: AUROC" in capsys.readouterr().out
