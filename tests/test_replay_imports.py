"""A replay's start-up pays only for what it uses: pandas (for DataFrames of forecasts and
the report) and apprise (for an Apprise sink) are imported by those, not by the replay."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT


def test_the_replay_imports_neither_pandas_nor_apprise() -> None:
    probe = ("import sys, cli.main, engine.replay, engine.cycle, engine.history, "
             "engine.monitoring.summary.build, engine.monitoring.sink_config; "
             "print(sorted(m for m in ('pandas', 'apprise') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_forecasts_still_come_as_a_dataframe() -> None:
    import pandas as pd

    from engine.portfolio.config import ConstructionConfig
    from engine.portfolio.constructor import build_targets

    frame = pd.DataFrame([{"symbol": "AAA", "price": 10.0, "expected_return": 0.05,
                           "volatility": 0.2, "frs": 0.9},
                          {"symbol": "BBB", "price": pd.NA, "expected_return": 0.05,
                           "volatility": 0.2, "frs": 0.9}])
    result = build_targets(frame, ConstructionConfig())
    assert set(result.targets) == {"AAA"}
    assert result.excluded == {"BBB": "price is missing"}
