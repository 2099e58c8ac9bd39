"""The scheduler layer: the one place that decides which chunk runs where, the task queue and
store, and progress. Imports render, workers, io and domain; loads no torch at import."""
