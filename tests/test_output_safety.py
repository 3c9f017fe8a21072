"""Where psohead writes (issue 23): never into a user's folder, never over a user's file, nothing
half-written left by a kill, writability checked before any work (psohead.atomic and every verb)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psohead.atomic import MARKER, atomic_dir, check_output_dir, check_writable, read_marker, remove_stale_partials
from psohead.camera import label_from_yaw_pitch
from psohead.cli import main
from psohead.errors import InputError

REPO = Path(__file__).resolve().parents[1]
FAST = ["--stage1-steps", "1", "--stage2-steps", "1", "--set", "outputs.video_frames=2",
        "--set", "outputs.mesh_resolution=16", "--set", "stage1.w_avg_samples=200", "--back", "none", "--quiet"]


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` (hidden ones too) -> its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _users_folder(path: Path) -> dict:
    (path / "sub").mkdir(parents=True)
    (path / "holiday.jpg").write_bytes(b"my photo")
    (path / "sub" / "notes.txt").write_text("mine")
    return _tree(path)


@pytest.fixture(scope="module")
def tiny_crop(tmp_path_factory):
    """An aligned crop of a tiny random generator's head, its dataset.json label and the network file."""
    from inversion_tiny import rendered_target, tiny_generator

    from psohead.checkpoint.safetensors_io import save_network

    root = tmp_path_factory.mktemp("tiny")
    G = tiny_generator()
    save_network(G, root / "tiny.safetensors")
    image, label, _ = rendered_target(G)
    arr = ((image[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    (root / "crops").mkdir()
    Image.fromarray(arr).save(root / "crops" / "crop.png")
    (root / "crops" / "dataset.json").write_text(json.dumps({"labels": [["crop.png", label[0].tolist()]]}))
    return root / "crops" / "crop.png", root / "tiny.safetensors"


def test_atomic_dir_replaces_its_own_output_and_never_touches_the_users(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):  # killed half-way: nothing left
        with atomic_dir(out, "reconstruct") as tmp:
            (tmp / "crop.png").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out, "reconstruct") as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "old_only.txt").write_text("1")
    assert read_marker(out) == {"verb": "reconstruct", "files": ["a.txt", "old_only.txt"]}
    with atomic_dir(out, "reconstruct") as tmp:  # a rerun: the earlier output is replaced whole
        (tmp / "a.txt").write_text("2")
    assert _tree(out).keys() == {"a.txt", MARKER} and (out / "a.txt").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]

    # a file the user put into an earlier output stays, psohead's files are replaced or dropped
    (out / "mine.txt").write_text("keep")
    with atomic_dir(out, "reconstruct") as tmp:
        (tmp / "b.txt").write_text("3")
    assert (out / "mine.txt").read_text() == "keep" and (out / "b.txt").read_text() == "3"
    assert not (out / "a.txt").exists() and read_marker(out)["files"] == ["b.txt"]

    # another verb's output, a user's folder and a file are refused before anything is written
    users = tmp_path / "users"
    before = _users_folder(users)
    for target, match in ((users, "did not write"), (out, "psohead reconstruct")):
        with pytest.raises(InputError, match=match):
            with atomic_dir(target, "synth orbit"):
                pytest.fail("must not start")
    (tmp_path / "file.txt").write_text("mine")
    with pytest.raises(InputError, match="is a file"):
        check_output_dir(tmp_path / "file.txt", "reconstruct")
    assert _tree(users) == before and (tmp_path / "file.txt").read_text() == "mine"

    # --overwrite: psohead's files go in beside the user's, which are all kept
    with atomic_dir(users, "reconstruct", overwrite=True) as tmp:
        (tmp / "views.png").write_text("v")
    assert _tree(users) == {**before, "views.png": b"v", MARKER: (users / MARKER).read_bytes()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "out", "users"]


def test_legacy_reconstruction_folder_counts_as_psohead_output(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "views.png").write_text("v")
    (out / "reconstruction.json").write_text(json.dumps({"files": ["views.png", "reconstruction.json"]}))
    with atomic_dir(out, "reconstruct") as tmp:
        (tmp / "reconstruction.json").write_text("{}")
    assert _tree(out).keys() == {"reconstruction.json", MARKER}


def test_stale_partials_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    """What SIGKILL leaves (``.NAME.partial-...``) goes on the next run on the same target; a
    partial whose writer still runs, or of another target, stays."""
    from psohead.atomic import _HOST

    dead, alive = _dead_pid(), os.getppid()
    stale = [tmp_path / f".out.partial-{_HOST}-{dead}-0123abcd", tmp_path / ".out.partial-89abcdef"]
    kept = [tmp_path / f".out.partial-{_HOST}-{alive}-0123abcd", tmp_path / f".other.partial-{_HOST}-{dead}-0123abcd"]
    for p in stale + kept:
        p.mkdir()
        (p / "views.png").write_text("half")
    stale_file = tmp_path / f".x.{_HOST}-{dead}-0123abcd.partial.png"
    stale_file.write_text("half")
    with atomic_dir(tmp_path / "out", "reconstruct") as tmp:
        (tmp / "a.txt").write_text("1")
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert remove_stale_partials(tmp_path, "x.png") == [stale_file]


def test_writability_is_checked_without_creating_anything(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file, not a folder"):
        check_writable(blocker / "a" / "b")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # what a non-root user sees in a 0555 folder
    with pytest.raises(InputError, match="no permission to write"):
        check_writable(tmp_path / "new" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_every_verb_checks_its_output_before_any_work(tmp_path, capsys):
    """An output below a file can never be written: each verb says so in one line, at once (no
    network loaded, no photo read; the inputs here would fail later on their own)."""
    bad = tmp_path / "file" / "sub"
    (tmp_path / "file").write_text("x")
    missing = str(tmp_path / "missing")
    verbs = _folder_verbs(bad, missing) + [
        ["render", "--seed", "0", "--out", str(bad / "a.png"), "--network", missing],
        ["video", "--seed", "0", "--out", str(bad / "a.mp4"), "--network", missing],
        ["mesh", "--seed", "0", "--out", str(bad / "a.ply"), "--network", missing],
        ["convert", missing, str(bad / "a.safetensors")],
        ["synth", "preview", "--out", str(bad / "a.png")],
        ["export-snapshot", missing, str(bad / "a.safetensors")],
    ]
    for argv in verbs:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "is a file, not a folder" in err, (argv, err)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def _folder_verbs(out: Path, missing: str) -> list[list[str]]:
    """Every verb that writes a folder, writing ``out``; their other inputs would fail later on
    their own (``missing`` does not exist)."""
    photo = str(REPO / "examples" / "man.jpg")
    verbs = [
        ["reconstruct", photo, "--out", str(out)],
        ["reconstruct-batch", photo, "--out", str(out), "--devices", "cpu"],
        ["generate", "--outdir", str(out)],
        ["synth", "orbit", "--ids", "1", "--out", str(out)],
        ["synth", "dataset", "--n", "1", "--out", str(out)],
        ["dataset", "pack", missing, str(out)],
        ["fk-enhance", "--network", missing, "--out", str(out)],
        ["train", "--data", missing, "--out", str(out)],
        ["finetune", "--network", missing, "--fk", missing, "--data", missing, "--out", str(out), "--kimg", "1"],
    ]
    if _has_face_packages():
        verbs.append(["crop", photo, "--outdir", str(out)])
    return verbs


def _has_option(argv: list[str], option: str) -> bool:
    """Whether the verb of ``argv`` (``synth orbit``: two words) takes ``option``."""
    import argparse

    from psohead.cli import build_parser

    parser = build_parser()
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
    return any(option in a.option_strings for a in parser._actions)


def test_a_users_folder_is_refused_and_overwrite_named_only_where_the_verb_has_it(tmp_path, capsys):
    """Every verb that writes a folder refuses one of the user's at once, leaves it as it was, and
    names --overwrite only where that verb takes it (train said so, and has none)."""
    users = tmp_path / "users"
    before = _users_folder(users)
    offered = []
    for argv in _folder_verbs(users, str(tmp_path / "missing")):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "holds files that psohead did not write" in err, (argv, err)
        assert ("--overwrite" in err) == _has_option(argv, "--overwrite"), (argv, err)
        offered.append("--overwrite" in err)
    assert any(offered) and not all(offered)
    assert _tree(users) == before and sorted(p.name for p in tmp_path.iterdir()) == ["users"]


def _has_face_packages() -> bool:
    try:
        from psohead.preprocess.native import check_installed

        check_installed()
        return True
    except Exception:  # noqa: BLE001 - any missing face package
        return False


def test_reconstruct_cli_never_loses_the_users_files(tiny_crop, tmp_path, capsys):
    crop, net = tiny_crop
    users = tmp_path / "photos"
    before = _users_folder(users)
    assert main(["reconstruct", str(crop), "--out", str(users), "--network", str(net), *FAST]) == 1
    assert "--overwrite" in capsys.readouterr().err and _tree(users) == before
    (tmp_path / "result.txt").write_text("mine")
    assert main(["reconstruct", str(crop), "--out", str(tmp_path / "result.txt"), "--network", str(net), *FAST]) == 1
    assert (tmp_path / "result.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "result.txt"]  # no .old-, no partial

    assert main(["reconstruct", str(crop), "--out", str(users), "--network", str(net), "--overwrite", *FAST]) == 0
    after = _tree(users)
    assert {k: after[k] for k in before} == before and "reconstruction.json" in after
    assert read_marker(users)["verb"] == "reconstruct"


def test_sigterm_is_handled_like_ctrl_c(tmp_path, monkeypatch, capsys):
    """SIGTERM while an output folder is half-written (here `dataset pack`'s): one line, exit 143,
    no partial folder left, and the CLI's handler is gone afterwards."""
    from psohead.io.dataset_writer import DatasetWriter

    src = tmp_path / "src"
    with DatasetWriter(src) as w:
        for i in range(2):
            w.add(f"{i}", np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8), label_from_yaw_pitch(0.0)[0])
    written = []

    def add_then_killed(self, *args):
        written.append(args[0])
        if len(written) == 2:
            assert any(".partial-" in p.name for p in tmp_path.iterdir())  # the half-written folder
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
            pytest.fail("SIGTERM was not handled")
        return add(self, *args)

    add = DatasetWriter.add
    monkeypatch.setattr(DatasetWriter, "add", add_then_killed)
    handler = signal.getsignal(signal.SIGTERM)
    assert main(["dataset", "pack", str(src), str(tmp_path / "packed")]) == 143
    assert "psohead dataset: terminated (SIGTERM)" in capsys.readouterr().err.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"] and signal.getsignal(signal.SIGTERM) == handler


def test_sigterm_from_outside_stops_a_real_process_cleanly(tmp_path):
    """`timeout` and `kill` send SIGTERM to the psohead process itself: the CLI entry point handles it."""
    out = tmp_path / "gen"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "psohead", "generate", "--seeds", "0-2000", "--yaw", "0",
                             "--outdir", str(out), "--quiet"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("seed*.png")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 143
    finally:
        proc.kill()
    assert proc.stderr.read().strip() == "psohead generate: terminated (SIGTERM)"
    assert not [p for p in out.iterdir() if ".partial" in p.name]
