"""Import first in a test module that imports psycopg: without the postgres extra the
module is skipped with a clear reason (or fails, with ``EVENTTRACK_REQUIRE_POSTGRES=1``)."""

from _pg import require_driver

require_driver()
