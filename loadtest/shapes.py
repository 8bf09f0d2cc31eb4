"""A stepped ramp for locust: add this file to -f and give --steps (defined in locustfile.py).

    .venv/bin/locust -f loadtest/locustfile.py,loadtest/shapes.py --headless \\
        --host http://127.0.0.1:8080 --steps 20x60s,80x60s,200x120s,80x60s

Each step is USERSxSECONDS: hold that many users for that long (reaching them at
--spawn-rate, default: within two seconds), then the next step; the run ends after the last.
With the per-user rates (--scan-rate, --mes-rate) each step is an offered load of
users × rate. Without --steps the shape stops at once: use -u/-r instead, or leave this file
out of -f.
"""
from __future__ import annotations

from locust import LoadTestShape

from mix import parse_steps


class StepShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        opts = self.runner.environment.parsed_options
        steps = parse_steps(getattr(opts, "steps", "") or "")
        t = self.get_run_time()
        for users, seconds in steps:
            if t < seconds:
                rate = getattr(opts, "spawn_rate", None) or max(1.0, users / 2)
                return users, float(rate)
            t -= seconds
        return None
