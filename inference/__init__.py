"""Running trained networks: backends (dygraph, Paddle Inference, ONNX Runtime) and predict.py's jobs."""
