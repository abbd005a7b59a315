"""Engines serve the model: the Engine protocol, the one prompt renderer and stop rule, the embedded
(transformers + peft), vLLM and scripted engines, and serving an adapter version on any of them."""
