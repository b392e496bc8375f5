"""``python -m fastprof``: the same as the ``fastprof`` command."""

from fastprof.cli import main

main()
