"""Loaded by every Python that bench/push_trace.py starts (it is first on their PYTHONPATH): in the pre-receive
hook's process only, it records each call from one of minipaas' layers into another (Python's profiler hook, on
every thread), and writes them to MINIPAAS_TRACE_OUT when the hook ends. Nothing of minipaas is changed for it."""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading

_OUT = os.environ.get("MINIPAAS_TRACE_OUT")
_HOOK = sys.argv[0].endswith("pre-receive")  # not the watcher, the retirer or git's other children

if _OUT and _HOOK:
    _PACKAGE = os.sep + "minipaas" + os.sep
    _layers: dict[str, str | None] = {}
    _seen: dict[tuple[str, str], list[object]] = {}  # (caller layer, callee layer) -> [first index, count, example]
    _order: list[str] = []  # layers as first entered from another layer
    _entries: dict[str, int] = {}  # `layer/module.py:function` -> calls into it from another layer

    def _layer(filename: str) -> str | None:
        found = _layers.get(filename, "")
        if found != "":
            return found
        at = filename.rfind(_PACKAGE)
        # minipaas' own files only (not /opt/minipaas/venv's libraries): the folder holds the package's __init__.py.
        if at < 0 or not os.path.exists(filename[:at + len(_PACKAGE)] + "__init__.py"):
            layer = None
        else:
            parts = filename[at + len(_PACKAGE):].split(os.sep)
            layer = parts[0] if len(parts) > 1 else "(base)"  # errors.py, progress.py, faultpoints.py
        _layers[filename] = layer
        return layer

    def _profile(frame, event, arg):  # type: ignore[no-untyped-def]
        if event != "call":
            return
        callee = _layer(frame.f_code.co_filename)
        caller_frame = frame.f_back
        if callee is None or caller_frame is None:
            return
        caller = _layer(caller_frame.f_code.co_filename)
        if caller is None or caller == callee:
            return
        key = (caller, callee)
        function = f"{frame.f_code.co_filename.rsplit(_PACKAGE, 1)[-1]}:{frame.f_code.co_name}"
        _entries[function] = _entries.get(function, 0) + 1
        entry = _seen.get(key)
        if entry is None:
            where = f"{caller_frame.f_code.co_filename.rsplit(_PACKAGE, 1)[-1]}:{caller_frame.f_code.co_name} → " \
                    f"{frame.f_code.co_filename.rsplit(_PACKAGE, 1)[-1]}:{frame.f_code.co_name}"
            _seen[key] = [len(_seen), 1, where]
            if callee not in _order:
                _order.append(callee)
        else:
            entry[1] += 1  # type: ignore[operator]

    def _write() -> None:
        sys.setprofile(None)
        with open(f"{_OUT}.{os.getpid()}", "w", encoding="utf-8") as out:
            json.dump({"order": _order, "entries": _entries,
                       "calls": [[a, b, *entry] for (a, b), entry in sorted(_seen.items(), key=lambda kv: kv[1][0])]},
                      out)

    atexit.register(_write)
    sys.setprofile(_profile)
    threading.setprofile(_profile)
