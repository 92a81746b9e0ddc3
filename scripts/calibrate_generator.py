"""Writes fraudscore/dev/generate_calibration.json from the shipped real sample.

Run from the repository root after the sample changes:
``python scripts/calibrate_generator.py``. A unit test checks that the
committed file is exactly what this computes.
"""

from __future__ import annotations

from fraudscore.dev import generate


def main() -> int:
    calibration = generate.calibrate_file()
    generate.write_calibration(calibration)
    print(
        f"wrote {generate.CALIBRATION_FILE} from {calibration['source']}: "
        f"{calibration['normals']:,} normals, {calibration['frauds']} frauds"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
