"""The ground floor: typed values, settings, errors and small shared utilities.

Imports nothing of the project; every other package may import it.
"""
