# shellcheck shell=bash
# Stand-in for moonfrp-config.sh: nothing this project touches.
:
