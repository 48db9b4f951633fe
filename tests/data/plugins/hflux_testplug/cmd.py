"""A plugin-provided `flux` subcommand: `flux testplug-hello [NAME]`."""


def main(argv):
    print(f"hello {argv[0] if argv else 'world'} from a plugin command")
    return 0
