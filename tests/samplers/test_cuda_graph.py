"""On a GPU: a 20-step loop of every genfast scheduler runs with torch.cuda.set_sync_debug_mode
("error") (no host synchronisation at all once set_timesteps has run), and is captured in one CUDA
graph whose replay equals the eager loop (deterministic schedulers) or stays finite (stochastic
ones, whose in-kernel noise is re-seeded on every replay). Skipped without CUDA."""

import pytest
import torch

import genfast.samplers as S

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DETERMINISTIC = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "EulerDiscreteScheduler",
                 "FlowMatchEulerDiscreteScheduler", "DDIMScheduler")
STOCHASTIC = ("EulerAncestralDiscreteScheduler", "LCMScheduler", "DDPMScheduler")


def _loop(sched, x, guidance):
    for t in sched.timesteps:
        xi = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        out = 0.3 * xi * torch.cos(t.float() / 300) + 0.1 * torch.sin(xi)
        x = sched.step(out, t, x, model_output_uncond=out * 0.5, guidance_scale=guidance).prev_sample
    return x


@pytest.mark.parametrize("name", DETERMINISTIC + STOCHASTIC)
def test_loop_without_sync_and_in_a_cuda_graph(name):
    x0 = torch.randn(2, 4, 16, 16, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    eager_s = getattr(S, name)()
    eager_s.set_timesteps(20, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        eager = _loop(eager_s, x0, 3.0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()

    graph_s = getattr(S, name)()
    graph_s.set_timesteps(20, device="cuda")
    static_x = x0.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (allocator, kernels) off the capture
        _loop(graph_s, static_x, 3.0)
    torch.cuda.current_stream().wait_stream(side)
    graph_s.set_timesteps(20, device="cuda")
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        static_out = _loop(graph_s, static_x, 3.0)
    static_x.copy_(x0)
    g.replay()
    torch.cuda.synchronize()
    assert torch.isfinite(static_out).all()
    if name in DETERMINISTIC:
        torch.testing.assert_close(static_out, eager, rtol=1e-5, atol=1e-5)
