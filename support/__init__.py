"""Stand-ins and fixtures shared by tests and benchmarks (not part of the app):
a real HTTP arXiv stand-in and a PDF maker."""
