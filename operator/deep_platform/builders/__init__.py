"""Pure builders: a model in, the child manifests (dicts) the operator applies out."""
