"""Start-up of the ``ppad`` command, before and after its options stopped importing PyTorch.

Run: python benchmarks/cli_startup.py [--repeats 3] [--films 50] [--model MODEL.onnx]

Each case runs in a fresh interpreter, timed from start to exit, its peak resident memory read
from the operating system (``wait4``). "before" first imports what ``ppad.cli.options`` imported
before issue 19 (the backbones, maps, presets, regions, runs and training modules: PyTorch,
open_clip, scikit-learn), which reproduces the old start-up in the same run; "after" is the
command as it is. Cases: ``ppad train --help``, an option error (``ppad train --epochs 0``) and
``ppad score --onnx`` on ``--films`` real ZhangLab films, scored with a ``knn`` run on cxr-lite
exported to ONNX (made once, in a temporary folder, unless ``--model`` names one; skipped when
the films are absent).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZHANGLAB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "zhanglab"
OLD_OPTION_IMPORTS = (
    "import ppad.backbones, ppad.maps, ppad.methods.presets, ppad.regions, ppad.runs, ppad.training.loop"
)
RUN_CLI = "import sys; from ppad.cli.main import cli; cli(sys.argv[1:], prog_name='ppad')"


def measure(prelude: str, args: list[str], expected_exit: int, repeats: int, out: Path | None) -> tuple[float, float]:
    """Median wall seconds and largest peak RSS (MiB) of ``ppad ARGS`` in a fresh interpreter
    that first runs ``prelude``; the scores CSV ``out`` (and its sidecars) is deleted before each run."""
    times, peaks = [], []
    for _ in range(repeats):
        for stale in out.parent.glob(out.stem + ".*") if out else ():
            stale.unlink()
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", f"{prelude}; {RUN_CLI}", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(child.pid, 0)
        times.append(time.perf_counter() - start)
        peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
        if os.waitstatus_to_exitcode(status) != expected_exit:
            raise SystemExit(f"ppad {' '.join(args[:2])} exited {os.waitstatus_to_exitcode(status)}")
    return statistics.median(times), max(peaks)


def ppad(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "ppad.cli.main", *map(str, args)], check=True, capture_output=True)


def exported_knn_run(folder: Path, films: int, model: Path | None) -> tuple[Path, list[Path]]:
    """``model``, or else a ``knn`` run on 24 real train normals with cxr-lite, exported; with
    ``films`` real test films (half normal, half pneumonia)."""
    from ppad.data import discover, write_manifest

    subset = discover(ZHANGLAB).subset(24, films // 2)
    if model is not None:
        return model, [item.path for item in subset.test]
    write_manifest(subset, folder / "films.csv")
    run = ["--method", "knn", "--shots", 16, "--val-size", 8, "--device", "cpu", "--quiet"]
    ppad("train", "--data", folder / "films.csv", "--out", folder / "run", *run)
    ppad("export", "--run", folder / "run", "--out", folder / "model.onnx")
    return folder / "model.onnx", [item.path for item in subset.test]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--films", type=int, default=50)
    parser.add_argument("--model", type=Path, default=None, help="A `ppad export` model (default: export one here).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = {
            "ppad train --help": (["train", "--help"], 0, None),
            "ppad train --epochs 0 (option error)": (["train", "--epochs", "0", "--data", tmp, "--out", tmp], 2, None),
        }
        if ZHANGLAB.is_dir():
            model, films = exported_knn_run(folder, args.films, args.model)
            out = folder / "scores.csv"
            scoring = ["score", "--onnx", str(model), *map(str, films), "--out", str(out), "--quiet"]
            cases[f"ppad score --onnx ({len(films)} films)"] = (scoring, 0, out)
        print(f"{'case':<40} {'before':>22} {'after':>22}  ratio (time, memory)")
        for name, (cli_args, expected_exit, out) in cases.items():
            before = measure(OLD_OPTION_IMPORTS, cli_args, expected_exit, args.repeats, out)
            after = measure("pass", cli_args, expected_exit, args.repeats, out)
            cells = [f"{seconds:6.2f} s {mib:7.0f} MiB" for seconds, mib in (before, after)]
            ratio = f"{before[0] / after[0]:.1f}×, {before[1] / after[1]:.1f}×"
            print(f"{name:<40} {cells[0]:>22} {cells[1]:>22}  {ratio}")
        print(f"(median wall time and largest peak RSS of {args.repeats} fresh interpreters each)")


if __name__ == "__main__":
    main()
