"""Prometheus-style ``/metrics``: requests by endpoint, method and status, a latency histogram per
endpoint, and gauges read from the database (open cases by kind, open tasks, overdue cases).

Counters live in the process (each gunicorn worker has its own; scrape each worker or sum them).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import func, select

from api.http import runtime
from engine.store.models import case, human_task, sla_clock

HIST = "gridcase_http_request_duration_seconds"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

bp = Blueprint("metrics", __name__)


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, status)] += 1
            row = self.buckets[endpoint]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    row[i] += 1
            self.sums[endpoint] += seconds
            self.counts[endpoint] += 1

    def render(self) -> list[str]:
        lines = [
            "# HELP gridcase_http_requests_total HTTP requests by endpoint, method and status.",
            "# TYPE gridcase_http_requests_total counter",
        ]
        with self._lock:
            for (endpoint, method, status), n in sorted(self.requests.items()):
                labels = f'endpoint="{endpoint}",method="{method}",status="{status}"'
                lines.append(f"gridcase_http_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP gridcase_http_request_duration_seconds Request latency by endpoint.",
                "# TYPE gridcase_http_request_duration_seconds histogram",
            ]
            for endpoint in sorted(self.counts):
                for bound, n in zip(BUCKETS, self.buckets[endpoint], strict=True):
                    lines.append(f'{HIST}_bucket{{endpoint="{endpoint}",le="{bound}"}} {n}')
                total = self.counts[endpoint]
                lines.append(f'{HIST}_bucket{{endpoint="{endpoint}",le="+Inf"}} {total}')
                lines.append(f'{HIST}_sum{{endpoint="{endpoint}"}} {self.sums[endpoint]:.6f}')
                lines.append(f'{HIST}_count{{endpoint="{endpoint}"}} {total}')
        return lines


def _gauges() -> list[str]:
    rt = runtime()
    with rt.db.read() as conn:
        open_cases = conn.execute(
            select(case.c.kind, func.count()).where(case.c.status == "open").group_by(case.c.kind)
        ).all()
        open_tasks = conn.execute(select(func.count()).where(human_task.c.state == "ready")).scalar_one()
        overdue = conn.execute(
            select(func.count(func.distinct(sla_clock.c.case_id))).where(
                sla_clock.c.state == "running", sla_clock.c.due_at < rt.now()
            )
        ).scalar_one()
    lines = ["# HELP gridcase_cases_open Open cases by kind.", "# TYPE gridcase_cases_open gauge"]
    lines += [f'gridcase_cases_open{{kind="{kind}"}} {n}' for kind, n in open_cases]
    lines += ["# HELP gridcase_tasks_open Ready human tasks.", "# TYPE gridcase_tasks_open gauge"]
    lines.append(f"gridcase_tasks_open {open_tasks}")
    lines += [
        "# HELP gridcase_cases_overdue Cases with a running SLA clock past due.",
        "# TYPE gridcase_cases_overdue gauge",
    ]
    lines.append(f"gridcase_cases_overdue {overdue}")
    return lines


@bp.get("/metrics")
def metrics() -> Response:
    from flask import current_app

    registry: Metrics = current_app.extensions["gridcase.metrics"]
    body = "\n".join([*registry.render(), *_gauges()]) + "\n"
    return Response(body, mimetype="text/plain; version=0.0.4")


def init_app(app: Flask) -> None:
    registry = Metrics()
    app.extensions["gridcase.metrics"] = registry

    @app.before_request
    def _start() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None and request.endpoint != "metrics.metrics":
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            registry.observe(rule, request.method, response.status_code, time.perf_counter() - started)
        return response

    app.register_blueprint(bp)
