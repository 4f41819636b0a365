"""The external.metrics.k8s.io/v1beta1 API (for a plain HPA) and a KEDA ``metrics-api`` endpoint,
served from the controller's decision cache (``Controller.published``).

Layers: :mod:`.selector` (label selectors), :mod:`.responder` (pure: request -> reply),
:mod:`.tls` and :mod:`.auth` (delegated authentication/authorization), :mod:`.server` (thin aiohttp
handlers), :mod:`.options` (flags -> server). See ``docs/external-metrics.md``.
"""

from autoscaler.metrics_api.responder import Attributes, Reply, Responder, ResponderSettings
from autoscaler.metrics_api.selector import Selector, SelectorError, parse_selector

__all__ = ["Attributes", "Reply", "Responder", "ResponderSettings", "Selector", "SelectorError", "parse_selector"]
