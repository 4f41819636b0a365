"""Shared pytest configuration. Fixture modules are plugins so that each edge keeps its own file."""

import os
import sys

# Test helper modules (reference models, stand-ins, fixtures) live beside the tests.
sys.path.insert(0, os.path.dirname(__file__))
