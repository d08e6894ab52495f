"""The fork server's own set-up: the first module it imports (bench/run/launcher.py PRELOAD),
before torch and the threads torch starts. Importing it is the set-up; only the fork server does.

SIGINT is ignored in the fork server from here on. It starts with SIGINT and SIGTERM blocked
(launcher.stops_held), so a Ctrl-C sent to bench's process group meanwhile waits, pending, and is
discarded here (setting SIG_IGN discards a pending signal: POSIX sigaction). Python's own SIGINT
handler is never in force with torch's threads running, so no thread can trip it for the fork
server's children to inherit; and multiprocessing restores the handler found at the fork
server's start in each child, so a case's process starts with SIGINT ignored too, until it has
left bench's process group (launcher._isolated). Before, a Ctrl-C that reached a case's process
in that window raised KeyboardInterrupt in multiprocessing's after-fork hooks, with a traceback
on bench's stderr.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
