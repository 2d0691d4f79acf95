"""``consim agent``: one Consul server per process, with Consul's flags, data dir and signals;
``consim up --processes`` runs a cluster of them (``processes.py``)."""
