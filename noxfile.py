"""Every check the project has: `nox` runs tests, lint, typecheck and docs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

# uv installs a session's packages in seconds where pip takes half a minute (the README's
# command installs it with nox: "nox[uv]"); plain venv and pip where it is missing.
nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "tests_bare", "tests_lowest", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
#: Every version each check installs, for Python 3.10-3.13, every extra and every group:
#: a release of a dependency reaches the checks when `nox -s lock` takes it in, not the day
#: it appears. pip reads it as a constraints file, so a fresh machine needs nothing but pip.
LOCK = "requirements/constraints.txt"
#: The lowest version of each runtime dependency and extra that pyproject.toml allows (and
#: of the test tools), resolved for the oldest Python we support.
LOWEST_LOCK = "requirements/lowest.txt"
EXTRAS = ",".join(PYPROJECT["project"]["optional-dependencies"])
#: From the classifiers, so that pyproject.toml says once which Pythons we support.
SUPPORTED_PYTHONS = nox.project.python_versions(PYPROJECT)


def _runs(python: str) -> bool:
    # pyenv puts shims for every installed version on PATH, even inactive ones, so finding
    # the command is not enough: it has to start.
    try:
        return (
            subprocess.run(
                [f"python{python}", "-c", ""], capture_output=True, check=False
            ).returncode
            == 0
        )
    except OSError:
        return False


# On a machine without some of these Pythons the suite runs on those it finds, even with CI
# set (where nox would otherwise fail on a missing interpreter).
PYTHONS = [python for python in SUPPORTED_PYTHONS if _runs(python)] or None
#: The Python that runs the whole suite, with coverage; the others skip the tests marked
#: `heavy` (real servers, subprocesses, property searches), which test no version-specific
#: code of ours, to keep CI well under 15 minutes.
FULL_SUITE_PYTHON = PYTHONS[-1] if PYTHONS else None
OLDEST_PYTHON = PYTHONS[0] if PYTHONS else None
#: The tests that every Python runs, and the lowest and newest versions too.
FAST_TESTS = ["--no-cov", "-m", "not heavy"]


def _groups(*names: str) -> list[str]:
    return [req for name in names for req in nox.project.dependency_groups(PYPROJECT, name)]


def _install_locked(session: nox.Session, *args: str) -> None:
    session.install("-c", LOCK, *args)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite; on the newest Python all of it, with branch coverage (95 %+)."""
    _install_locked(session, "-e", ".[cli,testing]", *_groups("test"))
    if session.python == FULL_SUITE_PYTHON:
        options = ["--cov", "--cov-report=term", "--cov-fail-under=95"]
    else:
        options = FAST_TESTS
    session.run("pytest", *options, *session.posargs)


@nox.session(python=None)
def tests_bare(session: nox.Session) -> None:
    """Run the fast tests on the bare install (no extras), so a missing optional import shows.

    Tests of the command line skip themselves there: it is what the ``cli`` extra adds.
    """
    _install_locked(session, ".", *_groups("test"))
    session.run("python", "-c", "import wmspanel_async, wmspanel_async.testing")
    # The fast tests import every module; the heavy ones (real servers) add nothing here
    # but minutes, except the one that runs the command without its extra.
    session.run("pytest", *FAST_TESTS, "-q", *session.posargs)
    session.run("pytest", "--no-cov", "-q", "tests/test_bare_install.py")


@nox.session(python=OLDEST_PYTHON)
def tests_lowest(session: nox.Session) -> None:
    """Run the fast tests on the lowest versions pyproject.toml allows, on the oldest Python.

    A minimum we claim is a minimum we test: raise it in pyproject.toml (then ``nox -s lock``)
    where this fails.
    """
    session.install("-c", LOWEST_LOCK, "-e", f".[{EXTRAS}]", *_groups("test"))
    session.run("pytest", *FAST_TESTS, *session.posargs)


@nox.session(python=FULL_SUITE_PYTHON)
def tests_latest(session: nox.Session) -> None:
    """Run the fast tests and the type check on the newest release of everything.

    Not in the default set: a release that breaks us shows here the day it appears, as a
    warning, while the locked checks stay green until ``nox -s lock`` takes it in.
    """
    everything = ["-e", f".[{EXTRAS}]", *_groups("test", "typecheck")]
    # uv's --upgrade takes the newest of everything; pip's needs the eager strategy for it.
    eager = [] if session.venv_backend == "uv" else ["--upgrade-strategy", "eager"]
    session.install("--upgrade", *eager, *everything)
    session.run("pytest", *FAST_TESTS, *session.posargs)
    session.run("mypy", "--strict", "wmspanel_async", "tests/typing")


@nox.session(python=OLDEST_PYTHON)
def lock(session: nox.Session) -> None:
    """Resolve the lock files again from pyproject.toml: run it after changing a requirement.

    uv resolves once for every Python from 3.10 on (``--universal``), with markers where a
    version differs, and in seconds; the checks then install with plain pip.
    """
    _install_locked(session, *_groups("lock"))
    compile_ = [
        "uv", "pip", "compile", "pyproject.toml", "--all-extras", "--quiet",
        f"--python-version={SUPPORTED_PYTHONS[0]}", "--custom-compile-command=nox -s lock",
    ]  # fmt: skip
    every_group = [f"--group={name}" for name in PYPROJECT["dependency-groups"]]
    session.run(*compile_, *every_group, "--universal", f"--output-file={LOCK}")
    session.run(
        *compile_, "--group=test", "--resolution=lowest-direct", "--no-annotate",
        f"--output-file={LOWEST_LOCK}",
    )  # fmt: skip


@nox.session(python=None)
def soak(session: nox.Session) -> None:
    """Poll 200 targets through a faulty server for 10 minutes, checking for slow leaks.

    Pass options after ``--``, for example ``nox -s soak -- --minutes 1``.
    """
    _install_locked(session, "-e", ".[cli,testing]", *_groups("test"))
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    _install_locked(session, *_groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """Type-check the package (strict), the typing examples, and the public API's types.

    pyright's --verifytypes reads the package as users get it, so it is installed here,
    not in editable mode; the score must stay 100 %.
    """
    _install_locked(session, ".[cli,testing]", *_groups("typecheck"))
    session.run("mypy", "--strict", "wmspanel_async", "tests/typing")
    session.run("pyright", "--verifytypes", "wmspanel_async", "--ignoreexternal")


@nox.session(python=None)
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors, and doctest their examples."""
    _install_locked(session, "-e", ".[cli,testing]", *_groups("docs"))
    build = Path(session.create_tmp()) / "docs"
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", str(build / "html"))
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "doctest", "docs", str(build / "doctest")
    )
