"""Files out and in: atomic writes, safe (tensor-only) checkpoint reads, artifact format."""
