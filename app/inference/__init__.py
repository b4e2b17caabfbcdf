"""Model store, onnxruntime sessions and the prediction path shared by API and CLI."""
