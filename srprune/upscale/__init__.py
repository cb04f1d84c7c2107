"""`srprune upscale`: image files in, tiles through a model (torch or ONNX Runtime), files out."""
