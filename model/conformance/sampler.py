"""Replays the schedule, DDIM and long-video sampler fixtures of the original against our sampler.

The fixtures ran the original `ddim_sample_loop`s on a closed-form toy denoiser (`ToyVelocityModel`,
built from the fixture's `toy_constants`), so every recorded tensor can be recomputed here exactly.
Where the original misbehaves (t = 999 NaN, short clips in window mode) the check asserts our
documented behaviour instead of the original's output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from model.conformance import CheckResult
from model.sampler import (
    classifier_free_guidance,
    ddim_sample,
    ddim_step,
    ddim_steps,
    noise_prior,
)
from model.schedule import NoiseSchedule, ddim_timesteps, linear_sd_betas
from model.window import (
    batch_windows,
    coverage_counts,
    plan_windows,
    window_ddim_sample,
    window_velocity,
)

CONDITION_KEYS = ("y", "local_image", "image", "dwpose", "randomref")


class ToyVelocityModel:
    """v = a tanh(x) + S (b sin(pi t/1000) + c (P[f] - P_ref) + d R0) + (1 - S) e cos(pi t/1000).

    S is 1 for a row that has conditions and 0 for an unconditional row; P[f] is the mean of pose
    frame f + 1 (frame 0 is the reference pose, P_ref) and R0 the first frame of `randomref`.
    Every call is logged as (first t, "cond" | "uncond" | "batched") to check the call order.
    """

    def __init__(self, a: float, b: float, c: float, d: float, e: float) -> None:
        self.a, self.b, self.c, self.d, self.e = a, b, c, d, e
        self.calls: list[tuple[int, str]] = []

    def __call__(
        self, x: torch.Tensor, t: torch.Tensor, unconditional: torch.Tensor | None = None, **conditions
    ) -> torch.Tensor:
        unknown = set(conditions) - set(CONDITION_KEYS)
        if unknown:
            raise TypeError(f"unexpected model inputs {sorted(unknown)}")
        has_conditions = any(value is not None for value in conditions.values())
        rows = torch.full((x.shape[0],), float(has_conditions), dtype=x.dtype, device=x.device)
        if unconditional is not None:
            rows = rows * (~unconditional).to(x.dtype)
        kind = "batched" if unconditional is not None else ("cond" if has_conditions else "uncond")
        self.calls.append((int(t[0]), kind))

        s = rows.view(-1, 1, 1, 1, 1)
        t = t.to(x.dtype).view(-1, 1, 1, 1, 1)
        conditional = self.b * torch.sin(math.pi * t / 1000)
        dwpose, randomref = conditions.get("dwpose"), conditions.get("randomref")
        if dwpose is not None:
            pose_means = dwpose.mean(dim=(1, 3, 4))  # [B, F + 1]
            shift = pose_means[:, 1:] - pose_means[:, :1]
            conditional = conditional + self.c * shift.view(shift.shape[0], 1, -1, 1, 1)
        if randomref is not None:
            conditional = conditional + self.d * randomref[:, :, 0:1]
        return self.a * torch.tanh(x) + s * conditional + (1 - s) * self.e * torch.cos(math.pi * t / 1000)

    @classmethod
    def from_config(cls, config: dict) -> ToyVelocityModel:
        k = config["toy_constants"]
        return cls(k["a"], k["b"], k["c"], k["d"], k["e"])


@dataclass
class Comparisons:
    """Collects tensor/value comparisons: the worst absolute error and what failed."""

    worst: float = 0.0
    failures: list[str] = field(default_factory=list)
    count: int = 0

    def close(self, name: str, actual: torch.Tensor, expected: torch.Tensor, tol: dict) -> None:
        self.count += 1
        if actual.shape != expected.shape:
            self.failures.append(f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}")
            return
        actual, expected = actual.to(torch.float64), expected.to(torch.float64)
        if not torch.isfinite(actual).all():
            self.worst = math.inf
            self.failures.append(f"{name}: non-finite values")
            return
        error = (actual - expected).abs()
        self.worst = max(self.worst, float(error.max()) if error.numel() else 0.0)
        if not bool((error <= tol["atol"] + tol["rtol"] * expected.abs()).all()):
            self.failures.append(f"{name}: max abs error {float(error.max()):.3g}")

    def equal(self, name: str, actual: object, expected: object) -> None:
        self.count += 1
        if actual != expected:
            self.failures.append(f"{name}: {_short(actual)} != {_short(expected)}")

    def true(self, name: str, condition: bool) -> None:
        self.count += 1
        if not condition:
            self.failures.append(name)

    def result(self, path: Path, kind: str) -> CheckResult:
        detail = f"{self.count} checks" if not self.failures else "; ".join(self.failures[:6])
        return CheckResult(str(path), kind, self.worst, not self.failures, detail)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def schedule_from_config(diffusion: dict) -> NoiseSchedule:
    if diffusion["schedule"] != "linear_sd":
        raise ValueError(f"unsupported schedule {diffusion['schedule']!r}")
    params = diffusion["schedule_param"]
    return NoiseSchedule.linear_sd(
        params["num_timesteps"], params["init_beta"], params["last_beta"], params["zero_terminal_snr"]
    )


def _conditions(inputs: dict, dtype: torch.dtype, num_frames: int | None = None) -> tuple[dict, dict]:
    """The fixture's conditional kwargs (optionally cut to the first frames) and the all-None ones."""
    cond = {key: inputs[key].to(dtype) for key in ("image", "randomref", "dwpose")}
    if num_frames is not None:
        cond["randomref"] = cond["randomref"][:, :, :num_frames]
        cond["dwpose"] = cond["dwpose"][:, :, : num_frames + 1]
    return cond, dict.fromkeys(cond)


# --------------------------------------------------------------------------- schedule.pt


def check_schedule(path: Path, data: dict) -> CheckResult:
    config, out, tol = data["config"], data["outputs"], data["tolerance"]
    schedule = NoiseSchedule.linear_sd(
        config["num_timesteps"], config["init_beta"], config["last_beta"], config["zero_terminal_snr"]
    )
    report = Comparisons()
    report.close("betas", schedule.betas, out["betas"], tol)
    report.close("alphas_cumprod", schedule.alphas_cumprod, out["alphas_cumprod"], tol)
    report.close("sqrt_alphas_cumprod", schedule.sqrt_alphas_cumprod, out["sqrt_alphas_cumprod"], tol)
    report.close(
        "sqrt_one_minus_alphas_cumprod",
        schedule.sqrt_one_minus_alphas_cumprod,
        out["sqrt_one_minus_alphas_cumprod"],
        tol,
    )
    before = linear_sd_betas(config["num_timesteps"], config["init_beta"], config["last_beta"])
    report.close("betas_before_zero_terminal_snr", before, out["betas_before_zero_terminal_snr"], tol)
    report.true("alphas_cumprod[-1] == 0 exactly", float(schedule.alphas_cumprod[-1]) == 0.0)

    for num_steps, count in config["ddim_step_counts"].items():
        pairs = ddim_timesteps(int(num_steps))
        report.equal(f"step count {num_steps}", len(pairs), count)
        report.equal(
            f"ddim_timesteps_{num_steps}", [t for t, _ in pairs], out[f"ddim_timesteps_{num_steps}"].tolist()
        )
        report.equal(
            f"ddim_prev_timesteps_{num_steps}",
            [p for _, p in pairs],
            out[f"ddim_prev_timesteps_{num_steps}"].tolist(),
        )
    report.equal(
        "ddim_timesteps_30 (config)", [t for t, _ in ddim_timesteps(30)], config["ddim_timesteps_30"]
    )
    _check_t999(report, schedule, config["ddim_timesteps_values_that_visit_t999"])
    return report.result(path, "schedule")


def _check_t999(report: Comparisons, schedule: NoiseSchedule, counts_visiting_t999: Sequence[int]) -> None:
    """The same step counts reach t = 999, and there our steps stay finite where the original gave NaN."""
    last = schedule.num_timesteps - 1
    ours = [n for n in range(1, schedule.num_timesteps + 1) if ddim_timesteps(n)[0][0] == last]
    report.equal("step counts that visit t=999", ours, list(counts_visiting_t999))

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 4, 4, generator=generator, dtype=torch.float64)
    v = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    for n in counts_visiting_t999:
        t, t_prev = ddim_timesteps(n)[0]
        x_prev, x0 = ddim_step(schedule, x, v, t, t_prev)
        report.true(
            f"finite first step for {n} steps",
            bool(torch.isfinite(x_prev).all() and torch.isfinite(x0).all()),
        )

    # Whole runs for the affected counts up to 50 (27, 36, 37 are inside the advertised range).
    model = ToyVelocityModel(0.5, 0.3, 0.4, 0.2, 0.1)
    cond = {"dwpose": torch.rand(1, 3, 4, 4, 4, generator=generator, dtype=torch.float64)}
    for n in (n for n in counts_visiting_t999 if n <= 50):
        sample = ddim_sample(
            model,
            x,
            schedule,
            num_steps=n,
            guidance_scale=2.5,
            cond_kwargs=cond,
            uncond_kwargs={"dwpose": None},
        )
        report.true(f"finite sample for {n} steps", bool(torch.isfinite(sample).all()))


# --------------------------------------------------------------------------- ddim_toy.pt


def check_ddim(path: Path, data: dict) -> CheckResult:
    config, inputs, out, tol = data["config"], data["inputs"], data["outputs"], data["tolerance"]
    schedule = schedule_from_config(config["diffusion"])
    num_steps, scale = config["ddim_timesteps"], config["guide_scale"]
    report = Comparisons()

    pairs = ddim_timesteps(num_steps)
    report.equal("timesteps", [t for t, _ in pairs], out["timesteps"].tolist())
    report.equal("prev_timesteps", [p for _, p in pairs], out["prev_timesteps"].tolist())

    model = ToyVelocityModel.from_config(config)
    cond, uncond = _conditions(inputs, torch.float64)
    velocity = classifier_free_guidance(model, guidance_scale=scale, cond_kwargs=cond, uncond_kwargs=uncond)
    steps = list(ddim_steps(velocity, inputs["noise"], schedule, num_steps=num_steps))
    report.close("trajectory", torch.stack([s.x_prev for s in steps]), out["trajectory"], tol)
    report.close("x0_pred", torch.stack([s.x0 for s in steps]), out["x0_pred"], tol)
    report.equal("model_call_t", [t for t, _ in model.calls], out["model_call_t"].tolist())
    report.equal(
        "model_call_cond", [kind == "cond" for _, kind in model.calls], out["model_call_cond"].tolist()
    )

    for batched in (False, True):
        sample = ddim_sample(
            model,
            inputs["noise"],
            schedule,
            num_steps=num_steps,
            guidance_scale=scale,
            cond_kwargs=cond,
            uncond_kwargs=uncond,
            batch_cond_uncond=batched,
        )
        report.close(f"x_final (batch_cond_uncond={batched})", sample, out["x_final"], tol)

    cond32, uncond32 = _conditions(inputs, torch.float32)
    velocity32 = classifier_free_guidance(
        model, guidance_scale=scale, cond_kwargs=cond32, uncond_kwargs=uncond32
    )
    steps32 = list(ddim_steps(velocity32, inputs["noise"].float(), schedule, num_steps=num_steps))
    tol32 = config["float32_tolerance"]
    report.close(
        "trajectory_float32", torch.stack([s.x_prev for s in steps32]), out["trajectory_float32"], tol32
    )
    report.close("x_final_float32", steps32[-1].x_prev, out["x_final_float32"], tol32)
    _check_noise_prior(report, schedule, config, inputs, out, tol)
    return report.result(path, "ddim")


def _check_noise_prior(
    report: Comparisons, schedule: NoiseSchedule, config: dict, inputs: dict, out: dict, tol: dict
) -> None:
    prior = config["noise_prior"]
    for order in ("long", "short"):
        entrance = prior[f"{order}_entrance"]
        t, strength = entrance["noise_prior_value"], entrance["noise_strength"]
        report.close(
            f"prior_{order} sqrt(alpha_bar)",
            schedule.sqrt_alphas_cumprod[t],
            out[f"prior_{order}_sqrt_alphas_cumprod_t"],
            tol,
        )
        report.close(
            f"prior_{order} sqrt(1-alpha_bar)",
            schedule.sqrt_one_minus_alphas_cumprod[t],
            out[f"prior_{order}_sqrt_one_minus_alphas_cumprod_t"],
            tol,
        )
        for dtype, tolerance in ((torch.float32, config["prior_float32_tolerance"]), (torch.float64, tol)):
            name = f"prior_{order}_{str(dtype).removeprefix('torch.')}"
            # The reference latent may be given once or repeated over the frames: same result.
            for ref_key in ("prior_ref_latent", "prior_random_ref_frame"):
                noise = noise_prior(
                    inputs["prior_base_noise"].to(dtype),
                    inputs["prior_offset_noise"].to(dtype),
                    inputs[ref_key].to(dtype),
                    schedule,
                    t,
                    order=order,
                    strength=strength,
                )
                report.close(f"{name} ({ref_key})", noise, out[name], tolerance)


# --------------------------------------------------------------------------- ddim_long_toy.pt


def check_ddim_long(path: Path, data: dict) -> CheckResult:
    config, inputs, out, tol = data["config"], data["inputs"], data["outputs"], data["tolerance"]
    schedule = schedule_from_config(config["diffusion"])
    report = Comparisons()
    size, overlap, stride = config["context_size"], config["context_overlap"], config["context_stride"]
    frames = config["frames"]

    windows = plan_windows(frames, size, overlap, stride)
    report.equal("window_lists", windows, config["window_lists"])
    report.equal("windows per step", out["windows"].tolist(), [windows] * out["windows"].shape[0])
    coverage = coverage_counts(windows, frames)
    report.equal(
        "coverage_count", out["coverage_count"].tolist(), [coverage] * out["coverage_count"].shape[0]
    )
    report.equal(
        "window batches (2)", batch_windows(windows, 2), config["window_batches_context_batch_size_2"]
    )
    windows_f20 = plan_windows(20, size, overlap, stride)
    report.equal("window_lists_F20", windows_f20, config["window_lists_F20"])
    report.equal(
        "windows_F20 per step", out["windows_F20"].tolist(), [windows_f20] * out["windows_F20"].shape[0]
    )
    report.equal(
        "coverage_count_F20",
        out["coverage_count_F20"].tolist(),
        [coverage_counts(windows_f20, 20)] * out["coverage_count_F20"].shape[0],
    )
    for row in config["window_table"]:
        _check_window_row(report, row)

    _check_long_runs(report, config, inputs, out, tol, schedule, windows)
    return report.result(path, "ddim_long")


def _sound(windows: object, num_frames: int) -> bool:
    """Whether the original's plan is one we reproduce: increasing windows, no wrap, all frames covered."""
    if not isinstance(windows, list):
        return False  # the original raised
    increasing = all(all(a < b for a, b in itertools.pairwise(w)) for w in windows)
    return increasing and min(coverage_counts(windows, num_frames)) > 0


def _check_window_row(report: Comparisons, row: dict) -> None:
    frames, size = row["num_frames"], row["context_size"]
    ours = plan_windows(frames, size, row["context_overlap"], row["context_stride"])
    label = f"windows F={frames} size={size} overlap={row['context_overlap']} stride={row['context_stride']}"
    if _sound(row["windows_used"], frames):
        report.equal(label, ours, row["windows_used"])
        report.equal(label + " coverage", coverage_counts(ours, frames), row["coverage_count"])
        return
    # Where the original wraps, repeats, raises or leaves frames uncovered we promise this instead.
    report.true(
        label + ": no wrap or repeat", all(all(a < b for a, b in itertools.pairwise(w)) for w in ours)
    )
    report.true(label + ": every frame covered", min(coverage_counts(ours, frames)) > 0)
    report.true(label + ": windows of min(size, F) frames", all(len(w) == min(size, frames) for w in ours))
    if frames <= size:
        report.equal(label + ": one window", ours, [list(range(frames))])


def _check_long_runs(
    report: Comparisons,
    config: dict,
    inputs: dict,
    out: dict,
    tol: dict,
    schedule: NoiseSchedule,
    windows: list[list[int]],
) -> None:
    num_steps, scale = config["ddim_timesteps"], config["guide_scale"]
    context = {
        "context_size": config["context_size"],
        "context_overlap": config["context_overlap"],
        "context_stride": config["context_stride"],
    }
    model = ToyVelocityModel.from_config(config)
    cond, uncond = _conditions(inputs, torch.float64)
    velocity = window_velocity(model, windows, guidance_scale=scale, cond_kwargs=cond, uncond_kwargs=uncond)
    steps = list(ddim_steps(velocity, inputs["noise"], schedule, num_steps=num_steps))
    report.close("trajectory", torch.stack([s.x_prev for s in steps]), out["trajectory"], tol)
    report.equal("model calls", len(model.calls), config["model_calls_per_step"] * len(steps))
    report.equal("call order", [kind for _, kind in model.calls[:2]], ["cond", "uncond"])

    def sample(noise: torch.Tensor, cond: dict, uncond: dict, **options) -> torch.Tensor:
        return window_ddim_sample(
            model,
            noise,
            schedule,
            num_steps=num_steps,
            guidance_scale=scale,
            cond_kwargs=cond,
            uncond_kwargs=uncond,
            **context,
            **options,
        )

    report.close("x_final", sample(inputs["noise"], cond, uncond), out["x_final"], tol)
    report.close(
        "x_final_context_batch_size_2",
        sample(inputs["noise"], cond, uncond, context_batch_size=config.get("context_batch_size", 1) + 1),
        out["x_final_context_batch_size_2"],
        tol,
    )
    report.close(
        "x_final (batch_cond_uncond, context_batch_size 3)",
        sample(inputs["noise"], cond, uncond, context_batch_size=3, batch_cond_uncond=True),
        out["x_final"],
        tol,
    )
    cond20, uncond20 = _conditions(inputs, torch.float64, num_frames=20)
    report.close("x_final_F20", sample(inputs["noise"][:, :, :20], cond20, uncond20), out["x_final_F20"], tol)
    cond32, uncond32 = _conditions(inputs, torch.float32)
    report.close(
        "x_final_float32",
        sample(inputs["noise"].float(), cond32, uncond32),
        out["x_final_float32"],
        config["float32_tolerance"],
    )
