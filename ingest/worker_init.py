"""Imported by the extraction workers' forkserver only (see :mod:`ingest.workers`), before
anything else: each worker sets up ``__main__`` like the parent (``multiprocessing``'s
rule), and with the main module preloaded runpy warns that it is already imported. That is
expected here; the warning would otherwise reach the user's terminal once per PDF."""

import warnings

warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy",
                        message=r".*found in sys\.modules after import of package")
