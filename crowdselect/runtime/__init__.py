"""Where work runs: starting or joining Ray, Ray resource requests, loading models (pkg: aliases, the HF helper)."""
