"""The examples in examples/ run as documented and say what they claim (they read data/
only, never the network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(script: str) -> list[str]:
    done = subprocess.run([sys.executable, str(EXAMPLES / script)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.slow
def test_the_plugin_monitor_example() -> None:
    out = run("plugin_monitor.py")
    assert out[0] == "contract: 9 properties kept"
    assert out[2] == "suite file entry: type=mean_shift column=AGEP"
    assert out[-1].startswith("over-30s only: critical: mean of AGEP moved")


@pytest.mark.slow
def test_the_rules_suite_example() -> None:
    out = run("rules_suite.py")
    assert "clean batch: no rule violated beyond the reference's rate" in out
    (changed,) = [line for line in out if line.startswith("threshold changed:")]
    assert "warning rule prediction_follows_score: " in changed
    (missing,) = [line for line in out if line.startswith("MAR missing:")]
    assert "rule_not_evaluated spouse_is_married" in missing
