"""Schemathesis hooks for the service's OpenAPI test.

A request body of `image/jpeg` is valid only when it is a JPEG; random bytes are not, and
the service rightly answers them 400. So JPEG bodies are drawn from real frames the test
wrote into the folder named by LPGW_FUZZ_JPEGS.
"""

import os
import pathlib

import schemathesis
from hypothesis import strategies as st

_frames = [p.read_bytes() for p in sorted(pathlib.Path(os.environ["LPGW_FUZZ_JPEGS"]).glob("*.jpg"))]
if not _frames:
    raise RuntimeError("LPGW_FUZZ_JPEGS holds no .jpg frames")

schemathesis.openapi.media_type("image/jpeg", st.sampled_from(_frames))
