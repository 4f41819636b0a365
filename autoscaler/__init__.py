"""inference-autoscaler: a Kubernetes-native autoscaler for GPU/LLM inference.

The package is layered:

* ``autoscaler.core``   - the pure decision core (no IO, no clock, no globals).
* ``autoscaler.policy`` - team policy files: typed model, YAML loader, validation, JSON Schema.
* ``autoscaler.replay`` - drives the core over a recorded observation stream.
* ``autoscaler.cli``    - the ``inference-autoscaler`` command.

Edges (Prometheus, Kubernetes, HTTP servers, trace readers) depend on the core, never the reverse.
"""

__version__ = "0.1.0"
