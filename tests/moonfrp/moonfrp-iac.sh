# shellcheck shell=bash
# Stand-in for moonfrp-iac.sh: nothing this project touches.
:
