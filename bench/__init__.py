"""Benchmarks; ``python bench/queue.py`` compares Herald's queue with its peers."""
