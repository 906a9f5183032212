"""Measure downstream token, cost and latency savings: baseline vs optimized stacks on held-out requests."""
