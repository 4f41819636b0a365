"""The offline simulator: replay request traces through the same decision code and compare policies.

Layers, each its own module: ``trace`` (readers and synthetic generators), ``kernel`` and ``fleet``
(the queueing model of replicas with continuous batching), ``pipeline`` (exporters, scrapes and
PromQL windows) and ``aggregate`` (the seam to the live service's signal aggregation),
``controllers`` (policies through :func:`autoscaler.core.decide`, and the named baselines KPA, Ray
Serve, static and oracle), ``run`` (the driver: only the clock and the edges are simulated),
``scenario`` (YAML), ``compare`` and ``report``. ``queueing`` holds the closed forms the model is
checked against.
"""
