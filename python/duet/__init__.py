"""duet: on-device LLM inference. A resident small model drafts token trees; a large
model, streamed from storage under a memory budget, verifies them in one pass."""

__version__ = "0.1.0"
