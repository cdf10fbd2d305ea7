"""The run directory: atomic files, runs that may not be mixed, resume that changes nothing it
should not, and one-line errors for files that cannot be written."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from examples.oamn import run_files
from examples.oamn.checkpoint import checkpoint_bytes, load_checkpoint, load_model, load_weights
from examples.oamn.config import TrainConfig
from examples.oamn.model_factory import build_model
from examples.oamn.run_files import os_error_message, remove_run, write_atomic
from examples.oamn.train import main
from examples.oamn.training import train, train_or_resume
from tests.examples.fake_data import make_market_tree
from tests.examples.helpers_train import tiny_config, tiny_options

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli_options(data_root: Path, run_dir: Path) -> list[str]:
    return tiny_options(data_root, run_dir, max_steps_per_epoch=1)


def _fail_writes_of(monkeypatch, name: str, error: OSError) -> None:
    """Make every write of run file ``name`` fail with ``error``."""
    write = run_files._write_synced

    def failing(path: Path, payload: bytes) -> None:
        if run_files.partial_target(path) == name:
            path.write_bytes(payload[:10])  # the failure comes after part of the file
            raise error
        write(path, payload)

    monkeypatch.setattr(run_files, "_write_synced", failing)


# Atomic writes.


def test_write_atomic_replaces_the_file_and_leaves_nothing_else(tmp_path) -> None:
    path = tmp_path / "log.json"
    write_atomic(path, "first")
    write_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["log.json"]


def test_a_failed_write_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint_last.pt"
    write_atomic(path, b"epoch 1")
    _fail_writes_of(monkeypatch, path.name, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space left on device") as error_info:
        write_atomic(path, b"epoch 2")
    assert error_info.value.errno == errno.ENOSPC
    assert error_info.value.filename == str(path)
    assert os_error_message(error_info.value) == f"{path}: No space left on device"
    assert path.read_bytes() == b"epoch 1"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_last.pt"]


def test_an_interrupted_write_removes_its_partial_file(tmp_path, monkeypatch) -> None:
    _fail_writes_of(monkeypatch, "log.csv", KeyboardInterrupt())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "log.csv", "epoch\n1\n")
    assert list(tmp_path.iterdir()) == []


def test_os_error_message_keeps_the_last_line_of_a_loader_worker_error() -> None:
    worker = OSError(
        "Caught OSError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        'last):\n  File "loaders.py", line 81\nOSError: cannot read image /d/1.jpg (train '
        "split): image file is truncated"
    )
    assert os_error_message(worker) == (
        "cannot read image /d/1.jpg (train split): image file is truncated"
    )
    assert os_error_message(FileNotFoundError("no dataset at /d")) == "no dataset at /d"


def test_remove_run_deletes_only_the_run_files(tmp_path) -> None:
    names = ["config.json", "log.json", "log.csv", "checkpoint_best.pt", "checkpoint_epoch3.pt",
             "checkpoint_last.pt.partial", "log.json.4242-0a1b2c3d.partial", "notes.txt",
             "evaluation.json", "evaluation.json.77-ffee0011.partial"]  # fmt: skip
    for name in names:
        (tmp_path / name).write_text("x")
    removed = remove_run(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names[:7])
    # Another command's temporary may be a write in progress: not the run's to remove.
    kept = ["evaluation.json", "evaluation.json.77-ffee0011.partial", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == kept


def test_each_write_has_a_temporary_of_its_own(tmp_path, monkeypatch) -> None:
    temporaries = []
    write = run_files._write_synced

    def recording(path: Path, payload: bytes) -> None:
        temporaries.append(path.name)
        write(path, payload)

    monkeypatch.setattr(run_files, "_write_synced", recording)
    for text in ("first", "second"):
        write_atomic(tmp_path / "log.json", text)
    assert len(set(temporaries)) == 2
    for name in temporaries:
        assert re.fullmatch(rf"log\.json\.{os.getpid()}-[0-9a-f]{{8}}\.partial", name)
        assert run_files.partial_target(name) == "log.json"
    assert (tmp_path / "log.json").read_text() == "second"


# A folder that holds a run.


def test_a_used_run_directory_is_refused_unless_overwrite(tiny_market, tmp_path) -> None:
    other = make_market_tree(tmp_path / "other", ids=5, cams=2, per_cam=2)
    run = tmp_path / "run"
    train(tiny_config(tiny_market, run, val_ids=2, val_every=1))  # writes checkpoint_best.pt
    (run / "notes.txt").write_text("mine")
    before = (run / "checkpoint_last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run \(checkpoint_best.pt, chec.*--ove"):
        train(tiny_config(other, run))
    assert (run / "checkpoint_last.pt").read_bytes() == before
    train(tiny_config(other, run, overwrite=True))
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock",
        "checkpoint_last.pt",
        "config.json",
        "log.csv",
        "log.json",
        "notes.txt",
    ]  # fmt: skip: the old run's checkpoint_best.pt (4 classes) is gone, the user's file kept
    assert load_checkpoint(run / "checkpoint_last.pt").num_classes == 5


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(
    tiny_market, tmp_path
) -> None:
    config = tiny_config(tiny_market, tmp_path)
    config.save(tmp_path / "config.json")  # all that a kill during epoch 1 leaves
    train(config)
    with pytest.raises(ValueError, match="already holds a run"):  # another run, though
        train(dataclasses.replace(config, seed=1, epochs=2))


# Resume.


def test_resume_refuses_options_that_change_training_and_names_them(tiny_market, tmp_path) -> None:
    main([*_cli_options(tiny_market, tmp_path), "--epochs=2", "--keep-epoch-checkpoints"])
    checkpoint = str(tmp_path / "checkpoint_epoch1.pt")
    changed = ["--seed=1", "--lr=0.05", "--occlusion-areas=0.5", "--amp=bf16", "--height=128",
               "--no-mask-module", "--no-loss-mask", "--backbone=resnet18"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main([f"--resume={checkpoint}", "--epochs=2", *changed])
    message = str(exit_info.value.code)
    for option, before in [
        ("--seed 1", "--seed 0"),
        ("--lr 0.05", "--lr 0.1"),
        ("--occlusion-areas 0.5", "--occlusion-areas 0.5,0.25"),
        ("--amp bf16", "--amp none"),
        ("--height 128", "--height 64"),
        ("--no-mask-module", "--mask-module"),
        ("--backbone resnet18", "--backbone mobilenet_v2"),
    ]:
        assert f"{option} (checkpoint: {before})" in message
    with pytest.raises(SystemExit, match=r"differ from the checkpoint's: --epochs 1 \(checkp"):
        main([f"--resume={checkpoint}", "--epochs=1"])  # fewer than the run was to train
    assert load_checkpoint(tmp_path / "checkpoint_last.pt").epoch == 2  # nothing written


def test_resume_takes_the_options_that_change_nothing(tiny_market, tmp_path) -> None:
    main(_cli_options(tiny_market, tmp_path))
    checkpoint = str(tmp_path / "checkpoint_last.pt")
    main([f"--resume={checkpoint}", "--epochs=2", "--workers=1", "--progress",
          "--keep-epoch-checkpoints", "--no-verify-images", "--val-batch-size=7"])  # fmt: skip
    state = load_checkpoint(checkpoint)
    assert state.epoch == 2
    assert (state.config.workers, state.config.val_batch_size) == (1, 7)
    assert (tmp_path / "checkpoint_epoch2.pt").is_file()


def test_resume_writes_in_the_checkpoint_folder_and_reads_no_imagenet_weights(
    tiny_market, tmp_path
) -> None:
    weights = tmp_path / "mobilenet_v2.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    first = tmp_path / "first"
    main([*_cli_options(tiny_market, first), f"--weights={weights}"])
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    weights.unlink()  # a resumed run takes every weight from its checkpoint
    main([f"--resume={moved / 'checkpoint_last.pt'}", "--epochs=2"])
    assert not first.exists()  # the output_dir stored in the checkpoint is not written
    state = load_checkpoint(moved / "checkpoint_last.pt")
    assert (state.epoch, state.config.output_dir) == (2, str(moved))
    assert state.config.weights == str(weights)  # the run's record keeps its start


@pytest.mark.parametrize(
    ("ids", "per_cam", "match"),
    [
        (5, 2, r"has 6 classes but this run trains 5 identities"),
        (6, 3, r"was trained on other images than those this run reads"),  # as many identities
    ],
)
def test_resume_from_another_dataset_is_refused(tiny_market, tmp_path, ids, per_cam, match):
    other = make_market_tree(tmp_path / "other", ids=ids, cams=2, per_cam=per_cam)
    config = tiny_config(tiny_market, tmp_path / "run")
    train(config)
    resumed = dataclasses.replace(
        config, data_root=str(other), epochs=2, resume=str(tmp_path / "run" / "checkpoint_last.pt")
    )
    with pytest.raises(ValueError, match=match):
        train(resumed)


def test_a_finished_run_resumes_to_itself(tiny_market, tmp_path) -> None:
    config = tiny_config(tiny_market, tmp_path, val_ids=2, val_every=1)
    history = train(config)
    best = (tmp_path / "checkpoint_best.pt").read_bytes()
    (tmp_path / "checkpoint_best.pt").unlink()
    (tmp_path / "log.json").write_text("[]")
    resumed = train(dataclasses.replace(config, resume=str(tmp_path / "checkpoint_last.pt")))
    assert resumed == history
    assert (tmp_path / "checkpoint_best.pt").read_bytes() == best  # rebuilt
    assert json.loads((tmp_path / "log.json").read_text()) == history


def test_train_or_resume_continues_the_same_run_and_replaces_another(tiny_market, tmp_path) -> None:
    config = tiny_config(tiny_market, tmp_path)
    train(config)
    longer = dataclasses.replace(config, epochs=2)
    history = train_or_resume(longer)
    assert [record["epoch"] for record in history] == [1, 2]  # epoch 1 was not trained again
    assert history[0]["seconds"] == json.loads((tmp_path / "log.json").read_text())[0]["seconds"]
    assert train_or_resume(longer) == history  # finished: nothing trained
    other = dataclasses.replace(config, seed=3)
    assert len(train_or_resume(other)) == 1  # another run: replaced
    assert load_checkpoint(tmp_path / "checkpoint_last.pt").config.seed == 3


# Architecture mismatches.


def test_weights_of_another_architecture_name_the_options(tmp_path) -> None:
    small = TrainConfig(backbone="resnet18", height=64, width=32, mask_module=False,
                        loss_mask=False)  # fmt: skip
    model = build_model(small, num_classes=3)
    contents = {"model": model, "epoch": 1, "num_classes": 3, "rng_state": {}, "history": [],
                "optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}  # fmt: skip
    path = tmp_path / "checkpoint_last.pt"
    path.write_bytes(checkpoint_bytes(config=small, **contents))
    state = load_checkpoint(path)
    other = dataclasses.replace(small, height=128, mask_module=True, loss_mask=True)
    with pytest.raises(ValueError, match="another architecture") as error_info:
        load_weights(build_model(other, 3), other, state, path)
    assert str(error_info.value) == (
        f"checkpoint {path} holds a model of another architecture than this one: --height 128 "
        "(checkpoint: --height 64), --mask-module (checkpoint: --no-mask-module); use the "
        "checkpoint's values of these options"
    )
    # A configuration that does not describe its own weights (another version of the code).
    path.write_bytes(checkpoint_bytes(config=other, **contents))
    with pytest.raises(ValueError, match=r"do not fit the model its configuration describes \(\d+ "
                       r"missing, e.g. mask\..*another version"):  # fmt: skip
        load_model(path)


# Command-line errors.


def test_cli_errors_for_files_are_one_line(tiny_market, tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(_cli_options(tiny_market, tmp_path / "file" / "run"))
    assert str(exit_info.value.code) == (
        f"python -m examples.oamn.train: error: {tmp_path / 'file' / 'run'}: Not a directory"
    )
    run = tmp_path / "run"
    _fail_writes_of(
        monkeypatch, "checkpoint_last.pt", OSError(errno.ENOSPC, "No space left on device")
    )
    with pytest.raises(SystemExit) as exit_info:
        main(_cli_options(tiny_market, run))
    assert str(exit_info.value.code) == (
        f"python -m examples.oamn.train: error: {run / 'checkpoint_last.pt'}: No space left on "
        "device"
    )
    assert not list(run.glob("*.partial"))
    _fail_writes_of(monkeypatch, "config.json", PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(SystemExit, match=r"error: .*/config.json: Permission denied$"):
        main([*_cli_options(tiny_market, run), "--overwrite"])


#: Pillow's words for a JPEG cut short (which depends on where it was cut).
TRUNCATED = "(?:Truncated File Read|image file is truncated)"


def test_training_reads_every_image_first_unless_told_not_to(tiny_market, tmp_path) -> None:
    root = tmp_path / "market"
    shutil.copytree(tiny_market, root)
    for path in (root / "bounding_box_train").iterdir():
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # truncated JPEGs
    run = tmp_path / "run"
    with pytest.raises(
        SystemExit,
        match=rf"(?s)error: 36 of \d+ images cannot be read.*"
        rf"  train: .*bounding_box_train/0001_c1s1_\S+.jpg: {TRUNCATED}",
    ):
        main(_cli_options(root, run))
    # Found before any file was written: only the lock, released.
    assert [(p.name, p.read_text()) for p in run.iterdir()] == [(".lock", "")]
    with pytest.raises(SystemExit) as exit_info:
        main([*_cli_options(root, run), "--no-verify-images"])
    assert re.fullmatch(
        r"python -m examples.oamn.train: error: cannot read image \S+/bounding_box_train/\S+.jpg "
        rf"\(train split\): {TRUNCATED}.*",
        str(exit_info.value.code),
    )


def test_on_a_read_only_file_system_the_error_names_the_file(tmp_path, monkeypatch) -> None:
    def read_only(path: Path, *args, **kwargs) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(run_files, "_write_synced", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)  # the leftover cannot be removed either
    with pytest.raises(OSError, match="Read-only file system") as error_info:
        write_atomic(tmp_path / "config.json", "{}")
    monkeypatch.undo()
    message = os_error_message(error_info.value)
    assert message == f"{tmp_path / 'config.json'}: Read-only file system"


def test_resuming_an_older_checkpoint_of_the_folder_needs_overwrite(tiny_market, tmp_path) -> None:
    options = _cli_options(tiny_market, tmp_path)
    main([*options, "--epochs=3", "--keep-epoch-checkpoints", "--val-ids=2", "--val-every=1"])
    older = str(tmp_path / "checkpoint_epoch1.pt")
    last = (tmp_path / "checkpoint_last.pt").read_bytes()
    with pytest.raises(SystemExit, match=r"continues from epoch 1, but .* has trained 3 epochs"):
        main([f"--resume={older}"])
    assert (tmp_path / "checkpoint_last.pt").read_bytes() == last  # nothing was replaced
    best = load_checkpoint(tmp_path / "checkpoint_best.pt").epoch
    history = json.loads((tmp_path / "log.json").read_text())
    main([f"--resume={older}", "--overwrite"])  # epochs 2 and 3 again
    again = json.loads((tmp_path / "log.json").read_text())
    timeless = [{k: v for k, v in r.items() if k != "seconds"} for r in history]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in again] == timeless
    assert load_checkpoint(tmp_path / "checkpoint_best.pt").epoch == best


def test_the_folder_is_checked_before_the_data_is_read(tmp_path, monkeypatch) -> None:
    _fail_writes_of(monkeypatch, ".write_check", OSError(errno.EROFS, "Read-only file system"))
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:  # the data root does not even exist
        main(_cli_options(tmp_path / "no data", run))
    assert str(exit_info.value.code) == (
        f"python -m examples.oamn.train: error: {run / '.write_check'}: Read-only file system"
    )


def test_a_folder_with_only_another_configuration_suggests_no_checkpoint(
    tiny_market, tmp_path
) -> None:
    tiny_config(tiny_market, tmp_path, seed=5).save(tmp_path / "config.json")
    with pytest.raises(ValueError, match=r"\(config.json\); --overwrite to replace it") as info:
        train(tiny_config(tiny_market, tmp_path))
    assert "--resume" not in str(info.value)


def test_a_bad_checkpoint_to_resume_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        main([f"--resume={tmp_path / 'empty.pt'}"])
    error = capsys.readouterr().err
    assert error == (
        f"python -m examples.oamn.train: error: checkpoint {tmp_path / 'empty.pt'} is empty (0 "
        "bytes): a write that never finished; use another checkpoint of the run or train again\n"
    )


@pytest.mark.parametrize("kind", ["json", "pickle"])
def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path, capsys, kind) -> None:
    path = tmp_path / "not_a_checkpoint"
    if kind == "json":  # torch.load's own error: "mmap can only be used with files saved ..."
        path.write_text('{"lr": 0.1}')
        expected = f"{path} is not a checkpoint: it is not the zip archive that torch.save writes"
    else:  # torch.load's own error advises weights_only=False, which would run its code
        torch.save(argparse.Namespace(lr=0.1), path)
        expected = f"checkpoint {path} could not be read: it holds Python objects other than"
    for verify in (True, False):
        with pytest.raises(ValueError, match=re.escape(expected)):
            load_checkpoint(path, verify=verify)
    with pytest.raises(SystemExit):
        main([f"--resume={path}"])
    error = capsys.readouterr().err
    assert error.startswith(f"python -m examples.oamn.train: error: {expected}"), error
    assert error.count("\n") == 1
    assert "weights_only" not in error
    assert "mmap" not in error


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--val-ids=100"],
            "--val-ids 100 would hold out 100 of the 6 training identities, leaving none to "
            "train on; lower --val-ids",
        ),
        (
            ["--ids-per-batch=100"],
            "ids_per_batch (--ids-per-batch) 100 exceeds the 6 training identities; lower "
            "--ids-per-batch",
        ),
        (
            ["--val-ids=0.9"],
            "ids_per_batch (--ids-per-batch) 2 exceeds the 1 training identities that --val-ids "
            "0.9 leaves; lower --ids-per-batch or --val-ids",
        ),
        (
            ["--height=8", "--width=4"],
            "--height 8 --width 4 gives a (1, 1) feature map after layer3 (stride 16), and the "
            "mask module's RGA-S cannot use --mask-spatial-reduction 2, --mask-down-ratio 2 ",
        ),
        (
            [f"--weights={Path('absent.pth').absolute()}"],
            f"--weights '{Path('absent.pth').absolute()}' is neither an existing file (no such "
            "path was found) nor a weight name of --backbone 'mobilenet_v2'",
        ),
    ],
)
def test_settings_that_cannot_run_name_the_options(tiny_market, tmp_path, options, message) -> None:
    # Each comes from a part that names its own arguments (the split, the sampler, the model).
    with pytest.raises(SystemExit) as exit_info:
        main([*_cli_options(tiny_market, tmp_path), *options])
    assert str(exit_info.value.code).startswith(f"python -m examples.oamn.train: error: {message}")
