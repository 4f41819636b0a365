"""The in-cluster service: a control loop around the pure core, with its edges.

* :mod:`.kube`       - one async request path to the Kubernetes API (retries, ``Retry-After``, errors)
* :mod:`.actuator`   - the scale subresource, ready pods, HPA conflicts, Events
* :mod:`.leader`     - leader election on a coordination.k8s.io/v1 Lease
* :mod:`.state`      - the core's state persisted in a ConfigMap, so restarts never burst
* :mod:`.policies`   - policies from a (ConfigMap-mounted) directory, hot-reloaded, last good kept
* :mod:`.controller` - the loop: signals -> ``decide`` -> act, per policy interval
* :mod:`.telemetry`  - Prometheus metrics, JSON logs, the health/metrics HTTP server
"""
