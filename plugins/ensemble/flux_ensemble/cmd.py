"""`flux ensemble`: placeholder until the tool is written."""


def main(argv):
    return 0
