"""Benchmarks: matcher speed/memory per stage and image size, peers side by side, node latency over DDS.

Entry point: ``casmtr-vo bench`` (:mod:`casmtr_ros.commands.bench`); results in JSON, Markdown tables and PNG plots.
"""
