"""Functions run in processes spawned by the training tests (torch.multiprocessing, gloo on the
CPU): each initialises a process group of ``world`` ranks, trains or samples, and rank 0 writes
its result to a JSON or NumPy file for the test to compare."""

from __future__ import annotations

import json
import os

import torch


def _init(rank: int, world: int, init_file: str) -> None:
    import genfast.training.distributed  # noqa: F401  (imports torch.distributed.nn before the group exists)

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)


def _weights(model) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def tiny_runs(steps: int = 4, batch: int = 8) -> dict:
    """Train a tiny DDPM, DCGAN and Bernoulli RBM; returns each one's per-step losses and a
    checksum of its final weights. Run the same way in one process or under a process group."""
    from genfast.data import load_digits
    from genfast.models import DCGAN, DDPM, BernoulliRBM

    x, y = load_digits("train")
    x, y = x[:64], y[:64]
    out = {}
    torch.manual_seed(0)
    ddpm = DDPM(image_size=8, base_channels=8, channel_mult=(1,), num_res_blocks=1, num_heads=1,
                num_train_timesteps=50)
    info = ddpm.fit(x, steps=steps, batch_size=batch, warmup_steps=2, progress=False)
    out["ddpm"] = {"losses": info["losses"], "weights": _weights(ddpm)}
    torch.manual_seed(0)
    gan = DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8), dropout=0.0)
    hist = []
    gan.fit(x, steps=steps, batch_size=batch, callback=lambda s, o: hist.append([o["d_loss"], o["g_loss"]]))
    out["dcgan"] = {"losses": hist, "weights": _weights(gan)}
    v = (x.reshape(64, -1) > 0).float()
    rbm = BernoulliRBM(64, 16, seed=3)
    errs = rbm.fit(v, epochs=2, batch_size=batch * 2, lr=0.1, k=2)
    out["rbm"] = {"losses": errs, "weights": float(rbm.weight.double().sum())}
    rbm_p = BernoulliRBM(64, 16, seed=4)
    errs = rbm_p.fit(v, epochs=1, batch_size=batch * 2, lr=0.1, k=1, persistent=True)
    out["rbm_pcd"] = {"losses": errs, "weights": float(rbm_p.weight.double().sum())}
    return out


def ddp_train(rank: int, world: int, init_file: str, result: str) -> None:
    """:func:`tiny_runs` under a gloo group; rank 0 writes the JSON ``result``."""
    _init(rank, world, init_file)
    try:
        out = tiny_runs()
        if rank == 0:
            with open(result, "w") as f:
                json.dump(out, f)
        torch.distributed.barrier()  # no rank tears gloo down while another still uses it
    finally:
        torch.distributed.destroy_process_group()


def sample_alone(out_dir: str, n: int) -> None:
    """Sharded sampling of a tiny DCGAN (built from seed 0) into ``out_dir`` by this process's ranks."""
    from genfast.models import DCGAN
    from genfast.training.sampling import family_sampler, sample_sharded

    torch.manual_seed(0)
    gan = DCGAN(latent_dim=4, g_channels=(8, 8, 8), d_channels=(8, 8), dropout=0.0).eval()
    sample_sharded(family_sampler(gan), n, out_dir, seed=5, chunk_size=3)


def ddp_sample(rank: int, world: int, init_file: str, out_dir: str, n: int) -> None:
    """:func:`sample_alone` under a gloo group of ``world`` ranks."""
    _init(rank, world, init_file)
    try:
        sample_alone(out_dir, n)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


def gloo_threads_after_destroy(rank: int, world: int, init_file: str, result: str) -> None:
    """Init the group as the tests do, build an optimiser (which imports torch._dynamo), run a
    collective, destroy the group; rank 0 writes the names of this process's threads that are
    still gloo's (``/proc/self/task/*/comm``) to the JSON ``result``."""
    _init(rank, world, init_file)
    try:
        torch.optim.Adam(torch.nn.Linear(2, 2).parameters())
        t = torch.ones(3)
        torch.distributed.all_reduce(t)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
    if rank == 0:
        names = []
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        with open(result, "w") as f:
            json.dump([n for n in names if "gloo" in n], f)


def spawn(fn, world: int, *args) -> None:
    """Run ``fn(rank, world, init_file, *args)`` in ``world`` spawned processes."""
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        init = os.path.join(d, "init")
        mp.spawn(fn, args=(world, init, *args), nprocs=world, join=True)


def cli_torchrun(rank: int, world: int, init_file: str, port: int, argv_list: list) -> None:
    """``genfast`` commands as torchrun would start them: RANK, WORLD_SIZE, MASTER_ADDR/PORT set,
    the process group joined by the command itself (env://). Every command must return 0."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from genfast.cli import main

    try:
        for argv in argv_list:
            rc = main(argv)
            if rc != 0:
                raise SystemExit(f"rank {rank}: genfast {' '.join(argv)} returned {rc}")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
