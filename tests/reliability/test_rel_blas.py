"""The BLAS setting of the machine: with ``OPENBLAS_CORETYPE=Haswell`` set and unset, the
same short run draws a smoothed history whose values are the trailing mean of its own
step losses (never a comparison of two rounding noises), smoothed over at least 5 steps.

A machine's OpenBLAS kernel decides the last bits of the losses; these tests assert what
holds whatever those bits are.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import default_signals, subprocess_env

# 40 steps: under the old 2%-of-the-steps rule this got a window of 1 (no smoothing).
RUN = ["--model", "softmax", "--limit", "2000", "--val-size", "100", "--epochs", "2",
       "--batch-size", "100", "--quiet"]

PROBE = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import numpy as np
from mnistkit.plots import history_figure, load_curves, smoothing_window
curves = load_curves([sys.argv[1]])
fig = history_figure(curves)
raw, smooth = fig.axes[0].lines[:2]
print(json.dumps({"raw": list(map(float, raw.get_ydata())),
                  "smooth": list(map(float, smooth.get_ydata())),
                  "window": smoothing_window(len(raw.get_ydata()))}))
"""


def _env(coretype: str | None) -> dict[str, str]:
    env = subprocess_env()
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    return env


@pytest.mark.parametrize("coretype", [None, "Haswell"], ids=["unset", "Haswell"])
def test_short_runs_are_smoothed_whatever_the_blas_kernel(tmp_path, coretype):
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "mnistkit", "train", *RUN, "--out", str(out)],
                   env=_env(coretype), check=True, timeout=120, preexec_fn=default_signals,
                   capture_output=True)
    probe = subprocess.run([sys.executable, "-c", PROBE, str(out)], env=_env(coretype),
                           check=True, timeout=120, capture_output=True, text=True,
                           preexec_fn=default_signals)
    drawn = json.loads(probe.stdout)
    raw = np.array(drawn["raw"])
    assert len(raw) == 40 and drawn["window"] >= 5
    trailing = [raw[max(0, i - drawn["window"] + 1):i + 1].mean() for i in range(len(raw))]
    assert np.allclose(drawn["smooth"], trailing, rtol=1e-12, atol=0)
    # Smoothing really happened: far from the raw curve, not a rounding difference.
    assert np.abs(np.array(drawn["smooth"]) - raw).max() > 1e-3
    steps = np.loadtxt(out / "steps.csv", delimiter=",", skiprows=1)
    assert np.array_equal(steps[:, 2], raw)
