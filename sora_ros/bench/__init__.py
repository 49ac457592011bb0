"""Benchmarks: absolute figures, the machine they ran on, and ratios against a baseline
measured in the same process.

Rule: may import every layer except cli/; torch, rclpy and the layers that need them
(model/, nodes/, harness/) only inside functions, so that each benchmark needs only what
it times. The DDS benchmark drives nodes, so it lives in harness/.
"""
