"""Coverage-guided fuzzing of a study's header pass and slice decoding (atheris).

    python tests/fuzz/fuzz_study.py -max_total_time=600 -rss_limit_mb=4096 [CORPUS_DIR]

Each input is one file of a study: its header read from its first 8 kB or whole, as the header
pass reads it, must give slices or the reason it is skipped; each slice's decoding a
DecodedImage or a ServiceError (a 4xx). Any other exception is a finding."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from app.errors import ServiceError
    from app.studies.headers import read_header
    from app.studies.pipeline import HEAD_BYTES
    from app.studies.volumes import FrameReader

HEAD = HEAD_BYTES[0]


def one_input(data: bytes) -> None:
    for part in (data[:HEAD], data) if len(data) > HEAD else (data,):
        found = read_header("file", part, head=part is not data)
        if isinstance(found, str):
            continue
        reader = FrameReader(lambda _member: data)
        for header in found[:4]:
            try:
                reader.decoded(header, None)
            except ServiceError as exc:
                if not 400 <= exc.status < 500:
                    raise


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
