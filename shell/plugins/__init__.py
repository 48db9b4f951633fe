"""Built-in shell plugins. Each registers through the `flux.shell` entry-point group
(root pyproject.toml), exactly as an outside plugin would."""
