"""Operations on a data directory: backup and restore (``backup``, ``restore``, the archive container in
``archive``), key export / import (``keys``), integrity check (``check``) and maintenance."""
