"""Working-alliance analysis pipeline."""

import os as _os

if _os.environ.get("PIPELINE_RECORD_IMPORTS"):  # tests only: see pipeline/importrecord.py
    from pipeline.importrecord import ENV as _ENV
    from pipeline.importrecord import install as _install

    _install(_os.environ[_ENV])
