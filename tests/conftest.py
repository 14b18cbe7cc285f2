"""Settings shared by every test folder.

After collection, the objects that exist for the whole run (modules, test
items, hypothesis strategies) are moved out of the garbage collector's
reach with ``gc.freeze()``.  The tests call ``gc.collect()`` often (the
/dev/shm check and the segment fixtures do, after every test, so that a
collected view has released its sample); with the run's objects frozen each
collection only walks what the test itself made, which is what it is for.
"""
from __future__ import annotations

import gc


def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()
