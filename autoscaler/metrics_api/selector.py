"""Label selectors for the metrics API's ``labelSelector``: :mod:`autoscaler.labels`, re-exported (the
service's caches parse a Scale's selector with the same code)."""

from autoscaler.labels import Requirement, Selector, SelectorError, parse_selector

__all__ = ["Requirement", "Selector", "SelectorError", "parse_selector"]
