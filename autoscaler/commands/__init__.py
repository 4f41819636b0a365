"""Subcommands of the ``inference-autoscaler`` CLI, one module each (see ``autoscaler.cli``)."""
