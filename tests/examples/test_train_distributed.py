"""Two-process DistributedDataParallel training on the CPU (gloo), as torchrun would start it."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from examples.oamn.config import TrainConfig
from examples.oamn.distributed import DistributedContext, init_distributed
from examples.oamn.locking import lock_folder
from examples.oamn.run_files import os_error_message
from examples.oamn.training import Trainer, train
from tests.examples.helpers_train import tiny_config

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_torchrun_would(rank: int, port: int) -> None:
    """The variables torchrun sets for each process it starts (env:// rendezvous)."""
    os.environ |= {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(WORLD_SIZE),
    }
    torch.set_num_threads(1)


def _worker(rank: int, port: int, config: dict[str, Any], results: str) -> None:
    _as_torchrun_would(rank, port)
    context = init_distributed("cpu")
    try:
        trainer = Trainer(TrainConfig.from_dict(config), context)
        history = trainer.run()
        trainer.loader.batch_sampler.set_epoch(0)
        _, _, _, first_batch = next(iter(trainer.loader))
        parameters = {name: p.detach() for name, p in trainer.model.named_parameters()}
        state = {"context": context, "parameters": parameters, "history": history}
        state["mean"] = context.mean({"rank": float(rank), "one": 1.0})
        torch.save(state | {"first_batch": first_batch}, Path(results) / f"rank{rank}.pt")
    finally:
        context.close()


def test_two_process_gloo_training_keeps_the_replicas_equal(tiny_market, tmp_path) -> None:
    config = tiny_config(tiny_market, tmp_path / "run", max_steps_per_epoch=2, val_ids=2)
    mp.spawn(
        _worker,
        args=(_free_port(), config.to_dict(), str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=True,
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [r["context"] for r in ranks] == [
        DistributedContext(r, WORLD_SIZE, r, torch.device("cpu")) for r in range(2)
    ]
    assert ranks[0]["mean"] == ranks[1]["mean"] == {"rank": 0.5, "one": 1.0}
    # Each rank trained on its own shard of the batches...
    assert set(ranks[0]["first_batch"].tolist()).isdisjoint(ranks[1]["first_batch"].tolist())
    # ... yet, with gradients averaged by DDP, the replicas stay identical after the steps.
    for name, value in ranks[0]["parameters"].items():
        assert torch.equal(ranks[1]["parameters"][name], value), name
    fresh = dataclasses.replace(config, output_dir=str(tmp_path / "fresh"))
    initial = Trainer(fresh, DistributedContext(0, 1, 0, torch.device("cpu"))).model
    assert not torch.equal(initial.classifier.weight, ranks[0]["parameters"]["classifier.weight"])
    # The logged losses are the mean over the ranks, so both ranks log the same values; only
    # rank 0 validates and writes the run directory.
    (record0,), (record1,) = ranks[0]["history"], ranks[1]["history"]
    assert record0["loss"] == record1["loss"]
    assert "val_mAP" in record0
    assert "val_mAP" not in record1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "checkpoint_best.pt",
        "checkpoint_last.pt",
        "config.json",
        "log.csv",
        "log.json",
    ]


def _refused_worker(rank: int, port: int, config: dict[str, Any], results: str) -> None:
    _as_torchrun_would(rank, port)
    try:
        train(TrainConfig.from_dict(config))
    except OSError as error:
        (Path(results) / f"rank{rank}.txt").write_text(os_error_message(error))


def test_every_rank_stops_when_another_process_writes_the_run_directory(
    tiny_market, tmp_path
) -> None:
    # Only rank 0 takes the lock; the others must not go on to wait for it at a collective.
    run_dir = tmp_path / "run"
    config = tiny_config(tiny_market, run_dir)
    with lock_folder(run_dir, option="--output-dir"):
        mp.spawn(
            _refused_worker,
            args=(_free_port(), config.to_dict(), str(tmp_path)),
            nprocs=WORLD_SIZE,
            join=True,
        )
    messages = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(WORLD_SIZE)]
    assert messages[0] == messages[1]
    assert messages[0].startswith(f"{run_dir}: in use by process {os.getpid()} on ")
    assert [path.name for path in run_dir.iterdir()] == [".lock"]
