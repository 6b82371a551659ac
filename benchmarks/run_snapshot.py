#!/usr/bin/env python
"""Run a benchmark against a copy of the package, not the working tree.

Long benchmarks should measure one fixed version of the code while work goes on; a copy
(``cp -r aaedetect benchmarks /tmp/snap``) does that, but ``PYTHONPATH=/tmp/snap`` does not: the
editable install (``pip install -e``) puts a finder ahead of ``sys.path`` that still imports the
working tree. This script drops that finder, imports ``aaedetect`` from the copy (and says so on
stderr), then runs the script::

    python benchmarks/run_snapshot.py /tmp/snap /tmp/snap/benchmarks/quality.py --seeds 0,1,2
"""

import runpy
import sys


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    snapshot, script = sys.argv[1], sys.argv[2]
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
    sys.path.insert(0, snapshot)
    import aaedetect

    if not aaedetect.__file__.startswith(snapshot):
        raise SystemExit(f"error: aaedetect still comes from {aaedetect.__file__}, not {snapshot}")
    print(f"aaedetect from {aaedetect.__file__}", file=sys.stderr)
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
