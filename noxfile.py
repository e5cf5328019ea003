"""Every check the project has: `nox` runs tests, lint, typecheck and docs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "tests_bare", "lint", "typecheck", "docs"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
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


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite; on the newest Python all of it, with branch coverage (95 %+)."""
    session.install("-e", ".[cli,testing]", *nox.project.dependency_groups(PYPROJECT, "test"))
    if session.python == FULL_SUITE_PYTHON:
        options = ["--cov", "--cov-report=term", "--cov-fail-under=95"]
    else:
        options = ["--no-cov", "-m", "not heavy"]
    session.run("pytest", *options, *session.posargs)


@nox.session(python=None)
def tests_bare(session: nox.Session) -> None:
    """Run the suite on the bare install (no extras), so a missing optional import shows.

    Tests of the command line skip themselves there: it is what the ``cli`` extra adds.
    """
    session.install(".", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("python", "-c", "import wmspanel_async, wmspanel_async.testing")
    session.run("pytest", "--no-cov", "-q", *session.posargs)


@nox.session(python=None)
def soak(session: nox.Session) -> None:
    """Poll 200 targets through a faulty server for 10 minutes, checking for slow leaks.

    Pass options after ``--``, for example ``nox -s soak -- --minutes 1``.
    """
    session.install("-e", ".[cli,testing]", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("python", "bench/soak.py", *session.posargs)


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """Type-check the package (strict), the typing examples, and the public API's types.

    pyright's --verifytypes reads the package as users get it, so it is installed here,
    not in editable mode; the score must stay 100 %.
    """
    session.install(".[cli,testing]", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy", "--strict", "wmspanel_async", "tests/typing")
    session.run("pyright", "--verifytypes", "wmspanel_async", "--ignoreexternal")


@nox.session(python=None)
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors, and doctest their examples."""
    session.install("-e", ".[cli,testing]", *nox.project.dependency_groups(PYPROJECT, "docs"))
    build = Path(session.create_tmp()) / "docs"
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", str(build / "html"))
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "doctest", "docs", str(build / "doctest")
    )
