"""Regression-wide pytest settings."""


def _minutes(item):
    mark = item.get_closest_marker("heavy")
    return mark.kwargs.get("minutes", 1) if mark else 0


def pytest_collection_modifyitems(config, items):
    # The few tests of minutes (the defa core on Icarus, the tiny core's set, the
    # non-editable install) go first, longest first: started last, they would run alone
    # at the end while the other worker idles.
    items.sort(key=lambda item: -_minutes(item))
