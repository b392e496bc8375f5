"""The HTML reports: a scan's ``index.html`` and the diff page of ``fastprof diff --html``.

Each is one self-contained file. :mod:`fastprof.report.data` and :mod:`fastprof.report.diff`
build the JSON payload (the numbers, the findings with their source lines read from disk, the
histograms binned, the flame graphs in the component's columnar form); :mod:`fastprof.report.page`
wraps it with the inlined script and styles (``renderers/assets/report.js`` and ``.css``, beside
the flame-graph component they share with ``fastprof view -f html``).
"""
