"""python -m examples.oamn.evaluate: end to end on tiny datasets, the report, and its errors."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from examples.oamn import evaluate, run_files
from examples.oamn.checkpoint import load_model
from examples.oamn.config import TrainConfig
from examples.oamn.data import build_test_loader, load_dataset
from examples.oamn.precision import resolve_amp
from examples.oamn.training import train
from oamn.reid_eval import evaluate_features
from tests.examples.fake_data import make_market_tree
from tests.examples.helpers_eval import (
    DEFAULT_ROWS,
    HEIGHT,
    PLAIN,
    UNIFIED,
    WIDTH,
    ColourModel,
    write_colour_market,
)
from tests.examples.helpers_train import tiny_config

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_market(tmp_path_factory) -> Path:
    """3 test ids x 2 cameras: 6 queries; 6 gallery images + 1 junk + 1 distractor."""
    return make_market_tree(
        tmp_path_factory.mktemp("small"), ids=3, cams=2, per_cam=1, junk=1, distractors=1
    )


@pytest.fixture(scope="module")
def checkpoint(small_market, tmp_path_factory) -> Path:
    """The checkpoint of a 2-step training run (ResNet-18 at 64x32, no validation split)."""
    run_dir = tmp_path_factory.mktemp("run")
    # ResNet-18 split after layer2 runs faster on the CPU than MobileNetV2 at this size.
    train(tiny_config(small_market, run_dir, val_ids=0, backbone="resnet18", split_after="layer2"))
    return run_dir / "checkpoint_last.pt"


def run_cli(*argv: str, cwd: Path = REPOSITORY) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    return subprocess.run(
        [sys.executable, "-m", "examples.oamn.evaluate", *argv],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_module_runs_as_a_script() -> None:
    done = run_cli("--checkpoint", "absent.pt")
    assert done.returncode == 2
    assert "usage: python -m examples.oamn.evaluate" in done.stderr
    assert "--checkpoint absent.pt: no such file" in done.stderr


def test_cli_end_to_end(checkpoint, tmp_path, capsys) -> None:
    output = tmp_path / "metrics.json"
    figures = tmp_path / "figures"
    options = ["--batch-size", "16", "--workers", "0", "--device", "cpu", "--no-progress"]
    paths = ["--checkpoint", str(checkpoint), "--output", str(output), "--figures", str(figures)]
    evaluate.main([*paths, *options])
    printed = capsys.readouterr().out
    for name in (
        "no unification",
        "unified, mask swap bank",
        "unified, feature bank",
        "unified, band bank",
        "unified, band bank, two-sided",
        "awareness (augmented): mask mean",
    ):
        assert name in printed
    result = json.loads(output.read_text())
    assert result["dataset"]["name"] == "market1501"
    assert result["dataset"]["num_query"] == 6
    assert result["dataset"]["num_gallery"] == 8
    assert result["config"]["backbone"] == "resnet18"
    assert result["amp"] == resolve_amp("auto", "cpu")  # the mode --amp auto ran, recorded
    libraries = {"python", "torch", "torchvision", "kornia", "einops", "numpy", "oamn"}
    assert set(result["versions"]) >= libraries
    assert result["command"].startswith("python -m examples.oamn.evaluate --checkpoint")
    # Every strategy one- and two-sided, under the grader's and the located types; no
    # true-type rows without a synthetic manifest.
    assert list(result["rows"]) == DEFAULT_ROWS
    for row in result["rows"].values():
        assert 0.0 <= row["mINP"] <= row["mAP"] <= 1.0
        assert row["R1"] <= row["R5"] <= row["R10"] <= 1.0
    assert result["rows"]["unified_mask_swap"]["bank_seconds"] > 0
    assert sum(result["query_types"].values()) == 6
    for difference in result["bank_type0_max_abs_diff"].values():
        assert difference < 1e-4  # bank type 0 is the plain gallery feature
    assert list(result["awareness"]) == ["augmented"]  # no synthetic manifest
    augmented = result["awareness"]["augmented"]
    assert augmented["images"] == 6
    assert augmented["grader"]["count"] == 5 * 6
    assert augmented["grader"]["occluded_count"] == 4 * 6
    assert result["seconds"]["awareness"] > 0
    assert sorted(Path(p).name for p in result["figures"]) == [
        "attention.png",
        "awareness.png",
        "ranked_plain.png",
        "ranked_unified_band.png",
        "ranked_unified_feature.png",
        "ranked_unified_mask_swap.png",
    ]


def test_plain_row_matches_an_independent_evaluation(checkpoint, small_market, tmp_path) -> None:
    result = evaluate.main(
        [
            "--checkpoint",
            str(checkpoint),
            "--output",
            str(tmp_path / "m.json"),
            "--strategies",
            "none",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    model, config = load_model(checkpoint)
    dataset = load_dataset("market1501", small_market)
    features, labels = {}, {}
    for split in ("query", "gallery"):
        items = getattr(dataset, split)
        images = next(iter(build_test_loader(items, config.height, config.width, 1000, 0)))[0]
        features[split] = model.extract(images)[0]
        labels[split] = (
            torch.tensor([i.pid for i in items]),
            torch.tensor([i.camid for i in items]),
        )
    expected = evaluate_features(
        features["query"],
        features["gallery"],
        labels["query"][0],
        labels["gallery"][0],
        labels["query"][1],
        labels["gallery"][1],
    )
    assert list(result["rows"]) == ["plain"]
    assert result["rows"]["plain"]["mAP"] == pytest.approx(expected.mAP, abs=1e-6)
    assert result["rows"]["plain"]["R1"] == pytest.approx(float(expected.cmc[0]), abs=1e-6)


@pytest.fixture
def colour_cli(monkeypatch, tmp_path) -> list[str]:
    """The evaluation CLI's arguments for ColourModel (loaded in place of a checkpoint) on the
    colour market, with the checkpoint's folder ``tmp_path``."""
    root = write_colour_market(tmp_path / "colour")
    config = TrainConfig(
        dataset="market1501", data_root=str(root), height=HEIGHT, width=WIDTH, workers=0
    )
    monkeypatch.setattr(evaluate, "load_model", lambda path, device: (ColourModel(), config))
    fake = tmp_path / "checkpoint.pt"
    fake.write_bytes(b"")
    return ["--checkpoint", str(fake), "--device", "cpu", "--no-progress"]


def test_stand_in_model_gives_the_hand_computed_table(colour_cli, tmp_path, capsys) -> None:
    result = evaluate.main(colour_cli)
    table = capsys.readouterr().out
    # The setting column is as wide as the longest name.
    width = max(len(row["name"]) for row in result["rows"].values())
    assert width == len("unified, mask swap bank, two-sided, located types")
    assert f"{'unified, mask swap bank':<{width}}   66.7  100.0  100.0" in table
    assert f"{'no unification':<{width}}    0.0  100.0  100.0" in table
    assert f"{'unified, mask swap bank, two-sided':<{width}}    0.0  100.0  100.0" in table
    assert f"{'unified, mask swap bank, located types':<{width}}  100.0  100.0  100.0" in table
    assert "query types: none 1, half top 2" in table
    # Every occluded copy looks half top to ColourModel's grader (only the blue query, whose
    # copies are no longer blue, is graded none): the top copies have the right location.
    assert re.search(
        r"awareness \(augmented\): mask mean 0\.\d{3}, band / visible \d\.\d{3}; grader "
        r"location 25\.0 %, type \d+\.\d %, none 33\.3 %",
        table,
    )
    for key, expected in (
        ("plain", PLAIN),
        ("unified_mask_swap", UNIFIED),
        ("unified_mask_swap_two_sided", PLAIN),
        ("unified_feature", PLAIN),
        ("unified_feature_two_sided", PLAIN),
        ("unified_band", PLAIN),
        ("unified_band_two_sided", PLAIN),
        ("unified_mask_swap_located", {"mAP": 1.0}),  # every query located half top
        ("unified_mask_swap_two_sided_located", PLAIN),
        ("unified_band_located", PLAIN),
    ):
        assert result["rows"][key]["mAP"] == pytest.approx(expected["mAP"], abs=1e-12)
    # 3 banks x one-/two-sided x grader's/located types; the colour market has no manifest:
    # no true-type rows.
    assert len(result["rows"]) == 1 + 3 * 2 * 2
    assert list(result["awareness"]) == ["augmented"]
    assert result["awareness"]["augmented"]["seed"] == 0
    assert result["awareness"]["augmented"]["images"] == 3
    # Default output: beside the checkpoint, named after the dataset.
    assert json.loads((tmp_path / "metrics_market1501.json").read_text())["rows"]


def test_no_two_sided_no_awareness_and_the_seed(colour_cli, capsys) -> None:
    common = colour_cli
    bare = evaluate.main([*common, "--no-two-sided", "--no-awareness"])
    assert list(bare["rows"]) == [
        "plain",
        *(
            f"unified_{s}{types}"
            for s in ("mask_swap", "feature", "band")
            for types in ("", "_located")
        ),
    ]
    assert "awareness" not in bare
    assert "awareness" not in bare["seconds"]
    assert not any(key.endswith("_query") for key in bare["seconds"])  # no query bank built
    assert "awareness (" not in capsys.readouterr().out
    seeded = evaluate.main([*common, "--strategies", "band", "--awareness-seed", "3"])
    assert list(seeded["rows"]) == [
        "plain",
        "unified_band",
        "unified_band_two_sided",
        "unified_band_located",
        "unified_band_two_sided_located",
    ]
    assert seeded["awareness"]["augmented"]["seed"] == 3
    assert "awareness (augmented)" in capsys.readouterr().out
    reranked = evaluate.main([*common, "--strategies", "band", "--no-awareness", "--rerank"])
    assert reranked["settings"]["rerank"] == [20, 6, 0.3]
    assert [key for key in reranked["rows"] if key.endswith("_reranked")] == [
        "plain_reranked",
        "unified_band_reranked",
        "unified_band_two_sided_reranked",
    ]
    assert "no unification, re-ranked" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--checkpoint", "{missing}"], "no such file; pass a checkpoint written by"),
        (
            ["--checkpoint", "{ckpt}", "--strategies", "mask_swap,pixel"],
            r"unknown bank strategies \['pixel'\]",
        ),
        (["--checkpoint", "{ckpt}", "--strategies", "feature,feature"], "repeated bank"),
        (["--checkpoint", "{ckpt}", "--data-root", "{missing}"], "no such folder"),
        (["--checkpoint", "{ckpt}", "--dataset", "cuhk03"], "unknown dataset 'cuhk03'"),
        (
            ["--checkpoint", "{ckpt}", "--device", "cpu", "--amp", "fp16"],
            "--amp: amp fp16 needs CUDA but the device is cpu; use bf16 or none",
        ),
        (["--checkpoint", "{junk}"], "junk.pt is not an OAMN training checkpoint"),
        (["--checkpoint", "{json}"], r"settings.json is not a checkpoint: it is not the zip"),
        (["--checkpoint", "{pickle}"], r"pickle.pt could not be read: it holds Python objects"),
        (["--checkpoint", "{ckpt}", "--rerank", "20,6"], "expected K1,K2,LAMBDA"),
        (["--checkpoint", "{ckpt}", "--rerank", "20,0,0.3"], "expected K1,K2,LAMBDA"),
        (["--checkpoint", "{ckpt}", "--rerank", "20,6,1.5"], "expected K1,K2,LAMBDA"),
        (
            ["--checkpoint", "{ckpt}", "--batch-size", "0"],
            r"batch_size \(--batch-size\) must be an int >= 1, got 0",
        ),
    ],
)
def test_errors(checkpoint, tmp_path, capsys, argv, message) -> None:
    junk = tmp_path / "junk.pt"
    torch.save({"weights": 1}, junk)
    (tmp_path / "settings.json").write_text('{"lr": 0.1}')
    torch.save(argparse.Namespace(lr=0.1), tmp_path / "pickle.pt")  # torch.save's, not weights
    paths = {"missing": tmp_path / "absent", "ckpt": checkpoint, "junk": junk}
    paths |= {"json": tmp_path / "settings.json", "pickle": tmp_path / "pickle.pt"}
    argv = [a.format(**paths) for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert re.search(message, error)
    assert "weights_only=False" not in error  # torch's advice, which must never be followed


def test_package_works_without_matplotlib() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "import examples.oamn.evaluate, examples.oamn.extraction, examples.oamn.reporting\n"
        "import examples.oamn.visualize\n"
        "print('ok')"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_an_output_that_cannot_be_written_is_one_line(checkpoint, tmp_path) -> None:
    (tmp_path / "file").write_text("")
    output = tmp_path / "file" / "metrics.json"
    options = ["--device", "cpu", "--workers", "0", "--no-progress", "--no-awareness"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--checkpoint", str(checkpoint), "--output", str(output), *options])
    message = str(exit_info.value.code)
    assert "\n" not in message
    assert re.fullmatch(
        r"python -m examples.oamn.evaluate: error: .*/file: Not a directory", message
    )


def _fail_png_writes(monkeypatch) -> None:
    """A disk that fills up at the first figure: every PNG write fails after a few bytes."""
    write = run_files._write_synced

    def full_disk(path: Path, payload: bytes) -> None:
        if (run_files.partial_target(path) or "").endswith(".png"):
            path.write_bytes(payload[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, payload)

    monkeypatch.setattr(run_files, "_write_synced", full_disk)


def _strict_json(path: Path) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{path} is not strict JSON: {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_full_disk_while_drawing_keeps_the_metrics(
    checkpoint, tmp_path, monkeypatch, capsys
) -> None:
    _fail_png_writes(monkeypatch)
    output, figures = tmp_path / "metrics.json", tmp_path / "figures"
    options = ["--device", "cpu", "--workers", "0", "--no-progress", "--no-awareness"]
    paths = ["--checkpoint", str(checkpoint), "--output", str(output), "--figures", str(figures)]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([*paths, *options])
    assert str(exit_info.value.code) == (
        f"python -m examples.oamn.evaluate: error: {figures / 'ranked_plain.png'}: No space "
        "left on device"
    )
    assert f"metrics written to {output}" in capsys.readouterr().out
    result = _strict_json(output)
    assert 0 <= result["rows"]["plain"]["mAP"] <= 1
    assert "figures" not in result
    # No part of a PNG, no temporary; the locks of the two outputs, released.
    assert [(p.name, p.read_text()) for p in figures.iterdir()] == [(".lock", "")]
    listed = ["figures", "metrics.json", ".metrics.json.lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(listed)


def test_a_really_full_disk_while_drawing_keeps_the_metrics(checkpoint, tmp_path) -> None:
    # A 16 KiB tmpfs mounted over the figures folder in a mount namespace of the command's own
    # (it vanishes with the command), where the user may mount: the first PNG fills it.
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            ["unshare", "--mount", "--map-root-user", "true"], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("no mount namespaces here (unshare --mount --map-root-user fails)")
    output, figures = tmp_path / "metrics.json", tmp_path / "figures"
    figures.mkdir()
    evaluation = [sys.executable, "-m", "examples.oamn.evaluate", "--checkpoint", str(checkpoint)]
    evaluation += ["--output", str(output), "--figures", str(figures), "--device", "cpu"]
    evaluation += ["--workers", "0", "--no-progress", "--no-awareness"]
    script = f"mount -t tmpfs -o size=16k tmpfs {shlex.quote(str(figures))} && exec "
    done = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", script + shlex.join(evaluation)],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"python -m examples.oamn.evaluate: error: {figures / 'ranked_plain.png'}: No space "
        "left on device"
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert 0 <= _strict_json(output)["rows"]["plain"]["mAP"] <= 1
