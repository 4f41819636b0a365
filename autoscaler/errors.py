"""The errors the autoscaler raises on purpose: one hierarchy, grouped by what the reader must do.

::

    AutoscalerError
    ├── InputError (also a ValueError)  a document we were given is wrong: fix the file
    │   ├── PolicyError                  a ScalingPolicy / PolicyDefaults file (autoscaler.policy)
    │   │   └── PromQLTemplateError      a query: template that cannot be rendered (autoscaler.signals.promql)
    │   ├── ScenarioError                a Simulation file (autoscaler.sim.scenario)
    │   ├── TraceError                   a request trace (autoscaler.sim.trace)
    │   ├── ObservationError             a replay observation line (autoscaler.replay)
    │   └── BacktestError                recorded history that cannot be backtested (autoscaler.backtest)
    ├── ConfigurationError               local configuration we were pointed at cannot be used
    │   └── KubeconfigError              a kubeconfig or the pod's service account (autoscaler.service.kubeconfig)
    ├── SignalError                      a signal cannot be read: the metrics backend failed
    │   └── PrometheusError ...          the reader's own hierarchy (autoscaler.prometheus.errors)
    └── KubeError ...                    the Kubernetes API failed or refused (autoscaler.service.kube)

The kinds live here, with PolicyError (the loader and the PromQL renderer both raise one); every other
error lives next to the code that raises it and subclasses its kind. This module imports nothing, so
every layer may use it. The commands map each kind to its own exit code
(:class:`autoscaler.commands.common.Exit`). Input errors stay ``ValueError`` s, as they were before
this hierarchy, so callers that catch ``ValueError`` keep working. Messages name the file, the line or
key, and the value, so a message is actionable on its own.
"""

from __future__ import annotations

__all__ = ["AutoscalerError", "ConfigurationError", "InputError", "PolicyError", "SignalError"]


class AutoscalerError(Exception):
    """Base of every error the autoscaler raises on purpose (not a bug)."""


class InputError(AutoscalerError, ValueError):
    """A document we were given is wrong: the message names the file, the line or key, and the value."""


class PolicyError(InputError):
    """A policy cannot be used: its file is invalid, or it does not hold the one policy asked for."""


class ConfigurationError(AutoscalerError):
    """Local configuration the command was pointed at cannot be used: a kubeconfig, TLS files, or an
    optional part of the package that is not installed (the message says which extra to install)."""


class SignalError(AutoscalerError):
    """A signal cannot be read: the metrics backend is unreachable, refuses, or answers garbage."""
