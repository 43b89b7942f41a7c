"""Example programs run by the exec models (seed §12-2-3 "han", §12-2-4 "bit").

They ship inside the package and are started with the daemon's own
interpreter (``{python}`` in a config's program), so the default config works
from a plain ``pip install``.
"""
