"""`ringfence up`: the whole platform on one machine, supervised as one process group."""
