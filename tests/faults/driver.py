"""The nightly chain as `duizhang run` runs it (`pipeline.run`), in its own process, telling the fault suite when
each stage starts and ends, so that a test can kill it at a chosen point inside a stage.

    python tests/faults/driver.py CHANNEL DATE SOURCE LEDGER WORKDIR [FIRST_STAGE [LAST_STAGE]]

FIRST_STAGE: the stages before it are taken as done (skipped), as Airflow retries a failed task and what follows;
LAST_STAGE: the stages after it are skipped too.
Each stage prints one JSON line on stdout when it starts and when it ends (`{"stage": .., "event": "start"}`);
with FAULTS_PAUSE=1 in the environment it first prints `ready` and waits for a line on stdin (the suite copies the
state between two stages then). Every rename of a finished temporary file into place (`os.replace` of a `.tmp` or
`.part`) prints a `replace` event; with FAULTS_KILL_AT_REPLACE=N the process kills itself (SIGKILL) at the N-th
one, the file written whole and not yet in place;
a failure prints `{"event": "error", "type": .., "transient": .., "terminal": .., "errno": .., "message": ..}` and
exits 75 for a Transient error (retry later), 65 for a Terminal one, 1 for anything else (untyped: a bug).
The stages are wrapped where `pipeline.run` looks them up (module attributes), so the chain is the product's own.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

WRITING = (".tmp", ".part")
STAGES = ("fetch", "parse", "validate", "load_ledger", "match", "answer", "clear", "deliver", "report")
EXIT_TRANSIENT, EXIT_TERMINAL, EXIT_UNTYPED = 75, 65, 1


def say(**event) -> None:
    print(json.dumps(event | {"t": time.monotonic()}, default=str), flush=True)


def marked(name: str, fn, first: str | None, last: str | None):
    @functools.wraps(fn)
    def stage(*args, **kwargs):
        if name == first:
            reached.add("first")
        if (first and "first" not in reached) or "last" in reached:
            say(stage=name, event="skipped")
            return None
        if name == last:
            reached.add("last")
        if os.environ.get("FAULTS_PAUSE") == "1":
            say(stage=name, event="ready")
            sys.stdin.readline()
        say(stage=name, event="start")
        running.append(name)
        result = fn(*args, **kwargs)
        running.pop()
        say(stage=name, event="end")
        return result
    return stage


reached: set[str] = set()
running: list[str] = []
_os_replace = os.replace
_replaced = [0]


def replace(src, dst, *args, **kwargs):
    """`os.replace`, telling each temporary file put in place, and dying at the chosen one."""
    if str(src).endswith(WRITING) and running:
        _replaced[0] += 1
        say(stage=running[-1], event="replace", target=os.path.basename(dst), n=_replaced[0])
        if _replaced[0] == int(os.environ.get("FAULTS_KILL_AT_REPLACE") or 0):
            os.kill(os.getpid(), signal.SIGKILL)
    return _os_replace(src, dst, *args, **kwargs)


def main(channel: str, date: str, source: str, ledger: str, workdir: str, first: str | None = None,
         last: str | None = None) -> int:
    from duizhang import pipeline, quality
    from duizhang.workdir import Workdir
    from formats.errors import Terminal, Transient
    for name in STAGES:
        module = quality if name == "validate" else pipeline   # `run` imports validate from duizhang.quality
        if hasattr(module, name):
            setattr(module, name, marked(name, getattr(module, name), first, last))
    os.replace = replace
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    try:
        pipeline.run(channel, dt.date.fromisoformat(date), source, ledger, Workdir(workdir))
    except Exception as e:
        say(event="error", type=f"{type(e).__module__}.{type(e).__name__}", transient=isinstance(e, Transient),
            terminal=isinstance(e, Terminal), errno=_errno(e), message=str(e))
        return EXIT_TRANSIENT if isinstance(e, Transient) else EXIT_TERMINAL if isinstance(e, Terminal) else EXIT_UNTYPED
    say(event="done")
    return 0


def _errno(e: BaseException | None) -> int | None:
    """The OS error number of `e` or of the error it was raised from (ENOSPC under a pyarrow or SQLite error)."""
    while e is not None:
        if isinstance(e, OSError) and e.errno:
            return e.errno
        e = e.__cause__ or e.__context__
    return None


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
