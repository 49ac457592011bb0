"""The runtime: everything a robot needs to run a model directory. Imports numpy and
onnxruntime, never torch.

model_dir: the model.json contract and its checks; sampler: the NumPy few-step
sampler and latent rollout; engine: WorldModelEngine (encode, rollout, decode).
"""
