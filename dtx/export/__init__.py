"""Export: a decoupled checkpoint to input.onnx, cross.onnx, coupled.onnx and a manifest."""
