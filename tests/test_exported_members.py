"""``__all__`` of each public package, checked both ways, as httpx checks its own."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pytest

import wmspanel_async
import wmspanel_async.prometheus
import wmspanel_async.redis
import wmspanel_async.testing

PUBLIC_PACKAGES = [
    wmspanel_async,
    wmspanel_async.prometheus,
    wmspanel_async.redis,
    wmspanel_async.testing,
]


def is_ours(value: object) -> bool:
    """Whether ``value`` is a class or function defined in wmspanel_async."""
    module = getattr(value, "__module__", None) or ""
    return (inspect.isclass(value) or inspect.isfunction(value)) and (
        module == "wmspanel_async" or module.startswith("wmspanel_async.")
    )


def documented_constants() -> set[str]:
    """Names that a module of the package assigns at its top level under a ``#:`` comment.

    That comment is what Sphinx's autodoc shows for a constant (``__doc__`` would be its
    type's docstring). The sources are read, not imported: importing ``cli/__main__.py``
    would run the command.
    """
    names: set[str] = set()
    for path in Path(wmspanel_async.__file__).parent.rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.parse("\n".join(lines)).body:
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            else:
                continue
            if node.lineno >= 2 and lines[node.lineno - 2].lstrip().startswith("#:"):
                names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names


@pytest.mark.parametrize("package", PUBLIC_PACKAGES, ids=lambda package: package.__name__)
def test_all_is_sorted_unique_and_importable(package: types.ModuleType) -> None:
    """``__all__`` is in sorted() order, without repeats, and each name in it exists."""
    names = package.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    missing = [name for name in names if not hasattr(package, name)]
    assert missing == []


@pytest.mark.parametrize("package", PUBLIC_PACKAGES, ids=lambda package: package.__name__)
def test_every_public_class_and_function_is_in_all(package: types.ModuleType) -> None:
    """A public name of the package that is a class or function of ours is listed in __all__."""
    public = {
        name for name, value in vars(package).items() if not name.startswith("_") and is_ours(value)
    }
    assert public - set(package.__all__) == set()


def public_names(package: types.ModuleType) -> set[str]:
    """The public names of ``package`` as ``dir()`` shows them, its lazily loaded ones included.

    Its own subpackages are left out: importing ``wmspanel_async.redis`` makes ``redis`` an
    attribute of ``wmspanel_async``, and they are documented as packages of their own.
    """
    prefix = f"{package.__name__}."
    return {
        name
        for name in dir(package)
        if name.isidentifier()  # pytest's assertion rewriting adds "@py_builtins"
        and not name.startswith("_")
        and not (
            isinstance(value := getattr(package, name), types.ModuleType)
            and value.__name__.startswith(prefix)
        )
    }


@pytest.mark.parametrize("package", PUBLIC_PACKAGES, ids=lambda package: package.__name__)
def test_dir_shows_exactly_all(package: types.ModuleType) -> None:
    """Every public name ``dir()`` shows, lazily loaded or imported, is in ``__all__``, and back.

    An imported helper (``TYPE_CHECKING``, a module) left under a public name is part of the
    package's API for whoever completes on it: import it under a private name.
    """
    listed = {name for name in package.__all__ if not name.startswith("_")}  # __version__
    assert public_names(package) ^ listed == set()


@pytest.mark.parametrize("package", PUBLIC_PACKAGES, ids=lambda package: package.__name__)
def test_every_exported_name_is_documented(package: types.ModuleType) -> None:
    """Each exported class and function has a docstring, each constant a ``#:`` comment."""
    constants = documented_constants()
    undocumented = []
    for name in package.__all__:
        if name == "__version__":
            continue
        value = getattr(package, name)
        if inspect.isclass(value):
            documented = bool(vars(value).get("__doc__"))  # its own, not a base class's
        elif inspect.isroutine(value):
            documented = bool(value.__doc__)
        else:
            documented = name in constants
        if not documented:
            undocumented.append(name)
    assert undocumented == []
