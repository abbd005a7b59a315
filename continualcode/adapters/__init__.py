"""Adapter versions on disk (the registry, integrity checks, weight diffs) and the LoRA presets."""
