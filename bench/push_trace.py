#!/usr/bin/env python3
"""One push of examples/hello, traced: which of minipaas' layers the pre-receive hook enters, in which order, and
whether any call goes up a layer (import-linter checks imports; a callback passed down could still call upward).

A warm push (the first one builds the dependencies), then a source change pushed with bench/tracer/ first on the
hook's PYTHONPATH: its sitecustomize records every call from one layer into another in the hook's process (its
threads too) and writes them when the hook ends. Prints the layers in the order the push first enters them, and
each (caller layer → callee layer) pair with its first call, how many calls, and UP where the callee is above.

    /opt/minipaas/venv/bin/python bench/push_trace.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from harness import bench_host, commit, log, machine, new_marker, set_marker, timed_push

# pyproject.toml's layers, top first; (base) is errors.py, progress.py and faultpoints.py, under everything.
LAYERS = ("cli", "dashboard", "ssh", "host", "running", "deploy", "addons", "cluster", "routing", "build",
          "access", "source", "state", "adapters", "(base)")
SAME_LEVEL = ({"dashboard", "ssh"}, {"build", "access"})
TRACER = Path(__file__).resolve().parent / "tracer"
# What reads the pushed commit's Procfile, package.json, app.json and CHECKS (issue 23: once per push).
READERS = ("source/commit.py", "adapters/gitrepo.py")


def rank(layer: str) -> int:
    for group in SAME_LEVEL:
        if layer in group:
            return min(LAYERS.index(other) for other in group)
    return LAYERS.index(layer) if layer in LAYERS else len(LAYERS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with bench_host() as host, tempfile.TemporaryDirectory(prefix="mptrace-") as tmp:
        app = host.create_app("trace")
        checkout = host.checkout(app)
        commit(checkout, "first")
        if timed_push(checkout, "master", env=host.env).returncode != 0:
            raise SystemExit("the first push failed")
        set_marker(checkout, new_marker())
        commit(checkout, "a source change")
        out = Path(tmp) / "trace"
        env = {**host.env, "MINIPAAS_TRACE_OUT": str(out),
               "PYTHONPATH": os.pathsep.join(p for p in (str(TRACER), host.env.get("PYTHONPATH", "")) if p)}
        push = timed_push(checkout, "master", env=env)
        if push.returncode != 0:
            raise SystemExit(f"the traced push failed:\n{push.text}")
        files = sorted(Path(tmp).glob("trace.*"))
        if len(files) != 1:
            raise SystemExit(f"expected one trace of the hook, found {len(files)}")
        trace = json.loads(files[0].read_text())
    up = [call for call in trace["calls"] if rank(call[1]) < rank(call[0])]
    print(f"\n{machine()}; one warm push of examples/hello ({push.seconds:.2f} s traced)\n")
    print("Layers in the order the push first enters them (from another layer): " + " → ".join(trace["order"]))
    print("\n| caller → callee | first call | calls | direction |\n|---|---|---|---|")
    for caller, callee, _, count, where in trace["calls"]:
        direction = "UP" if rank(callee) < rank(caller) else "down" if rank(callee) > rank(caller) else "across"
        print(f"| {caller} → {callee} | `{where}` | {count} | {direction} |")
    print(f"\n{len(up)} upward call{'s' if len(up) != 1 else ''} of {len(trace['calls'])} pairs")
    reads = {name: n for name, n in trace["entries"].items() if name.split(":")[0] in READERS}
    print("The commit's files read (calls from another layer): "
          + ", ".join(f"`{name}` {n}x" for name, n in sorted(reads.items())))
    if args.json:
        args.json.write_text(json.dumps({**trace, "up": up}, indent=2))
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
