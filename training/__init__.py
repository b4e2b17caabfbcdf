"""Offline training pipeline: data → architectures → train → evaluate → export (ONNX + card)."""
