"""Coverage-guided fuzzing of the upload decoders (atheris).

    python tests/fuzz/fuzz_decode.py -max_total_time=600 -rss_limit_mb=4096 [CORPUS_DIR]

Any input must give a DecodedImage or a ServiceError (a 4xx); any other exception is a finding."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from app.errors import ServiceError
    from app.imaging.decode import decode_image
    from app.imaging.preprocess import InputSpec, to_model_input

SPEC = InputSpec(height=32, width=32)


def one_input(data: bytes) -> None:
    try:
        decoded = decode_image(data, max_pixels=4_000_000)
    except ServiceError as exc:
        if not 400 <= exc.status < 500:
            raise
        return
    to_model_input(decoded.pixels, SPEC)


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
