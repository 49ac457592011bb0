"""The ROS-free core: image conversion without ROS message types, preprocessing,
twist/action mapping, units, PSNR, the time grid and context, the rollout deadline,
requests and their caps, stats, the planner cost, package paths, the machine
description, and writing outputs whole (staged, then renamed into place).

Rule: the bottom layer. Imports only numpy, cv2, simplejpeg (strict JPEG decoding),
ament_index_python (pure-Python package lookup, no middleware) and other modules of core/,
so every other folder can use it and it runs anywhere.
"""
