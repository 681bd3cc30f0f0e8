#!/usr/bin/env python3
"""Runs the comparison kit's stow_bench.py unchanged, with `Authorization: Bearer $STOW_BEARER` on
every request (the kit only knows basic auth). Same arguments as stow_bench.py; its path is
$BENCH_KIT/stow_bench.py (default /work/shared/bench)."""
import os
import runpy
import sys

import requests

kit = os.path.join(os.environ.get("BENCH_KIT", "/work/shared/bench"), "stow_bench.py")
token = os.environ.get("STOW_BEARER", "")
if token:
    _init = requests.Session.__init__

    def _with_bearer(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.headers["Authorization"] = f"Bearer {token}"

    requests.Session.__init__ = _with_bearer

sys.argv = [kit] + sys.argv[1:]
runpy.run_path(kit, run_name="__main__")
