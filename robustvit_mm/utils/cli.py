"""How every ``tools/*.py`` starts and fails: :func:`start_tool` first (only the known-harmless
upstream warnings silenced), then :func:`run_tool` around ``main``: a user error ends as ONE line
``<tool>: error: <message>`` on stderr with exit status 2 (the status argparse gives a bad option),
an interruption with status 130; anything else keeps its traceback (a bug to report)."""
import os.path as osp
import sys

from ..compat import silence_known_upstream_warnings

USER_ERRORS = (ValueError, OSError)
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


def start_tool():
    silence_known_upstream_warnings()


def tool_name():
    return osp.basename(sys.argv[0]) or 'tool'


def exit_with(message, status=EXIT_USAGE):
    """Print ``<tool>: error: message`` to stderr and exit with ``status``."""
    print(f'{tool_name()}: error: {message}', file=sys.stderr, flush=True)
    raise SystemExit(status)


def run_tool(main, argv=None, user_errors=USER_ERRORS):
    """``sys.exit(main(argv))``, with the user errors ``user_errors`` as one line each. ``main``
    returns an exit status (None or a result object count as 0)."""
    try:
        status = main(argv)
    except KeyboardInterrupt:
        exit_with('interrupted', EXIT_INTERRUPTED)
    except user_errors as error:
        exit_with(str(error) or type(error).__name__)
    raise SystemExit(status if isinstance(status, int) and not isinstance(status, bool) else 0)
