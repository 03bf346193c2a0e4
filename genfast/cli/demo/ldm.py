"""Demo stage ``ldm``: latent diffusion with text prompts on the digits at 16x16, and how well the
samples follow their prompts (issue 17, item 5).

A :class:`genfast.models.LatentDiffusion` (KL autoencoder to a 4 x 4 x 4 latent, a UNet with
cross-attention to the prompt encoder) trains a fixed number of steps on captioned digits; then
the digit classifier reads its samples: the share of "a <digit>" samples showing that digit, the
share of slanted samples without and with the negative prompt "slanted", the Frechet digit
distance of samples without guidance (prompted with the test split's digits, and with the empty
prompt), and the accuracy on test digits whose bottom half was regenerated from the top half
(with the digit's name as prompt, and from the top half alone: the empty prompt, with
reconstruction guidance and RePaint's resampling). Samples are scored at 8x8 (2x2 average
pooling, the classifier's input). The distance is taken in the resampled domain: pooling is not
the inverse of the bilinear upsampling the model learned from, so the reference digits pass
through the same upsampling and pooling (with the standard classifier).
``benchmarks/ldm_adherence.py`` is the long version.
"""

from __future__ import annotations

import time

NAME = "ldm"
FAMILY = "ldm"
ORDER = 50
# 100 s of training and 11 s of sampling and scoring in make demo on the idle 2-core CPU machine
BUDGET_S = 135.0
# fixed step counts, so that the figures do not depend on the machine's load (a busy machine
# takes longer, it does not train less)
AUTOENCODER_STEPS = 400
STEPS = 1600
GUIDANCE = 4.0
# inpainting with the empty prompt: RePaint's resampling (jump_n_sample) and Ho et al.'s
# reconstruction guidance weight (on the 32x32 model, RESULTS.md "Latent diffusion": both together
# beat either alone)
RESAMPLING = 5
RECONSTRUCTION_GUIDANCE = 30.0
FIGURES = {
    "asked digit shown": "share of samples prompted 'a <digit>' that the digit classifier reads as that digit",
    "slanted share": "share of samples the captioner calls slanted, without and with the negative prompt",
    "resampled": "FDD of 16x16 samples pooled to 8x8, against test digits upsampled and pooled the same way "
                 "(its own floor and ceiling in the row)",
    "inpainting": "classifier accuracy on test digits whose bottom half the model regenerated",
}


def run(ctx) -> list[dict]:
    """Trains the latent diffusion model, writes a grid of prompted samples and reports the
    adherence figures (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    from genfast.data.captions import DIGIT_NAMES
    from genfast.data.images import save_image_grid
    from genfast.models import LatentDiffusion

    t0 = time.perf_counter()
    x, y = ctx.data.train
    x16 = F.interpolate(x, size=16, mode="bilinear", align_corners=False).clamp(-1, 1)
    ae_steps, steps = (2, 6) if ctx.quick else (AUTOENCODER_STEPS, STEPS)
    model = LatentDiffusion(image_shape=(1, 16, 16), base_channels=16 if ctx.quick else 32,
                            autoencoder_steps=ae_steps, seed=ctx.seed).to(ctx.device)
    model.fit(x16, y, steps=steps, batch_size=64, seed=ctx.seed, progress=ctx.show_progress)
    t_train = time.perf_counter() - t0
    ctx.log(f"trained the autoencoder {ae_steps} steps and the denoiser {steps - ae_steps} steps in {t_train:.1f} s")
    rows = [{"what": f"latent diffusion 16x16, {ae_steps} + {steps - ae_steps} steps", "figure": "",
             "time_s": t_train}]

    def to8(s):
        return F.avg_pool2d(s.cpu(), 2)

    metric, cap = ctx.metric, model.captioner
    k = 2 if ctx.quick else 10
    n_steps = 5 if ctx.quick else 25

    def gen(prompt, n=k, seed=0, w=GUIDANCE, neg=None):
        return model.sample(n, prompt=prompt, negative_prompt=neg, guidance_scale=w, sampler="dpm++",
                            num_inference_steps=n_steps, seed=seed)

    t1 = time.perf_counter()
    grid, hit = [], 0
    for d in range(10):
        s = gen(f"a {DIGIT_NAMES[d]}", seed=d)
        grid.append(s[:8].cpu())
        hit += int((metric.predict(to8(s)) == d).sum())
    path = save_image_grid(torch.cat(grid), ctx.out_dir / "ldm_samples.png", nrow=min(8, k))
    ctx.log(f"prompted samples (rows: 'a zero' ... 'a nine'): {path}")
    share = hit / (10 * k)
    rows.append({"what": f"asked digit shown, 'a <digit>' x {k}, guidance {GUIDANCE:g}",
                 "figure": f"{100 * share:.0f}% (target >= 90%)", "time_s": time.perf_counter() - t1,
                 "ok": share >= 0.9})

    t2 = time.perf_counter()
    without = with_neg = 0
    for d in range(10):
        lab = torch.full((k,), d)
        without += int(cap.has(gen(f"a {DIGIT_NAMES[d]}", seed=200 + d).cpu(), lab, "slanted").sum())
        with_neg += int(cap.has(gen(f"a {DIGIT_NAMES[d]}", seed=200 + d, neg="slanted").cpu(), lab,
                                "slanted").sum())
    a, b = without / (10 * k), with_neg / (10 * k)
    rows.append({"what": "slanted share: 'a <digit>' / with negative prompt 'slanted'",
                 "figure": f"{100 * a:.0f}% -> {100 * b:.0f}% (target: at least halved)",
                 "time_s": time.perf_counter() - t2, "ok": b <= a / 2 if a > 0 else None})

    t3 = time.perf_counter()
    from genfast.metrics import DigitMetric

    xt, yt = ctx.data.test

    def round_trip(images):
        return to8(F.interpolate(images, size=16, mode="bilinear", align_corners=False).clamp(-1, 1))

    resampled = DigitMetric(metric.classifier, (round_trip(x), y), (round_trip(xt), yt), seed=ctx.seed)
    m = 20 if ctx.quick else 200
    prompts = [f"a {DIGIT_NAMES[int(d)]}" for d in yt[:m]]
    s = model.sample(m, prompt=prompts, guidance_scale=1.0, sampler="dpm++", num_inference_steps=n_steps,
                     seed=300)
    fdd = resampled.frechet_distance(to8(s))
    floor = resampled.floor(m)
    rows.append({"what": f"Frechet digit distance, {m} samples prompted 'a <digit>', no guidance",
                 "figure": f"{fdd:.1f} (floor {floor:.1f}, ceiling {resampled.ceiling(m):.0f}, resampled; "
                           "target <= 2x floor)",
                 "time_s": time.perf_counter() - t3, "ok": fdd <= 2 * floor})
    t3b = time.perf_counter()
    s = model.sample(m, prompt="", guidance_scale=1.0, sampler="dpm++", num_inference_steps=n_steps, seed=301)
    fdd = resampled.frechet_distance(to8(s))
    rows.append({"what": f"Frechet digit distance, {m} samples, empty prompt, no guidance",
                 "figure": f"{fdd:.1f} (floor {floor:.1f}, resampled; target <= 2x floor)",
                 "time_s": time.perf_counter() - t3b, "ok": fdd <= 2 * floor})

    t4 = time.perf_counter()
    xt16 = F.interpolate(xt[:m], size=16, mode="bilinear", align_corners=False).clamp(-1, 1).to(ctx.device)
    mask = torch.ones(1, 1, 16, 16, device=ctx.device)
    mask[..., 8:, :] = 0
    out = model.inpaint(xt16, mask, prompts, guidance_scale=GUIDANCE, num_inference_steps=n_steps, seed=7)
    acc = float((metric.predict(to8(out)) == yt[:m]).float().mean())
    rows.append({"what": f"inpainting: bottom half of {m} test digits regenerated, prompt 'a <digit>'",
                 "figure": f"classifier accuracy {100 * acc:.0f}% (target >= 85%)",
                 "time_s": time.perf_counter() - t4, "ok": acc >= 0.85})

    # from the top half alone (the empty prompt), with reconstruction guidance and resampling
    t5 = time.perf_counter()
    out = model.inpaint(xt16, mask, None, guidance_scale=1.0, sampler="ddim", num_inference_steps=n_steps, seed=7,
                        jump_n_sample=RESAMPLING, reconstruction_guidance=RECONSTRUCTION_GUIDANCE)
    acc = float((metric.predict(to8(out)) == yt[:m]).float().mean())
    rows.append({"what": f"inpainting as above, empty prompt, reconstruction guidance {RECONSTRUCTION_GUIDANCE:g}, "
                         f"resampling {RESAMPLING}x",
                 "figure": f"classifier accuracy {100 * acc:.0f}% (target >= 85%)",
                 "time_s": time.perf_counter() - t5, "ok": acc >= 0.85})
    return rows
