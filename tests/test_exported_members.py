import wmspanel_async


def test_all_is_sorted_and_importable() -> None:
    """Every public name is listed once, sorted, and importable from the package."""
    names = wmspanel_async.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(wmspanel_async, name) is not None


def test_public_objects_have_docstrings() -> None:
    """Each exported class and function documents itself, for the API reference."""
    for name in wmspanel_async.__all__:
        if name != "__version__":
            assert getattr(wmspanel_async, name).__doc__, name
