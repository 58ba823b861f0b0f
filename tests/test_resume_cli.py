"""Resume as a user does it: kill `ppad train` mid-run, run the identical command again."""

from __future__ import annotations

import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from ppad.runs import PROMPT_FILES, RunFolder


def _command(data, out, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ppad.cli.main",
        "train",
        "--backbone",
        "tiny",
        "--data",
        str(data),
        "--out",
        str(out),
        "--shots",
        "8",
        "--val-size",
        "4",
        "--batch-size",
        "4",
        "--epochs",
        str(epochs),
        "--n-ctx",
        "4",
        "--seed",
        "5",
        "--quiet",
        "--device",
        "cpu",
    ]


def _epochs_done(out) -> int:
    try:
        return RunFolder(out).load_state().epoch
    except Exception:  # noqa: BLE001 - not written yet
        return 0


def test_killed_train_resumes_to_the_uninterrupted_result(demo_data, tmp_path):
    epochs = 12
    straight = subprocess.run(_command(demo_data, tmp_path / "straight", epochs), capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen(_command(demo_data, out, epochs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _epochs_done(out) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait()
    done = _epochs_done(out)
    assert 2 <= done < epochs, "the run was not interrupted mid-way"

    again = subprocess.run(_command(demo_data, out, epochs), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr  # the identical command is a resume, not a conflict
    assert f"resuming {out} at epoch {done + 1} of {epochs}" in again.stderr  # said in one line, not only a bar
    assert _epochs_done(out) == epochs
    for name in PROMPT_FILES.values():
        a, b = load_file(str(tmp_path / "straight" / name)), load_file(str(out / name))
        assert set(a) == set(b)
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-5)

    changed = subprocess.run(_command(demo_data, out, epochs + 1), capture_output=True, text=True)
    assert changed.returncode == 2 and "different settings" in changed.stderr
