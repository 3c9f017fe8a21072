"""Snapshot I/O (atomic write, RNG capture) and gradient averaging over gloo ranks."""
import os
import random
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from psohead.errors import CheckpointError
from psohead.training import distributed
from psohead.training.snapshot import capture_rng, load_snapshot, restore_rng, save_snapshot


def test_snapshot_round_trip_and_no_temp_left(tmp_path):
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    net(torch.randn(2, 4)).sum().backward()
    opt.step()
    path = save_snapshot(tmp_path / "s.pt", {"G": net.state_dict(), "opt_G": opt.state_dict(),
                                             "progress": {"cur_nimg": 128}, "cfg": {"a": [1, 2.5, "x"]}})
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]
    state = load_snapshot(path)
    assert state["progress"]["cur_nimg"] == 128 and state["cfg"] == {"a": [1, 2.5, "x"]}
    net2 = torch.nn.Linear(4, 3)
    net2.load_state_dict(state["G"])
    opt2 = torch.optim.Adam(net2.parameters(), lr=0.1)
    opt2.load_state_dict(state["opt_G"])
    for a, b in zip(net.parameters(), net2.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"])


def test_torn_or_foreign_snapshot_is_a_clear_error(tmp_path):
    path = save_snapshot(tmp_path / "s.pt", {"G": {"w": torch.randn(1000)}})
    data = path.read_bytes()
    (tmp_path / "torn.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_snapshot(tmp_path / "torn.pt")
    torch.save({"w": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a psohead training snapshot"):
        load_snapshot(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_snapshot(tmp_path / "missing.pt")


def test_failed_write_keeps_previous_snapshot(tmp_path):
    path = save_snapshot(tmp_path / "s.pt", {"v": torch.tensor(1)})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_snapshot(path, {"v": Boom()})
    assert load_snapshot(path)["v"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]


def test_rng_capture_restore_through_file(tmp_path):
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    save_snapshot(tmp_path / "r.pt", {"rng": capture_rng()})
    expect = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(load_snapshot(tmp_path / "r.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert expect[0] == got[0] and expect[1] == got[1] and torch.equal(expect[2], got[2])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, x, y, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    info = distributed.init_distributed("cpu")
    torch.manual_seed(100 + rank)  # different init per rank: broadcast must fix it
    net = torch.nn.Linear(3, 1)
    distributed.broadcast_module(net, info)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
    for _ in range(3):
        opt.zero_grad()
        ((net(xs) - ys) ** 2).mean().backward()
        distributed.reduce_gradients(net.parameters(), info)
        opt.step()
    out[rank] = torch.cat([p.detach().flatten() for p in net.parameters()])
    distributed.shutdown(info)


def test_gradient_averaging_equals_full_batch():
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), x, y, out), nprocs=2, join=True)
    # independent truth: one process on the whole batch (equal per-rank halves -> same mean grad)
    torch.manual_seed(100)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    ref = torch.cat([p.detach().flatten() for p in net.parameters()])
    assert torch.equal(out[0], out[1])
    assert torch.allclose(out[0], ref, atol=1e-6)


def test_gradient_sanitising_single_process():
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([float("nan"), float("inf"), -float("inf")])
    distributed.reduce_gradients([p], distributed.DistInfo())
    assert p.grad.tolist() == [0.0, 1e5, -1e5]
