"""Test setup: the helper modules in tests/ (tiny_models) import as top-level modules."""
import sys
from pathlib import Path

TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
