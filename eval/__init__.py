"""Evaluation harness: `paperchat eval`."""
