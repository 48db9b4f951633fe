"""`flux keygen [--name=NAME] [--meta=K=V,...] [PATH]`: make the CURVE certificate that
secures a system instance's overlay (`[bootstrap] curve_cert`).

`flux keygen --user [PATH]`: make the calling user's Ed25519 signing key (default
~/.flux/curve/sig, public half PATH.pub) with which jobs are signed for a multi-user
instance and its IMP.

Each kind of key is one generator function below; add another kind (for example
user signing keys) as an option that selects a different generator.
"""

from __future__ import annotations

import sys

from flux.cmd.util import Parser, cli, die


def build_parser() -> Parser:
    p = Parser("flux keygen", description="Generate a CURVE certificate for the overlay network.")
    p.add_argument("-n", "--name", help="certificate name, logged when a peer presents it "
                                        "(default: the local hostname)")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VAL[,KEY=VAL...]",
                   help="add certificate metadata (may be repeated)")
    p.add_argument("--user", action="store_true",
                   help="make your job-signing key (Ed25519) instead, default ~/.flux/curve/sig")
    p.add_argument("path", nargs="?", metavar="PATH",
                   help="where to write the certificate (created mode 0600, never replaced)")
    return p


def parse_meta(items: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in items:
        for kv in item.split(","):
            if not kv:
                continue
            k, _, v = kv.partition("=")
            k = k.strip()
            if not k or any(c.isspace() for c in k) or k.startswith("#"):
                raise ValueError(f"--meta: invalid key in '{kv}'")
            meta[k] = v
    return meta


def curve_keygen(args) -> int:
    from flux.core.security import curve

    try:
        meta = parse_meta(args.meta)
    except ValueError as exc:
        return die("flux-keygen", str(exc))
    cert = curve.generate(args.name, meta)
    if args.path is None:
        sys.stderr.write("flux-keygen: WARNING: add PATH argument to save generated certificate\n")
        return 0
    curve.save(cert, args.path)
    return 0


def user_keygen(args) -> int:
    """PATH (private, 0600) and PATH.pub: never replaces either."""
    import os

    from flux.imp.sign import generate_keypair
    from flux.job.submit import user_key_path

    path = args.path or user_key_path()
    if args.path is None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    priv, pub = generate_keypair()
    made = []
    try:
        for p, data, mode in ((path, priv, 0o600), (path + ".pub", pub, 0o644)):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            made.append(p)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except OSError as exc:
        for p in made:  # nothing half-made
            os.unlink(p)
        return die("flux-keygen", f"{exc.filename}: {exc.strerror}")
    print(f"flux-keygen: signing key {path}; give {path}.pub to the administrator to "
          f"register ([sign.keys] of the instance and of the IMP)")
    return 0


@cli("flux-keygen")
def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.user:
        if args.name or args.meta:
            return die("flux-keygen", "--user takes no --name or --meta")
        return user_keygen(args)
    return curve_keygen(args)
