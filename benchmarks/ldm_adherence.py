"""Prompt adherence of genfast.models.LatentDiffusion on the digits (issue 17, item 5): trains a
model (fixed step counts, so machine load changes the time, not the figures), then measures with
the digit classifier and the caption attributes:

- asked digit: share of guided samples ("a <digit>") the classifier reads as that digit;
- asked attribute: share of "a thick/thin/slanted/upright <digit>" samples showing it ("upright"
  also with negative_prompt="slanted", the way the slides use a negative prompt);
- negative prompt: share of "a <digit>" samples that are slanted, without and with
  negative_prompt="slanted";
- Frechet digit distance of samples without guidance (the empty prompt; prompts naming the test
  split's digits) with floor and ceiling, in the resampled domain: the model learns the digits
  bilinearly upsampled to 32x32, and a 32x32 image scored at 8x8 is 4x4 average-pooled, which is
  not the inverse of the upsampling (the test digits themselves, upsampled and pooled, are at
  FDD 52.7 from the raw test digits, floor 5.8). So the reference sets (train for the floor, test
  for the distance) pass through the same upsampling and pooling, and the classifier is the
  standard one; the raw-domain figure is printed beside it;
- inpainting: the classifier's accuracy on test digits whose bottom half was regenerated from the
  top half (empty prompt: alone, with RePaint's resampling --jump-n-sample, with reconstruction
  guidance --reconstruction-guidance, with both; the digit's name as prompt).

Samples are 32x32 and scored at 8x8 (4x4 average pooling, the classifier's input). Prints a
Markdown table; with --write, replaces the "Latent diffusion" section of benchmarks/RESULTS.md.

Usage: python benchmarks/ldm_adherence.py [--ae-steps 800] [--steps 2800] [--guidance 4]
[--prompt-dropout 0.2] [--attribute-keep 0.7] [--jump-n-sample 5] [--reconstruction-guidance 30]
[--write]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genfast.data import load_digits
from genfast.data.captions import DIGIT_NAMES
from genfast.metrics import DigitMetric
from genfast.models import LatentDiffusion
from genfast.models._zoo_base import ZooModel


def to8(x):
    return F.avg_pool2d(x, 4)


def up32(x):
    return F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(-1, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ae-steps", type=int, default=800)
    ap.add_argument("--steps", type=int, default=2800)
    ap.add_argument("--guidance", type=float, default=4.0)
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--sampler", default="dpm++")
    ap.add_argument("--prompt-dropout", type=float, default=0.2, help="training: share of empty prompts")
    ap.add_argument("--attribute-keep", type=float, default=0.7, help="training: keep rate of attribute words")
    ap.add_argument("--jump-n-sample", type=int, default=5, help="inpainting: RePaint's resampling runs per step")
    ap.add_argument("--reconstruction-guidance", type=float, default=30.0, help="inpainting: its weight w_r")
    ap.add_argument("--model", default=None, help="reuse a saved model folder (skips training)")
    ap.add_argument("--save", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-ema", action="store_true", help="sample with the trained weights, not their EMA")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    x, y = load_digits("train")
    x32 = F.interpolate(x, size=32, mode="bilinear", align_corners=False).clamp(-1, 1)
    t0 = time.perf_counter()
    if args.model:
        model = ZooModel.load(args.model)
        train_s = float("nan")
    else:
        model = LatentDiffusion(base_channels=32, autoencoder_steps=args.ae_steps, prompt_dropout=args.prompt_dropout,
                                attribute_keep=args.attribute_keep)
        model.fit(x32, y, steps=args.steps, batch_size=64, seed=0, progress=True)
        train_s = time.perf_counter() - t0
        if args.save:
            model.save(args.save)
    metric = DigitMetric.from_data()
    (xtr, ytr), (xte, yte) = load_digits("train"), load_digits("test")
    resampled = DigitMetric(metric.classifier, (to8(up32(xtr)), ytr), (to8(up32(xte)), yte), seed=metric.seed)
    cap = model.captioner
    g, k = args.guidance, args.per_class
    ema = not args.no_ema
    rows = []

    def gen(prompt, neg=None, n=k, seed=0, w=g):
        return model.sample(n, prompt=prompt, negative_prompt=neg, guidance_scale=w, sampler=args.sampler, seed=seed,
                            use_ema=ema)

    # asked digit
    correct, total = 0, 0
    for d in range(10):
        s = gen(f"a {DIGIT_NAMES[d]}", seed=d)
        correct += int((metric.predict(to8(s)) == d).sum())
        total += s.shape[0]
    rows.append(("asked digit present (\"a <digit>\")", f"{correct / total:.3f}", ">= 0.90"))
    # asked attributes
    for word in ("thick", "thin", "slanted", "upright"):
        hit, tot, base = 0, 0, 0
        for d in range(10):
            lab = torch.full((k,), d)
            s = gen(f"a {word} {DIGIT_NAMES[d]}", seed=100 + d)
            hit += int(cap.has(s, lab, word).sum())
            b = gen(f"a {DIGIT_NAMES[d]}", seed=100 + d)
            base += int(cap.has(b, lab, word).sum())
            tot += k
        rows.append((f"asked attribute \"{word}\" (without the word)", f"{hit / tot:.3f} ({base / tot:.3f})",
                     ">= 0.70"))
    hit = 0
    for d in range(10):
        s = gen(f"a upright {DIGIT_NAMES[d]}", "slanted", seed=100 + d)
        hit += int(cap.has(s, torch.full((k,), d), "upright").sum())
    rows.append(("asked attribute \"upright\", negative prompt \"slanted\"", f"{hit / (10 * k):.3f}", ">= 0.70"))
    # negative prompt
    without, with_neg = 0, 0
    for d in range(10):
        lab = torch.full((k,), d)
        without += int(cap.has(gen(f"a {DIGIT_NAMES[d]}", seed=200 + d), lab, "slanted").sum())
        with_neg += int(cap.has(gen(f"a {DIGIT_NAMES[d]}", "slanted", seed=200 + d), lab, "slanted").sum())
    n = 10 * k
    rows.append(("slanted share: prompt only / with negative \"slanted\"", f"{without / n:.3f} / {with_neg / n:.3f}",
                 "cut at least by half"))
    # unguided FDD
    m = 500
    s = torch.cat([model.sample(100, prompt="", guidance_scale=1.0, sampler=args.sampler, seed=300 + i, use_ema=ema)
                   for i in range(m // 100)])
    fdd, raw = resampled.frechet_distance(to8(s)), metric.frechet_distance(to8(s))
    rows.append((f"Frechet digit distance, {m} unguided samples, empty prompt (resampled domain)",
                 f"{fdd:.2f} (floor {resampled.floor(m):.2f}, ceiling {resampled.ceiling(m):.1f}; raw-domain "
                 f"{raw:.1f}, floor {metric.floor(m):.2f})", "<= 2x floor"))
    # without guidance but with prompts: "a <digit>", the digits in the test split's proportions
    yt_all = load_digits("test")[1]
    digits = yt_all[torch.randperm(len(yt_all), generator=torch.Generator().manual_seed(0))][:m].tolist()
    digits += [d % 10 for d in range(m - len(digits))]
    s = torch.cat([model.sample(100, prompt=[f"a {DIGIT_NAMES[d]}" for d in digits[i:i + 100]], guidance_scale=1.0,
                                sampler=args.sampler, seed=400 + i, use_ema=ema) for i in range(0, m, 100)])
    fdd, raw = resampled.frechet_distance(to8(s)), metric.frechet_distance(to8(s))
    rows.append((f"Frechet digit distance, {m} samples, prompts \"a <digit>\" (test-split digit shares), "
                 "guidance 1 (resampled domain)", f"{fdd:.2f} (floor {resampled.floor(m):.2f}; raw-domain {raw:.1f})",
                 "<= 2x floor"))
    # inpainting: all the test digits
    xt, yt = load_digits("test")
    xt32 = up32(xt)
    mask = torch.ones(1, 1, 32, 32)
    mask[..., 16:, :] = 0
    r, w_r = args.jump_n_sample, args.reconstruction_guidance
    for label, prompt, jumps, rg in (
            ("empty prompt", None, 1, 0.0),
            (f"empty prompt, RePaint resampling {r}x", None, r, 0.0),
            (f"empty prompt, reconstruction guidance {w_r:g}", None, 1, w_r),
            (f"empty prompt, reconstruction guidance {w_r:g} + resampling {r}x", None, r, w_r),
            ("prompt \"a <digit>\"", [f"a {DIGIT_NAMES[int(v)]}" for v in yt], 1, 0.0)):
        out = model.inpaint(xt32, mask, prompt, guidance_scale=1.0 if prompt is None else g, seed=7, use_ema=ema,
                            jump_n_sample=jumps, reconstruction_guidance=rg)
        acc = float((metric.predict(to8(out)) == yt).float().mean())
        rows.append((f"inpainting accuracy, bottom half of the {len(yt)} test digits regenerated, ddim 50 steps "
                     f"({label})", f"{acc:.3f}", ">= 0.85"))
    total_s = time.perf_counter() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    head = (f"Latent diffusion adherence (benchmarks/ldm_adherence.py; UNet base 32, autoencoder {args.ae_steps} "
            f"steps + diffusion {args.steps - args.ae_steps} steps, batch 64, prompt dropout "
            f"{model.config['prompt_dropout']}, attribute keep {model.config['attribute_keep']}, "
            f"{args.sampler} 25 steps, guidance {g}, "
            f"{k} samples per digit and prompt; {'EMA' if ema else 'trained (not EMA)'} weights; "
            f"training {train_s:.0f} s, total {total_s:.0f} s at {args.threads} "
            f"thread(s) on the 2-core CPU, commit {commit})")
    table = "| measure | value | target |\n|---|---|---|\n" + "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    print(head)
    print(table)
    if args.write:
        p = Path(__file__).with_name("RESULTS.md")
        text = p.read_text()
        section = f"## Latent diffusion\n\n{head}\n\n{table}\n"
        if "## Latent diffusion\n" in text:
            a = text.index("## Latent diffusion\n")
            b = text.find("\n## ", a + 1)
            text = text[:a] + section + (text[b:] if b >= 0 else "")
        else:
            text = text.rstrip() + "\n\n" + section
        p.write_text(text)


if __name__ == "__main__":
    main()
