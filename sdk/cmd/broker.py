"""`flux broker`: run one broker (normally started by `flux start` or as a job's task)."""

from flux.core.broker.main import main as _main


def main(argv: list[str]) -> int:
    return _main(argv)
