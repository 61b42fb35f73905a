"""Print the pins that depend on the machine's R, for `pip install -r`.

    python3 tools/machine_requirements.py > .make/machine-requirements.txt

requirements.txt pins what every machine can install. Two packages must fit
the R that Debian provides, so they are chosen here:

- rpy2 3.6 needs R >= 4.5; rpy2 3.5.17 is the last release for older R
  (and has no wheel for Python 3.13, which comes with R 4.5 on Debian 13).
- reticulate before 1.35 cannot load NumPy 2, so numpy stays at 1.26 there
  (which has no wheel for Python 3.13 either).

Debian 12: R 4.2.2, reticulate 1.28. Debian 13: R 4.5.0, reticulate 1.41.
"""

import subprocess
import sys

NUMPY_OLD, NUMPY = "numpy==1.26.4", "numpy==2.4.6"
RPY2_OLD, RPY2 = "rpy2==3.5.17", "rpy2==3.6.9"


def version(text):
    """'4.2.2' -> (4, 2, 2); '1.41.0.1' -> (1, 41, 0, 1)."""
    return tuple(int(part) for part in text.strip().replace("-", ".").split("."))


def requirements(r_version, reticulate_version):
    """The numpy and rpy2 pins for this R and this reticulate."""
    numpy = NUMPY_OLD if version(reticulate_version) < (1, 35) else NUMPY
    rpy2 = RPY2_OLD if version(r_version) < (4, 5) else RPY2
    return [numpy, rpy2]


def installed(expression):
    done = subprocess.run(
        ["Rscript", "--vanilla", "-e", f"cat(as.character({expression}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def main():
    r_version = installed("getRversion()")
    reticulate_version = installed('packageVersion("reticulate")')
    print(f"# R {r_version}, reticulate {reticulate_version}")
    print("\n".join(requirements(r_version, reticulate_version)))


if __name__ == "__main__":
    sys.exit(main())
