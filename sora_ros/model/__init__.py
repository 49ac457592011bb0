"""The PyTorch world model (training and export only; needs the `train` extra).

config: dataclasses and presets (no torch); vae: the KL-VAE; dit: the
dynamics transformer; training: losses and the optimiser step; checkpoint:
save/load; graphs: the modules exported to ONNX; trainer: the training
loop; export: the model directory; weights: its weights.safetensors; fine_tune:
what `train --init` starts from; onnx_weights: weights recovered from older exports.

Rule: all the torch code lives here. Imports core/, runtime/, bag/ and numpy, cv2,
torch, onnx, onnxscript, onnxruntime, safetensors, tqdm, skvideo; no rclpy.
"""
