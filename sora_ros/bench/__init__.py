"""Benchmarks: absolute figures, the machine they ran on, and ratios against a baseline
measured in the same process.

Rule: may import every layer; torch and rclpy only inside functions, so that each benchmark
needs only what it times. The DDS benchmark drives nodes, so it lives in harness/.
"""
