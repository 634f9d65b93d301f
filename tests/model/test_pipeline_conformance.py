"""End-to-end fidelity: kind `pipeline` files replayed through the project's own input code and pipeline."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model.config import UNetConfig
from model.conformance import check_file, check_file_results
from model.conformance.pipeline import _pipeline, check_pipeline_fixture, replay_pass
from model.conformance.unet import check_unet_fixture
from model.motion import load_image
from model.pose.folder import read_pose_folder, select_frames
from model.schedule import ddim_timesteps
from model.unet import UniAnimateUNet

SHARED = "fixtures/pipeline_tiny.pt"


@pytest.fixture(scope="module")
def tiny_run(reference) -> dict:
    return torch.load(reference / SHARED, weights_only=True)


def test_shared_pipeline_file_passes_for_both_condition_sets(reference):
    results = check_file_results(reference / SHARED)
    assert [r.path.split("[")[-1] for r in results] == ["image,local_image,dwpose]", "image,randomref,dwpose]"]
    for result in results:
        assert result.passed, result.line()
        assert result.worst_error < 1e-4  # float tensors; images exact, frames_uint8 within one level
        assert "vit_input=0 " in result.detail and "dwpose=0 " in result.detail
    assert check_file(reference / SHARED).passed


def test_conditions_select_one_pass(reference):
    results = check_file_results(reference / SHARED, ["image,randomref,dwpose"])
    assert len(results) == 1 and results[0].passed and results[0].path.endswith("[image,randomref,dwpose]")
    missing = check_file_results(reference / SHARED, ["chained"])
    assert len(missing) == 1 and not missing[0].passed and "no pass" in missing[0].detail


def test_a_wiring_slip_fails(reference, tiny_run):
    # swap the two driving poses' order in the stored expectation: only dwpose-dependent tensors move
    broken = copy.copy(tiny_run)
    broken["intermediates"] = dict(tiny_run["intermediates"], dwpose=tiny_run["intermediates"]["dwpose"].flip(2))
    result = check_pipeline_fixture(reference / SHARED, broken, ["image,randomref,dwpose"])[0]
    assert not result.passed and "dwpose:" in result.detail and "x_T:" not in result.detail


def test_pose_folder_frame_selection_follows_the_original():
    assert select_frames(10, 4, 2) == ([0, 2, 4, 6], 2)
    assert select_frames(5, 4, 2) == ([0, 1, 2, 3], 1)  # too few for stride 2: stride (5-1)//3 = 1
    assert select_frames(2, 4, 1) == ([0, 1], 1)  # fewer frames than max_frames: all of them


def _synthetic(data: dict, *, width: int, height: int, frames: int, passes: list[dict], prior_t: int,
               seed: int) -> dict:
    """A pipeline-kind file for another case, its expectations filled by replaying it through our code."""
    out = copy.deepcopy({k: v for k, v in data.items() if k not in ("state_dicts", "files")})
    out["state_dicts"], out["files"] = data["state_dicts"], data["files"]
    cfg = out["config"]
    cfg.update(resolution_WH=[width, height], frames=frames, latent_hw=[height // 8, width // 8])
    cfg["effective_cfg"]["noise_prior_value"] = prior_t
    g = torch.Generator().manual_seed(seed)
    h, w = height // 8, width // 8
    shapes = {"vae_posterior_sample": [1, 4, h, w], "start_noise": [1, 4, frames, h, w],
              "offset_noise": [1, 4, frames, 1, 1]}
    for draw in out["random_draws"]:
        draw["shape"] = shapes[draw["role"]]
        draw["tensor"] = torch.randn(shapes[draw["role"]], generator=g)
    used = [f"inputs/pose/{n:04d}.jpg" for n in range(frames)]
    out["decoded"] = {k: v for k, v in data["decoded"].items() if "/0" not in k or k in used}
    out["intermediates"]["noise_prior_t"] = torch.tensor(prior_t)
    pipeline = _pipeline(out)
    image = load_image(_written(data, "inputs/ref_person.png"))
    folder = read_pose_folder(_written(data, "inputs/pose/ref_pose.jpg").parent, frames, 1)
    out["passes"] = []
    for spec in passes:
        actual = replay_pass(pipeline, out, spec, image, folder)
        spec["outputs"] = {k: actual[k] for k in data["passes"][0]["outputs"]}
        out["intermediates"].update({k: actual[k] for k in data["intermediates"] if k in actual})
        out["passes"].append(spec)
    return out


_TMP: dict = {}


def _written(data: dict, name: str):
    import tempfile
    from pathlib import Path

    root = _TMP.setdefault("root", Path(tempfile.mkdtemp()))
    for key, raw in data["files"].items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(raw.numpy().tobytes())
    return root / name


def _pass(keys: list[str], steps: int, scale: float, **extra) -> dict:
    given = sorted(set(keys) | ({"local_image"} if "first_frame" in extra else set()))
    return {"partial_keys": keys, "cond_given": given, "ddim_timesteps": steps, "guide_scale": scale,
            "eta": 0.0, **extra}


def test_a_case_of_other_sizes_steps_guidance_and_seeds_replays(reference, tiny_run, tmp_path):
    """The runner reads the case from the file: 80x48, 3 frames, 3 and 5 steps, other guidance, t 900."""
    synthetic = _synthetic(tiny_run, width=48, height=80, frames=3, prior_t=900, seed=5, passes=[
        _pass(["image", "local_image", "dwpose"], 3, 4.0), _pass(["image", "randomref", "dwpose"], 5, 1.5)])
    results = check_pipeline_fixture(tmp_path / "synthetic.pt", synthetic)
    assert len(results) == 2 and all(r.passed for r in results), [r.line() for r in results]
    assert synthetic["passes"][1]["outputs"]["x0_pred"].shape == (len(ddim_timesteps(5)), 1, 4, 3, 10, 6)

    tampered = copy.copy(synthetic)
    tampered["random_draws"] = copy.deepcopy(synthetic["random_draws"])
    tampered["random_draws"][2]["tensor"] = tampered["random_draws"][2]["tensor"] + 0.5  # offset noise
    results = check_pipeline_fixture(tmp_path / "synthetic.pt", tampered)
    assert all(not r.passed and "x_T:" in r.detail for r in results)


def test_the_chained_set_replays_with_a_first_frame(reference, tiny_run, tmp_path):
    first = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (96, 64, 3), dtype=np.uint8))
    chained = _synthetic(tiny_run, width=64, height=96, frames=2, prior_t=939, seed=7, passes=[
        _pass(["image", "randomref", "dwpose"], 2, 2.5, conditions="chained", first_frame=first)])
    assert torch.equal(chained["intermediates"]["local_image"][0, :, 0], first.permute(2, 0, 1).float() / 255)
    results = check_file_results_from(chained, tmp_path, ["chained"])
    assert len(results) == 1 and results[0].passed and results[0].path.endswith("[chained]"), results[0].line()


def check_file_results_from(data: dict, tmp_path, conditions):
    path = tmp_path / "chained.pt"
    torch.save(data, path)
    return check_file_results(path, conditions)


def test_unet_runner_accepts_a_non_tiny_configuration(reference, tmp_path):
    data = torch.load(reference / "fixtures/unet_tiny.pt", weights_only=True)
    kwargs = dict(data["config"]["kwargs"], dim_mult=[1, 1], attn_scales=[1.0, 0.5, 0.25], num_tokens=1)
    config = UNetConfig.from_original_kwargs(kwargs)
    assert config != UNetConfig.tiny()
    torch.manual_seed(0)
    model = UniAnimateUNet(config).eval()
    model.set_zero_y(data["inputs"]["zero_y"])
    inputs = data["inputs"]
    outputs = {}
    with torch.no_grad():
        for name, keys in data["config"]["output_kwargs"].items():
            outputs[name] = model(inputs["x"], inputs["t"], **{k: inputs[k] for k in keys})
    other = dict(data, config=dict(data["config"], kwargs=kwargs), state_dict=model.state_dict(),
                 outputs=outputs, intermediates={})
    result = check_unet_fixture(tmp_path / "unet_other.pt", other)
    assert result.passed and result.worst_error < 1e-6, result.line()
    other["outputs"] = dict(outputs, uncond=outputs["uncond"] + 1e-3)
    assert not check_unet_fixture(tmp_path / "unet_other.pt", other).passed
