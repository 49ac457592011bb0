"""The `sim` executable for launch files: runs sora_ros.nodes.sim_node."""

from sora_ros.nodes.sim_node import main

if __name__ == "__main__":
    raise SystemExit(main())
