"""consim's own web UI: the live page every ``consim up`` server serves at ``/ui/``, and the replay
of a finished virtual-time run (``consim run FILE --ui``).

``live.py`` is the live backend (cluster snapshots, the pushed event stream, the controls);
``snapshot.py`` what one server looks like on the page; ``replay.py`` the self-contained replay
page; ``static/`` the page itself (HTML, CSS, JS: no CDN, works offline), shipped as package data.
"""
