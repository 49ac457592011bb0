"""The PyTorch world model (training and export only; needs the `train` extra).

config: dataclasses and presets (no torch); vae: the KL-VAE; dit: the
dynamics transformer; training: losses and the optimiser step; checkpoint:
save/load; graphs: the modules exported to ONNX.
"""
