"""Imported by the extraction workers' forkserver only (see :mod:`ingest.workers`), before
anything else, so that every worker forked from it starts this way:

* Ctrl-C is ignored from the first instruction on (the forkserver hands its children the
  handlers it had when its preloads were done): the parent stops the run and kills the
  workers, none prints a KeyboardInterrupt traceback;
* runpy's warning that the main module is already imported is silenced: each worker sets up
  ``__main__`` like the parent (``multiprocessing``'s rule) and the main module is
  preloaded, which is expected here; it would otherwise reach the terminal once per PDF.
"""

import signal
import warnings

signal.signal(signal.SIGINT, signal.SIG_IGN)
warnings.filterwarnings("ignore", category=RuntimeWarning, module="runpy",
                        message=r".*found in sys\.modules after import of package")
