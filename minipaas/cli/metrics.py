"""Per-release metrics as nginx counted them: `metrics APP [--json]`."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, print_json, say, table


def _ms(value: object) -> str:
    if value is None:
        return "-"
    ms = float(str(value))
    return f"{ms:.1f}ms" if ms < 1000 else f"{ms / 1000:.2f}s"


@click.command("metrics")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def metrics_show(app: str, as_json: bool) -> None:
    """Each routed release of an app: its weight, requests/s, 5xx share and p50/p95/p99 latency (the app's
    response time, as nginx measured it) over the last 1, 5 and 15 minutes."""
    from minipaas.routing import metrics

    host = current_host()
    found = metrics.of_app(host.settings, existing_app(app))
    if as_json:
        print_json(found)
        return
    if not found:
        say(f"{app} takes no traffic now (no release is routed): nothing to measure")
        return
    lines = []
    for row in found:
        for window, figures in row["windows"].items():  # type: ignore[attr-defined]
            lines.append([row["release"], f"{row['weight']}%", window, f"{figures['rate']:.2f}",
                          f"{figures['errors'] * 100:.2f}%", _ms(figures["p50_ms"]), _ms(figures["p95_ms"]),
                          _ms(figures["p99_ms"])])
    table(lines, ["RELEASE", "WEIGHT", "LAST", "REQ/S", "5XX", "P50", "P95", "P99"])
