# shellcheck shell=bash
# Stand-in for moonfrp-metrics.sh: nothing this project touches.
:
