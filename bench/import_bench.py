"""Import benchmark: a whole ``python -c "import wmspanel_async"`` against ``import httpx``.

    python bench/import_bench.py            # about 20 s; prints a table
    python bench/import_bench.py --runs 31

Each command runs as a whole new process (interpreter start-up included, as a user's script
pays it) in an empty directory, so that the package comes from wherever this Python finds it
(the editable install, or ``PYTHONPATH``). The commands run once each to warm the bytecode
caches, then ``--runs`` times each in interleaved rounds (in a rotated order), so that a
neighbour's burst of CPU falls on all of them alike. The table shows the median wall time and
the median CPU time (user + system, from the children's rusage) of each; the ratio the issue
names is the medians' of wall time. ``python -c pass`` is there for orientation: what the
interpreter costs before anything is imported. Last, one ``-X importtime`` run lists the
modules ``import wmspanel_async`` loads beyond ``import httpx``'s, the most costly first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import httpx": ["-c", "import httpx"],
    "import wmspanel_async": ["-c", "import wmspanel_async"],
    "wmspanel-async --help": ["-m", "wmspanel_async.cli", "--help"],
}
GOAL = 1.3  # import wmspanel_async at most this many times import httpx, whole process

# pip compiles an installed package's bytecode at install; an editable checkout gets it at
# its first import, unless PYTHONDONTWRITEBYTECODE is set (as on this machine), when every
# import compiles our modules again (~8 ms) and none of httpx's: a user never pays that.
ENVIRONMENT = {
    name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"
}


def run_once(arguments: list[str], cwd: str) -> tuple[float, float]:
    """Run ``python *arguments``; return its wall and CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # No timeout: with one, Python waits for the child by polling, in sleeps of up to 50 ms.
    subprocess.run(
        [sys.executable, *arguments],
        cwd=cwd,
        env=ENVIRONMENT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def imported(statement: str, cwd: str) -> dict[str, tuple[int, int]]:
    """Return ``{module: (self µs, cumulative µs)}`` of one ``-X importtime`` run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        cwd=cwd,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        modules[name.strip()] = (int(own), int(cumulative))
    return modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    parser.add_argument("--top", type=int, default=12, help="modules to list beyond httpx's")
    args = parser.parse_args()

    started = time.monotonic()
    names = list(COMMANDS)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="import-bench-") as cwd:
        for name in names:  # warm the bytecode caches
            run_once(COMMANDS[name], cwd)
        for index in range(args.runs):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(run_once(COMMANDS[name], cwd))
        ours = imported("import wmspanel_async", cwd)
        theirs = imported("import httpx", cwd)
        where = subprocess.run(
            [sys.executable, "-c", "import wmspanel_async; print(wmspanel_async.__file__)"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def wall(name: str) -> float:
        return statistics.median(w for w, _ in times[name])

    def cpu(name: str) -> float:
        return statistics.median(c for _, c in times[name])

    interpreter = wall("python -c pass")
    lines = [
        "",
        f"import benchmark: whole process, median of {args.runs} interleaved runs each, "
        f"Python {sys.version.split()[0]}",
        f"wmspanel_async from {where}",
        "",
        "| command | wall ms | CPU ms | vs import httpx | above the interpreter, ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {wall(name) * 1000:.1f} | {cpu(name) * 1000:.1f} "
            f"| {wall(name) / wall('import httpx'):.2f}x "
            f"| {(wall(name) - interpreter) * 1000:.1f} |"
        )
    ratio = wall("import wmspanel_async") / wall("import httpx")
    lines += [
        "",
        f"import wmspanel_async / import httpx: {ratio:.2f}x wall, "
        f"{cpu('import wmspanel_async') / cpu('import httpx'):.2f}x CPU; goal <= {GOAL}x: "
        f"{'met' if ratio <= GOAL else 'NOT met'}",
        f"wmspanel-async --help / import httpx: "
        f"{wall('wmspanel-async --help') / wall('import httpx'):.2f}x wall",
        "",
        f"modules import wmspanel_async loads beyond import httpx's (one -X importtime run, "
        f"{len(set(ours) - set(theirs))} modules, "
        f"{sum(ours[m][0] for m in set(ours) - set(theirs)) / 1000:.1f} ms of their own):",
    ]
    extra = sorted(set(ours) - set(theirs), key=lambda m: ours[m][0], reverse=True)
    lines += [
        f"  {ours[m][0] / 1000:6.1f} ms own, {ours[m][1] / 1000:6.1f} ms with what it imports: {m}"
        for m in extra[: args.top]
    ]
    lines.append(f"(took {time.monotonic() - started:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
