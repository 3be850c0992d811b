"""Build the pg8000 Lambda layer the demo loader needs: `python build_layer.py [--rds-ca]`.

Installs the packages of assets/demo_loader/requirements.txt (pure Python, so any build machine
works) into build/pg8000-layer/python, the layout Lambda expects for Python layers. With
--rds-ca it also downloads the RDS CA bundle so that the loader verifies the database
certificate. Needs PyPI (and truststore.pki.rds.amazonaws.com for --rds-ca); synthesis itself
stays offline and only checks that the directory was built.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "assets" / "demo_loader" / "requirements.txt"
DEFAULT_LAYER_DIR = HERE / "build" / "pg8000-layer"
RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"


def build(layer_dir: Path, rds_ca: bool = False) -> Path:
    """(Re)create `layer_dir`/python with the loader's requirements; return that directory."""
    target = layer_dir / "python"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-compile",
            "--target",
            str(target),
            "--requirement",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    if rds_ca:
        with urllib.request.urlopen(RDS_CA_URL, timeout=60) as response:
            (target / "rds-global-bundle.pem").write_bytes(response.read())
    return target


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer-dir", type=Path, default=DEFAULT_LAYER_DIR)
    parser.add_argument(
        "--rds-ca", action="store_true", help="also download the RDS CA bundle into the layer"
    )
    args = parser.parse_args(argv)
    target = build(args.layer_dir, rds_ca=args.rds_ca)
    print(f"built {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
