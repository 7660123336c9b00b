#!/usr/bin/env python3
"""Generate the bigctx build context, deterministically (same bytes on every
machine): by default 20,000 files, ~196 MB, in 200 folders; every tenth file
random bytes, the rest text. `--scale N` makes N times as many folders;
`--folders N` sets the folder count directly (the smoke run uses 2).

    bench/bigctx/gen.py OUT_DIR [--scale N | --folders N]
"""
import argparse
import os
import random
import shutil

FILES_PER_FOLDER = 100
DOCKERFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Dockerfile")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--scale", type=int, default=1)
    p.add_argument("--folders", type=int)
    a = p.parse_args()
    folders = a.folders if a.folders is not None else 200 * a.scale
    rng = random.Random(1)
    words = [f"w{i}" for i in range(5000)]
    for d in range(folders):
        dd = os.path.join(a.out, f"src/pkg{d}")
        os.makedirs(dd, exist_ok=True)
        for f in range(FILES_PER_FOLDER):
            n = rng.randint(500, 20000)
            if f % 10 == 0:
                data = rng.randbytes(n)
            else:
                data = " ".join(rng.choice(words) for _ in range(n // 6)).encode()[:n]
            with open(f"{dd}/f{f}.txt", "wb") as out:
                out.write(data)
    shutil.copy(DOCKERFILE, os.path.join(a.out, "Dockerfile"))


if __name__ == "__main__":
    main()
