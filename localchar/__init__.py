"""localchar: persona training of small chat models, and whether it survives an agentic loop."""

__version__ = "0.1.0"
