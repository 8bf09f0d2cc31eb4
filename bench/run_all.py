"""Runs every benchmark in turn: `make bench` (pass --quick for a shorter run)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SCRIPTS = ("cache_hit.py", "signing_cost.py", "trace_log.py", "http_hot.py", "cold_resolve.py",
           "register_batch.py")

if __name__ == "__main__":
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *sys.argv[1:]], check=True, cwd=HERE)
