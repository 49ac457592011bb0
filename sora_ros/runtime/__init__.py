"""The runtime: everything a robot needs to run a model directory.

model_dir: the model.json contract and its checks; sampler: the NumPy few-step
sampler and latent rollout; engine: WorldModelEngine (encode, rollout, decode);
latents: patch latents as bytes; risk: the optional risk head; pipeline: the world-model pipeline the node and
the evaluation drive.

Rule: imports core/ and numpy, cv2, onnxruntime; never torch, no rclpy, no ROS messages.
"""
