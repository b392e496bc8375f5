"""``fastprof scan``: start an app, replay load on every route, collect profiles and findings.

The pieces, one module each: ``app_loader`` (MODULE:APP to an ASGI app, with clear errors),
``child`` (the server process: the app wrapped in the middleware, results dumped at shutdown),
``scenario`` (TOML scenario files), ``discover`` (routes from the OpenAPI schema), ``runner``
(the whole run), ``results`` (the findings.json schema and merging), ``report`` (files on
disk), ``budget`` (per-route limits), ``diff`` (two results side by side), ``sweep`` (server tuning
sweeps: --sweep, the recommendation), ``server_check`` (what HTTP shows of a --url server).
"""
