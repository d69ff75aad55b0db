"""Serving: start, watch and stop the model server (vLLM), and prepare its model."""
