"""Deployment package size of each function, zipped, as `cargo lambda build --release --output-format zip`
produces it (issue 7), for x86_64 and, when the aarch64 target is installed, arm64 (the deployment default).
Packages go to target/lambda-bench/<arch>/<function>/bootstrap.zip, away from target/lambda.

    .venv/bin/python tools/bench/package_size.py [--arch x86_64|arm64]... [--only FUNCTION]...
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import FUNCTIONS, ROOT, table, verdict  # noqa: E402

TARGET_MB = 6.0
ARCHES = {"x86_64": ("--x86-64", "x86_64-unknown-linux-gnu"), "arm64": ("--arm64", "aarch64-unknown-linux-gnu")}


def installed_targets() -> set[str]:
    try:
        out = subprocess.run(["rustup", "target", "list", "--installed"], capture_output=True, text=True, check=True)
        return set(out.stdout.split())
    except (OSError, subprocess.CalledProcessError):
        return set()


def build(arch: str, function: str) -> tuple[Path, float]:
    """One function at a time with `--bin`, as `sam build` runs cargo-lambda: the same features and flags, so
    the build reuses `sam build`'s artifacts (and the reverse)."""
    flag, _ = ARCHES[arch]
    out = ROOT / "target" / "lambda-bench" / arch
    cmd = ["cargo", "lambda", "build", "--release", "--output-format", "zip", flag, "--bin", function,
           "--lambda-dir", str(out)]
    # cargo-lambda and its zig come from the venv (as in the Makefile).
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    return out / function / "bootstrap.zip", time.time() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", action="append", choices=ARCHES, help="only this architecture (repeatable)")
    p.add_argument("--only", action="append", choices=FUNCTIONS, help="only this function (repeatable)")
    a = p.parse_args(argv)
    functions = a.only or list(FUNCTIONS)
    installed = installed_targets()
    rows = []
    for arch, (_, triple) in ARCHES.items():
        if a.arch and arch not in a.arch:
            continue
        if triple not in installed:
            for f in functions:
                rows.append((f"deployment package {f}, {arch}, zipped", "not built here",
                             f"<= {TARGET_MB:g} MB", f"no {triple.split('-')[0]} target (`rustup target list "
                                                        f"--installed` lacks {triple})"))
            continue
        for f in functions:
            z, seconds = build(arch, f)
            if not z.exists():
                rows.append((f"deployment package {f}, {arch}, zipped", "missing", f"<= {TARGET_MB:g} MB", str(z)))
                continue
            size = z.stat().st_size
            mb = size / 1e6
            rows.append((f"deployment package {f}, {arch}, zipped", f"{mb:.2f} MB",
                         f"<= {TARGET_MB:g} MB{verdict(mb <= TARGET_MB)}",
                         f"{size:,} bytes ({size / 2**20:.2f} MiB); {z.relative_to(ROOT)}; build {seconds:.0f} s"))
    table("Deployment packages (cargo lambda build --release --output-format zip)", rows)


if __name__ == "__main__":
    main()
