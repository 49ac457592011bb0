"""The `video_camera` executable for launch files: runs sora_ros.nodes.video_camera_node."""

from sora_ros.nodes.video_camera_node import main

if __name__ == "__main__":
    raise SystemExit(main())
