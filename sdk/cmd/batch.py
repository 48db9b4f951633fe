"""`flux batch`: submit a script to run as the initial program of a child instance
(SPEC 10.1, RFC 36).

The script comes from a file, from stdin, or from the command words with `--wrap`
(wrapped in `#!/bin/sh`). RFC 36 directives in it (`# flux: -N2`) are options read
before those of the command line, which win. The job's tasks are brokers, one per
node of the allocation (`JobspecV1.from_batch_command`); the script is kept in the
jobspec as `files.script` and its output goes to `flux-{{id}}.out` in the current
directory unless `--output` says otherwise. Prints the new job's id.
"""

from __future__ import annotations

import argparse
import sys

from flux.cmd import jobopts, nestopts

PROG = "flux-batch"


def build_parser():
    p = jobopts.make_parser("flux batch", usage="flux batch [OPTIONS...] [SCRIPT] [ARGS...]",
                            description="Submit a batch script to run in a new Flux instance")
    jobopts.add_common_options(p)
    nestopts.add_batch_alloc_options(p)
    p.add_argument("--wrap", action="store_true",
                   help="Wrap arguments or stdin in a /bin/sh script")
    p.add_argument("script", nargs=argparse.REMAINDER, metavar="SCRIPT",
                   help="Batch script and arguments (default: read from stdin)")
    return p


def read_script(args) -> tuple[str, str]:
    """(script text, name for messages) from --wrap words, a file, or stdin."""
    if args.wrap:
        body = " ".join(args.script) + "\n" if args.script else sys.stdin.read()
        return "#!/bin/sh\n" + body, "--wrap"
    if args.script:
        name = args.script[0]
        try:
            with open(name, encoding="utf-8") as fp:
                return fp.read(), name
        except UnicodeError:
            raise ValueError(f"{name} does not appear to be a script, or failed to "
                             "encode as utf-8") from None
        except OSError as exc:
            raise ValueError(f"{name}: {exc.strerror}") from None
    if sys.stdin.isatty():
        raise ValueError("no script given: name one, use --wrap, or pipe it on stdin")
    return sys.stdin.read(), "stdin"


def parse_with_directives(parser, argv: list[str], script: str, name: str):
    """Options from the script's RFC 36 directives, then from the command line."""
    from flux.job.directives import DirectiveError, parse

    try:
        directives = parse(script)
    except DirectiveError as exc:
        raise ValueError(f"{name}: {exc}") from None
    args = None
    for d in directives:
        if not d.args[0].startswith("-"):
            raise ValueError(f"{name}: line {d.lineno}: a directive must be an option, "
                             f"not '{d.args[0]}'")
        try:
            args = parser.parse_args(d.args, namespace=args)
        except SystemExit:
            raise ValueError(f"{name}: argument parsing failed at line {d.lineno}") from None
        if args.script:
            raise ValueError(f"{name}: line {d.lineno}: unexpected argument "
                             f"'{args.script[0]}' in a directive")
    return jobopts.parse_posix(parser, argv) if args is None else _reparse(parser, argv, args)


def _reparse(parser, argv, namespace):
    args = parser.parse_args(argv, namespace=namespace)
    if args.script and args.script[0] == "--":
        args.script = args.script[1:]
    return args


def init_jobspec(args, script: str):
    from flux.job.jobspec import JobspecV1

    if args.job_name is None:
        args.job_name = args.script[0] if args.script else "batch"
    extra = args.script[1:] if args.script else []
    try:
        js = JobspecV1.from_batch_command(script, args.job_name, args=extra,
                                          environment={}, **nestopts.slots(args))
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if not args.output:
        js.stdout = "flux-{{id}}.out"
    return js


def _main(argv: list[str]) -> int:
    parser = build_parser()
    first = jobopts.parse_posix(parser, argv)
    script, name = read_script(first)
    args = parse_with_directives(parser, argv, script, name)
    js = jobopts.jobspec_create(args, init=lambda a: init_jobspec(a, script))
    if args.dry_run:
        print(js.dumps())
        return 0
    _h, jobid = nestopts.submit(args, js)
    if not args.quiet:
        print(jobid)
    return 0


def main(argv: list[str]) -> int:
    return nestopts.guard(PROG, _main, argv)
