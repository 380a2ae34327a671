# shellcheck shell=bash
# Stand-in for moonfrp-index.sh: nothing this project touches.
:
