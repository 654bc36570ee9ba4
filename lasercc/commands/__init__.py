"""One module per CLI verb (see :mod:`lasercc.cli`), plus helpers they share."""
