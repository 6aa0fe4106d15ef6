"""``qhw report``: one self-contained HTML page of a build, its tool results and training runs.

``results``    where ``qhw sim`` / ``qhw synth`` / ``qhw board flash-file`` save their JSON in a build
``data``       everything the page shows, read from the build, its results and ``metrics.json`` files
``plots``      the charts (matplotlib, inline SVG, deterministic)
``html``       the page
``screenshot`` its PNG through headless Chromium
``write``      the page (and its PNG) in one call: what `qhw report` and `qhw demo` use
"""
